// The evaluation schedule of llama.cpp's tools/perplexity/perplexity.cpp (perplexity() and
// kl_divergence()): the tokenized text is cut into n_chunk windows of n_ctx tokens; each window's
// first token becomes BOS when the vocabulary adds one; `n_batch / n_ctx` windows go through
// llama_decode together as separate sequences; only positions >= n_ctx / 2 produce logits, and
// position p's logits score token p + 1, so each window scores n_ctx - 1 - n_ctx / 2 tokens.

import { PajamasError, UsageError } from "@llama-pajamas/artifact";
import { EngineContext, type EngineModel } from "../quantize/native.js";

/** llama-perplexity's defaults. */
export const DEFAULT_CTX = 512;
export const DEFAULT_BATCH = 2048;

export interface ChunkPlan {
  tokens: Int32Array;
  nCtx: number;
  nChunks: number;
  nBatch: number;
  /** Windows decoded together (n_seq). */
  nSeq: number;
  /** First scored position (n_ctx / 2). */
  first: number;
  bos: number | undefined;
}

export interface ChunkPlanOptions {
  tokens: Int32Array;
  ctx?: number;
  /** At most this many windows (default: all that fit). */
  chunks?: number;
  batch?: number;
  /** The vocabulary's BOS when it adds one (llama_vocab_get_add_bos), else undefined. */
  bos: number | undefined;
}

export function planChunks(opts: ChunkPlanOptions): ChunkPlan {
  const nCtx = opts.ctx ?? DEFAULT_CTX;
  const batch = opts.batch ?? DEFAULT_BATCH;
  if (!Number.isInteger(nCtx) || nCtx < 4) throw new UsageError(`context size must be an integer >= 4, got ${nCtx}`);
  if (!Number.isInteger(batch) || batch < 1) throw new UsageError(`batch size must be a positive integer, got ${batch}`);
  if (opts.chunks !== undefined && (!Number.isInteger(opts.chunks) || opts.chunks < 1)) {
    throw new UsageError(`chunk count must be a positive integer, got ${opts.chunks}`);
  }
  // llama-perplexity: n_seq = max(1, n_batch / n_ctx); context n_seq * n_ctx; n_batch capped by it
  const nSeq = Math.max(1, Math.floor(batch / nCtx));
  const nBatch = Math.min(batch, nSeq * nCtx);
  if (!(nBatch < nCtx || nBatch % nCtx === 0)) {
    throw new UsageError(`batch size ${batch} must be below the context size ${nCtx} or a multiple of it`);
  }
  if (opts.tokens.length < 2 * nCtx) {
    throw new UsageError(
      `the text has ${opts.tokens.length} tokens; perplexity with a context of ${nCtx} needs at least ${2 * nCtx} ` +
        `(give a longer text, or a smaller context)`,
    );
  }
  const maxChunks = Math.floor(opts.tokens.length / nCtx);
  return {
    tokens: opts.tokens,
    nCtx,
    nChunks: Math.min(opts.chunks ?? maxChunks, maxChunks),
    nBatch,
    nSeq,
    first: Math.floor(nCtx / 2),
    bos: opts.bos,
  };
}

/** Scored positions per window. */
export function scoredPerChunk(plan: ChunkPlan): number {
  return plan.nCtx - 1 - plan.first;
}

/** A context sized for the plan (n_seq windows of n_ctx). */
export function contextForPlan(model: EngineModel, plan: ChunkPlan, threads?: number): EngineContext {
  return new EngineContext(model, { nCtx: plan.nSeq * plan.nCtx, nBatch: plan.nBatch, nSeqMax: plan.nSeq, threads });
}

/** Extra logits memory (bytes) a spare context per model may take before overlap is off by default. */
export const OVERLAP_MAX_LOGITS_BYTES = 2 * 2 ** 30;

/**
 * Whether to decode the next pass on spare contexts while scoring this one: `want` if given,
 * else when the spare contexts' logits (per model: n_seq windows of scored rows) stay under
 * OVERLAP_MAX_LOGITS_BYTES.
 */
export function useOverlap(plan: ChunkPlan, nVocab: number, models: number, want?: boolean): boolean {
  if (want !== undefined) return want;
  return models * plan.nSeq * (plan.nCtx - plan.first) * nVocab * 4 <= OVERLAP_MAX_LOGITS_BYTES;
}

/** One window's logits from each context: rows for positions first .. n_ctx - 2, and their targets. */
export interface ScoredChunk {
  index: number;
  /** Per context: (n_ctx - 1 - first) rows of n_vocab logits, valid until the next window is decoded. */
  logits: Float32Array[];
  /** The token each row predicts (tokens[start + first + 1 ...]). */
  targets: Int32Array;
}

/**
 * Decodes the plan's windows in every context in lockstep (the same batches) and yields each
 * window's scored logits: views into llama.cpp's buffers (copies when a window takes more than
 * one batch), valid until the next window is asked for. `allOutputs` asks llama.cpp for every
 * position's logits, as llama-imatrix does (only the scored ones are yielded).
 *
 * With `spare` (one more context per model), the next pass decodes on the spare contexts while
 * the caller scores the current one: llama.cpp works on a worker thread while the log-softmax
 * runs in JS, instead of one after the other.
 */
export async function* runChunks(
  plan: ChunkPlan,
  contexts: EngineContext[],
  opts: { signal?: AbortSignal; allOutputs?: boolean; spare?: EngineContext[] } = {},
): AsyncGenerator<ScoredChunk> {
  const { tokens, nCtx, nChunks, nBatch, nSeq, first } = plan;
  const nBatches = Math.ceil(nCtx / nBatch);
  const scored = scoredPerChunk(plan);
  const maxTokens = Math.min(nBatch, nCtx * nSeq);
  const batchTokens = new Int32Array(maxTokens);
  const batchPos = new Int32Array(maxTokens);
  const batchSeq = new Int32Array(maxTokens);
  const batchOut = new Uint8Array(maxTokens);
  const sets = opts.spare ? [contexts, opts.spare] : [contexts];
  if (opts.spare && opts.spare.length !== contexts.length) throw new UsageError("one spare context per context");
  // windows longer than a batch collect their outputs (n_seq is 1 then)
  const collected = sets.map((set) => (nBatches > 1 ? set.map((c) => new Float32Array((nCtx - first) * c.nVocab)) : []));

  /** Fills the shared batch arrays for batch j of pass starting at window i (used at once: decodeAsync copies them). */
  const batchFor = (i: number, j: number) => {
    const start = i * nCtx;
    const end = start + nCtx;
    const nSeqBatch = Math.min(nSeq, nChunks - i);
    const batchStart = start + j * nBatch;
    const batchSize = Math.min(end - batchStart, nBatch);
    let n = 0;
    for (let seq = 0; seq < nSeqBatch; seq++) {
      const seqStart = batchStart + seq * nCtx;
      for (let k = 0; k < batchSize; k++) {
        const pos = j * nBatch + k;
        batchTokens[n] = j === 0 && k === 0 && plan.bos !== undefined ? plan.bos : tokens[seqStart + k]!;
        batchPos[n] = pos;
        batchSeq[n] = seq;
        // llama-imatrix asks for every position's logits: the last layer then runs in full
        batchOut[n] = pos >= first || opts.allOutputs ? 1 : 0;
        n++;
      }
    }
    return { tokens: batchTokens.subarray(0, n), pos: batchPos.subarray(0, n), seq: batchSeq.subarray(0, n), logits: batchOut.subarray(0, n) };
  };

  /** Decodes one pass (n_seq windows from window i) in every context of a set, the contexts concurrently. */
  const decodePass = (i: number, s: number) =>
    Promise.all(
      sets[s]!.map(async (ctx, c) => {
        ctx.clear();
        let outputsSoFar = 0;
        for (let j = 0; j < nBatches; j++) {
          const batch = batchFor(i, j);
          await ctx.decodeAsync(batch);
          if (nBatches > 1) {
            // scored outputs of this batch, in batch order (n_seq is 1)
            const firstPos = Math.max(0, first - j * nBatch);
            const nOut = batch.tokens.length - firstPos;
            if (nOut > 0) {
              collected[s]![c]!.set(ctx.logits(firstPos, nOut), outputsSoFar * ctx.nVocab);
              outputsSoFar += nOut;
            }
          }
        }
      }),
    );

  let pending: Promise<unknown> | undefined;
  for (let p = 0, i = 0; i < nChunks; p++, i += nSeq) {
    if (opts.signal?.aborted) {
      await pending?.catch(() => undefined);
      throw new PajamasError("E_INTERRUPTED", "evaluation interrupted");
    }
    const s = p % sets.length;
    await (pending ?? decodePass(i, s));
    // with spare contexts, the next pass decodes while this one is scored
    pending = sets.length > 1 && i + nSeq < nChunks ? decodePass(i + nSeq, (p + 1) % sets.length) : undefined;
    try {
      const nSeqBatch = Math.min(nSeq, nChunks - i);
      for (let seq = 0; seq < nSeqBatch; seq++) {
        const logits = sets[s]!.map((ctx, c) =>
          nBatches > 1 ? collected[s]![c]!.subarray(0, scored * ctx.nVocab) : ctx.logits(seq * nCtx + first, scored),
        );
        const targetsStart = i * nCtx + seq * nCtx + first + 1;
        yield { index: i + seq, logits, targets: tokens.subarray(targetsStart, targetsStart + scored) };
      }
    } finally {
      // a consumer that stops early must not leave a decode running on freed contexts
      if (pending) await pending.catch(() => undefined);
    }
  }
}
