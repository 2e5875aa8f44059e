// node-llama-cpp's native context, reached for the benchmark's one-token decodes on the GPU
// backends (node-llama-cpp's evaluate() must sample each token; llama-bench's test_gen does not).
//
// The cpu backend does not use node-llama-cpp's context (llama-direct.ts): its prebuilt CPU
// backends are built without OpenMP and its context attaches no ggml threadpool
// (llama_attach_threadpool), so every llama_decode with n threads starts and joins n - 1 fresh
// workers (ggml-cpu.c ggml_graph_compute, "disposable threadpool") whose barriers spin without
// yielding (ggml_barrier). The fresh worker often starts on the CPU where the decoding thread
// (one of libuv's workers) already spins, and the two take turns at the scheduler tick (4 ms)
// until the kernel moves one (perf sched on a 2-core VM): llama-tiny Q4_K_M decoded at ~70 tok/s
// with 2 threads and ~1,700 with 1. Splitting the thread count (1 for generation steps) was the
// best node-llama-cpp allowed; the direct path's persistent threadpool keeps every core.
import type { LlamaContext } from "node-llama-cpp";

/** The members of node-llama-cpp 3.21.1's native context (src/bindings/AddonTypes.ts AddonContext) used here. */
export interface NativeContext {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenSequenceIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  /** llama_memory_seq_rm(mem, sequenceId, -1, -1). */
  disposeSequence(sequenceId: number): void;
}

const NATIVE_METHODS = ["initBatch", "addToBatch", "decodeBatch", "disposeSequence"] as const;

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
