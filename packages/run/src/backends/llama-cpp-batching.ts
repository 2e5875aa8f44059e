// Several sequences on one node-llama-cpp 3.21.1 context (--parallel): three adjustments to how
// it batches, samples and edits them, so that batched generation is correct, fills its batches
// and starts new requests without waiting for the others to finish.
import type { BatchItem, LlamaContext, LlamaContextSequence, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * node-llama-cpp samples each sequence of a decoded batch in its own libuv worker, and each
 * starts with llama_get_logits, which reorders the context's output rows in place
 * (llama_context::output_reorder, needed once a batch held several sequences). Two workers at
 * once swap rows twice, and a sequence samples from another's logits: batched greedy outputs
 * then differ from one-at-a-time ones at random (seen under CPU load: 4-8 of 48 outputs; none
 * in 96 with this). Sampling one at a time per context, as llama-server does. (Letting only the
 * first sample after a decode run alone, and the rest together, was as correct but no faster
 * on 2 cores: 462-519 against 514-550 tokens/s for 8 sequences.)
 */
export function serializeSampling(context: LlamaContext): void {
  type Sample = (...args: unknown[]) => Promise<unknown>;
  const native = (context as unknown as { _ctx?: { sampleToken?: Sample } })._ctx;
  if (native === undefined || typeof native.sampleToken !== "function") {
    // Caught by load(), which names the file and says it could not be loaded.
    throw new Error("node-llama-cpp's context has no sampleToken to serialize; --parallel above 1 needs node-llama-cpp 3.21.1");
  }
  const sample = native.sampleToken.bind(native);
  let queue: Promise<unknown> = Promise.resolve();
  // An own property: the prototype's method is read-only (N-API), so plain assignment throws.
  Object.defineProperty(native, "sampleToken", {
    configurable: true,
    value: (...args: unknown[]) => {
      const run = queue.then(() => sample(...args));
      queue = run.catch(() => undefined);
      return run;
    },
  });
}

/**
 * How many times in a row the strategy may hold the batch back for sequences still on their
 * way (each hold is a few microtask turns; a sequence's token reaches its next evaluate call in
 * about 20-30).
 */
const MAX_HOLDS = 200;

/**
 * node-llama-cpp's batch loop starts its next decode as soon as the previous batch's samples
 * are resolved, before the last sampled sequences have queued their next token, so the
 * sequences split into groups decoded one after another (seen: batches of 6 and 2 instead of
 * 8, half the tokens per decode). This strategy holds an incomplete batch back for a bounded
 * number of microtask turns until every generating sequence has queued, as llama-server
 * decodes all its slots together; then it shares the batch as node-llama-cpp's
 * maximumParallelism strategy does. Measured on qwen3-tiny, 8 sequences: +15-20% tokens/s.
 */
export class BatchGatherer {
  /** Sequences generating now (between join() and its leave). */
  private generating = 0;
  private holds = 0;
  /** KV-cache removals waiting for the point between two decodes. */
  private readonly edits: (() => void)[] = [];

  /**
   * Drops `sequence`'s tokens from `keep` on, without node-llama-cpp's context lock. That lock
   * is held by its batch loop for as long as any sequence keeps generating, so a new request's
   * eraseContextTokenRanges waited for the others to finish (TTFT p50 580 ms at 8 streams).
   * The sequence's own bookkeeping (its tokens, next position) changes now; the KV cells go at
   * the next strategy call, which the loop makes between decodes and before any batch that
   * holds this sequence's next tokens, as llama-server edits its slots between decodes.
   * False when node-llama-cpp's internals are not as expected (the caller takes the locked way).
   */
  eraseTail(sequence: LlamaContextSequence, keep: number): boolean {
    const s = sequence as unknown as SequenceInternals;
    const native = s._context?._ctx;
    if (!Array.isArray(s._contextTokens) || typeof s._nextTokenIndex !== "number" || typeof s._sequenceId !== "number" || typeof native?.removeTokenCellsFromSequence !== "function") return false;
    // Token predictions and checkpoints (sliding-window models) need node-llama-cpp's own path.
    if ((s._loadedTokenPredictions?.length ?? 0) > 0 || s.needsCheckpoints === true || s._contextTokens.length !== s._nextTokenIndex) return false;
    const end = s._nextTokenIndex;
    if (end <= keep) return true;
    s._contextTokens.splice(keep);
    s._nextTokenIndex = keep;
    const id = s._sequenceId;
    const remove = native.removeTokenCellsFromSequence.bind(native);
    this.edits.push(() => {
      if (!remove(id, keep, end)) throw new Error(`llama.cpp could not drop positions ${keep}-${end} of sequence ${id}`);
    });
    return true;
  }

  /** A sequence starts generating; call the returned function when it stops. */
  join(): () => void {
    this.generating++;
    let left = false;
    return () => {
      if (!left) this.generating--;
      left = true;
    };
  }

  readonly strategy = ({ items, size }: { items: readonly BatchItem[]; size: number }): PrioritizedBatchItem[] => {
    for (const edit of this.edits.splice(0)) edit();
    if (items.length < this.generating && this.holds < MAX_HOLDS) {
      this.holds++;
      return [];
    }
    this.holds = 0;
    return shareBatch(items, size);
  };
}

/** Every item gets an equal share of the batch's tokens, the rest going to those with more (maximumParallelism). */
function shareBatch(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const out = items.map((item) => ({ item, processAmount: 0 }));
  let left = size;
  for (let pass = 0; pass < 4 && left > 0; pass++) {
    const open = out.filter((p) => p.processAmount < p.item.tokens.length);
    if (open.length === 0) break;
    const share = Math.max(1, Math.floor(left / open.length));
    for (const p of open) {
      const add = Math.min(share, p.item.tokens.length - p.processAmount, left);
      p.processAmount += add;
      left -= add;
      if (left === 0) break;
    }
  }
  return out.filter((p) => p.processAmount > 0);
}

/** The private fields of node-llama-cpp 3.21.1's LlamaContextSequence that eraseTail edits. */
interface SequenceInternals {
  _contextTokens?: number[];
  _nextTokenIndex?: number;
  _sequenceId?: number;
  _loadedTokenPredictions?: unknown[];
  needsCheckpoints?: boolean;
  _context?: { _ctx?: { removeTokenCellsFromSequence?: (sequenceId: number, start: number, end: number) => boolean } };
}
