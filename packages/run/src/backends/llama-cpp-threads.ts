// CPU thread counts for node-llama-cpp's decodes, and the one-token decode the benchmark times.
//
// Why generation gets its own count: node-llama-cpp 3.21.1's prebuilt CPU backends are built
// without OpenMP and its context attaches no ggml threadpool (llama_attach_threadpool), so every
// llama_decode with n threads starts and joins n - 1 fresh workers (ggml-cpu.c
// ggml_graph_compute, "disposable threadpool"), whose barriers spin without yielding
// (ggml_barrier). The fresh worker often starts on the CPU where the decoding thread (one of
// libuv's workers, a different one each time) already spins, and the two take turns at the
// scheduler tick (4 ms) until the kernel moves one (perf sched on a 2-core VM). A prompt batch
// (tens of ms) hardly notices; a one-token decode of a small model (under a millisecond)
// becomes 5-50x slower: llama-tiny Q4_K_M decoded at ~70 tok/s with 2 threads and ~1,700 with
// 1, a 300M-parameter Q4_K_M at 70 against 98. llama-bench does not see this: its OpenMP
// threads persist between decodes. (UV_THREADPOOL_SIZE=1 keeps a bare decode loop fast, but
// generation, which samples between decodes, stayed slower on 2 threads than on 1.)
// Multi-token batches keep every core; generation steps (one token per sequence) get 1 thread
// unless the model is slow enough on one, or, with more cores, a short timing finds all faster.
import type { LlamaContext } from "node-llama-cpp";

/** The members of node-llama-cpp 3.21.1's native context (src/bindings/AddonTypes.ts AddonContext) used here. */
export interface NativeContext {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenSequenceIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  /** llama_set_n_threads(ctx, n, n): node-llama-cpp has one count for n_threads and n_threads_batch. */
  setThreads(threads: number): void;
  getThreads(): number;
  /** llama_memory_seq_rm(mem, sequenceId, -1, -1). */
  disposeSequence(sequenceId: number): void;
}

const NATIVE_METHODS = ["initBatch", "addToBatch", "decodeBatch", "setThreads", "getThreads", "disposeSequence"] as const;

/** Timed one-token decodes per candidate thread count, after one untimed. */
const TUNE_DECODES = 5;
/** A candidate stops timing once its decodes have taken this long (a slow model needs few). */
const TUNE_BUDGET_MS = 150;
/** A one-token decode on one thread slower than this is compute-bound: all cores, no timing. */
const TUNE_SKIP_MS = 40;
/**
 * One thread reads weights at most this fast (a generous bound): a decode reads every weight
 * once, so a model over 2 GB surely exceeds TUNE_SKIP_MS on one thread and gets all cores
 * without timing.
 */
const MAX_THREAD_BYTES_PER_S = 50e9;
/** More threads must be at least this much faster to be chosen: they are the fragile choice. */
const TUNE_MARGIN = 0.9;
/**
 * Up to this many cores, fresh workers stall one-token decodes whenever they start (measured on
 * 2 cores); the first ones after a process starts often do not, so timing them would mislead.
 */
const FEW_CORES = 4;
/** The sequence the timing decodes use; it is empty before and after. */
const TUNE_SEQUENCE = 0;

export function nativeContext(context: LlamaContext): NativeContext {
  const native = (context as unknown as { _ctx?: Partial<NativeContext> })._ctx;
  const missing = NATIVE_METHODS.filter((m) => typeof native?.[m] !== "function");
  if (native === undefined || missing.length > 0) {
    throw new Error(`node-llama-cpp's native context lacks ${missing.join(", ")}; this runtime needs node-llama-cpp 3.21.1`);
  }
  return native as NativeContext;
}

/** The sequence id node-llama-cpp gave `sequence` (a LlamaContextSequence). */
export function sequenceId(sequence: unknown): number {
  const id = (sequence as { _sequenceId?: unknown })._sequenceId;
  if (typeof id !== "number") throw new Error("node-llama-cpp's sequence has no _sequenceId; this runtime needs node-llama-cpp 3.21.1");
  return id;
}

/**
 * Threads for generation on a fresh context: `maxThreads` when one thread decodes a token in
 * more than TUNE_SKIP_MS (or surely would, by the model's size); else 1 on up to FEW_CORES
 * cores; else whichever of 1 and `maxThreads` decodes one token faster (medians of a few timed
 * decodes with logits; `maxThreads` only when clearly faster).
 */
export async function tuneGenerationThreads(
  native: NativeContext,
  { maxThreads, token, modelBytes }: { maxThreads: number; token: number; modelBytes: number },
): Promise<number> {
  if (maxThreads <= 1) return 1;
  if (modelBytes > (TUNE_SKIP_MS / 1000) * MAX_THREAD_BYTES_PER_S) return maxThreads;
  try {
    const one = await medianDecodeMs(native, 1, token);
    if (one > TUNE_SKIP_MS) return maxThreads;
    if (maxThreads <= FEW_CORES) return 1;
    const all = await medianDecodeMs(native, maxThreads, token);
    return all < one * TUNE_MARGIN ? maxThreads : 1;
  } finally {
    native.setThreads(maxThreads);
  }
}

async function medianDecodeMs(native: NativeContext, threads: number, token: number): Promise<number> {
  native.setThreads(threads);
  const ms: number[] = [];
  let spentMs = 0;
  for (let i = 0; i <= TUNE_DECODES && (ms.length === 0 || spentMs < TUNE_BUDGET_MS); i++) {
    native.initBatch(1);
    native.addToBatch(TUNE_SEQUENCE, 0, Uint32Array.of(token), Uint32Array.of(0));
    const t0 = performance.now();
    try {
      await native.decodeBatch();
    } finally {
      native.disposeSequence(TUNE_SEQUENCE);
    }
    const t = performance.now() - t0;
    spentMs += t;
    if (i > 0 || t > TUNE_SKIP_MS) ms.push(t);
  }
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1]!;
}

/**
 * Makes every decode of `native` run with `generationThreads` when it holds at most
 * `generationBatchTokens` tokens (one per sequence: a generation step), else with
 * `batchThreads` (llama.cpp's n_threads and n_threads_batch, which node-llama-cpp 3.21.1 sets to
 * one value before each decode).
 */
export function splitThreads(
  native: NativeContext,
  { generationThreads, batchThreads, generationBatchTokens }: { generationThreads: number; batchThreads: number; generationBatchTokens: number },
): void {
  if (generationThreads === batchThreads) return;
  const initBatch = native.initBatch.bind(native);
  const decodeBatch = native.decodeBatch.bind(native);
  const setThreads = native.setThreads.bind(native);
  let batchTokens = 0;
  // Own properties: the prototype's methods are read-only (N-API), so plain assignment throws.
  define(native, "initBatch", (size: number) => {
    batchTokens = size;
    initBatch(size);
  });
  define(native, "decodeBatch", () => {
    setThreads(batchTokens <= generationBatchTokens ? generationThreads : batchThreads);
    return decodeBatch();
  });
}

function define<K extends keyof NativeContext>(native: NativeContext, name: K, value: NativeContext[K]): void {
  Object.defineProperty(native, name, { configurable: true, value });
}

/**
 * Decodes `count` tokens one per llama_decode on an empty `sequence`, each with its logits and
 * the next chosen by the caller, as llama-bench's test_gen (llama.cpp
 * tools/llama-bench/llama-bench.cpp); no sampling. Seconds; the sequence is empty afterwards.
 * The caller must have the context to itself.
 */
export async function timeOneTokenDecodes(
  native: NativeContext,
  { sequence, count, nextToken }: { sequence: number; count: number; nextToken: (i: number) => number },
): Promise<number> {
  const t0 = performance.now();
  try {
    for (let i = 0; i < count; i++) {
      native.initBatch(1);
      native.addToBatch(sequence, i, Uint32Array.of(nextToken(i)), Uint32Array.of(0));
      await native.decodeBatch();
    }
    return (performance.now() - t0) / 1000;
  } finally {
    native.disposeSequence(sequence);
  }
}
