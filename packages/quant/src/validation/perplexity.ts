// Perplexity by llama-perplexity's method (tools/perplexity/perplexity.cpp perplexity()): the
// schedule in chunks.ts, the negative log-likelihood of every scored token summed in double,
// PPL = exp(mean NLL), and its uncertainty PPL * sqrt(var(NLL) / (count - 1)).

import { InputError } from "@llama-pajamas/artifact";
import { contextForPlan, planChunks, runChunks, scoredPerChunk, type ChunkPlan, useOverlap } from "./chunks.js";
import { newRowStats, rowStats, tokenNll } from "./log-softmax.js";
import { EngineModel } from "../quantize/native.js";

export interface EvalProgress {
  /** Windows done, of `chunks`. */
  chunk: number;
  chunks: number;
  /** Running perplexity (of the quantized model in a KL-divergence pass). */
  perplexity: number;
  elapsedMs: number;
}

export interface EvalTextOptions {
  /** Evaluation text (UTF-8 bytes or a string), tokenized by the model with its special tokens. */
  text: string | Uint8Array;
  /** Window size (default 512). */
  ctx?: number;
  /** At most this many windows (default: all that fit). */
  chunks?: number;
  /** Logical batch (default 2048: four 512-token windows per llama_decode). */
  batch?: number;
  threads?: number;
  /**
   * Decode the next windows on a second context while scoring the current ones (llama.cpp then
   * works while the log-softmax runs in JS). Default: on unless the extra logits buffers would
   * pass 2 GiB.
   */
  overlap?: boolean;
  onProgress?: (e: EvalProgress) => void;
  signal?: AbortSignal;
}

export interface PerplexityResult {
  perplexity: number;
  /** llama.cpp's `+/-`. */
  uncertainty: number;
  ctx: number;
  chunks: number;
  /** Tokens whose likelihood was scored (chunks * (ctx - 1 - ctx/2)). */
  tokensScored: number;
  /** Tokens decoded (chunks * ctx). */
  tokensEvaluated: number;
  seconds: number;
  /** tokensEvaluated / seconds, the throughput llama-perplexity reports as its prompt-eval speed. */
  tokensPerSecond: number;
}

/** Running sums of NLL and NLL^2 (perplexity.cpp keeps nll, nll2, count). */
export class NllSums {
  sum = 0;
  sum2 = 0;
  count = 0;
  add(nll: number): void {
    this.sum += nll;
    this.sum2 += nll * nll;
    this.count++;
  }
  get perplexity(): number {
    return Math.exp(this.sum / this.count);
  }
  /** perplexity.cpp: sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)) * PPL. */
  get uncertainty(): number {
    const mean = this.sum / this.count;
    const v = this.sum2 / this.count - mean * mean;
    return v > 0 && this.count > 1 ? Math.sqrt(v / (this.count - 1)) * this.perplexity : 0;
  }
}

/** Tokenizes as llama-perplexity does (common_tokenize(ctx, text, add_special = true)). */
export function tokenizeForEval(model: EngineModel, text: string | Uint8Array): Int32Array {
  return model.tokenize(text, { addSpecial: true, parseSpecial: false });
}

/** The plan for `model` over its tokens of the text. */
export function planForModel(model: EngineModel, tokens: Int32Array, opts: Pick<EvalTextOptions, "ctx" | "chunks" | "batch">): ChunkPlan {
  if (model.info.addEos) {
    // perplexity.cpp asserts !llama_vocab_get_add_eos
    throw new InputError(`${model.path}: the vocabulary appends EOS to every text; llama-perplexity refuses such models`, { path: model.path });
  }
  return planChunks({ tokens, ctx: opts.ctx, chunks: opts.chunks, batch: opts.batch, bos: model.info.addBos ? model.info.bos : undefined });
}

/** Perplexity of a GGUF model (path or loaded EngineModel) over a text. */
export async function perplexity(model: string | EngineModel, opts: EvalTextOptions): Promise<PerplexityResult> {
  const m = typeof model === "string" ? EngineModel.load(model) : model;
  try {
    const plan = planForModel(m, tokenizeForEval(m, opts.text), opts);
    return await perplexityOfPlan(m, plan, opts);
  } finally {
    if (typeof model === "string") m.free();
  }
}

export async function perplexityOfPlan(
  model: EngineModel,
  plan: ChunkPlan,
  opts: Pick<EvalTextOptions, "threads" | "onProgress" | "signal" | "overlap">,
): Promise<PerplexityResult> {
  const nVocab = model.info.nVocab;
  const ctx = contextForPlan(model, plan, opts.threads);
  let spare;
  try {
    spare = useOverlap(plan, nVocab, 1, opts.overlap) ? contextForPlan(model, plan, opts.threads) : undefined;
  } catch (e) {
    ctx.free();
    throw e;
  }
  const started = performance.now();
  const sums = new NllSums();
  const stats = newRowStats();
  try {
    for await (const chunk of runChunks(plan, [ctx], { signal: opts.signal, spare: spare && [spare] })) {
      const logits = chunk.logits[0]!;
      for (let r = 0; r < chunk.targets.length; r++) {
        const off = r * nVocab;
        rowStats(logits, off, nVocab, stats);
        sums.add(tokenNll(logits, off, stats, chunk.targets[r]!));
      }
      opts.onProgress?.({ chunk: chunk.index + 1, chunks: plan.nChunks, perplexity: sums.perplexity, elapsedMs: performance.now() - started });
    }
  } finally {
    ctx.free();
    spare?.free();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    perplexity: sums.perplexity,
    uncertainty: sums.uncertainty,
    ctx: plan.nCtx,
    chunks: plan.nChunks,
    tokensScored: plan.nChunks * scoredPerChunk(plan),
    tokensEvaluated: plan.nChunks * plan.nCtx,
    seconds,
    tokensPerSecond: (plan.nChunks * plan.nCtx) / seconds,
  };
}
