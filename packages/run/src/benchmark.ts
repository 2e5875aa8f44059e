import { UsageError } from "@llama-pajamas/artifact";
import type { LoadedModel } from "./backends/types.js";
import { ContextOverflowError } from "./errors.js";

/** llama-bench's defaults: pp512, tg128, 5 repetitions. */
export const DEFAULT_PROMPT_TOKENS = 512;
export const DEFAULT_GEN_TOKENS = 128;
export const DEFAULT_REPEATS = 5;

export interface BenchmarkOptions {
  /** Prompt tokens per pp run; 0 skips pp. */
  promptTokens?: number;
  /** Generated tokens per tg run; 0 skips tg. */
  genTokens?: number;
  repeats?: number;
  /** One short untimed run first, as llama-bench does. Default true. */
  warmup?: boolean;
  /** Called after each timed run. */
  onRun?: (test: "pp" | "tg", index: number, tokensPerSecond: number) => void;
}

export interface SpeedStats {
  tokens: number;
  /** Mean over repeats of tokens / seconds (llama-bench's avg_ts). */
  tokensPerSecond: number;
  /** Sample standard deviation of the same (llama-bench's stdev_ts). */
  stddev: number;
}

export interface BenchmarkResult {
  backend: string;
  model: string;
  /** Threads for pp (prompt batches). */
  threads: number;
  /** Threads for tg (one-token decodes); see ModelInfo.generationThreads. */
  generationThreads: number;
  pp: SpeedStats | null;
  tg: SpeedStats | null;
  loadSeconds: number;
  peakRssBytes: number;
}

/** Deterministic "random" token ids (llama-bench uses std::rand() % n_vocab). */
function tokenSource(vocab: number, seed = 42): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  };
}

export function meanStddev(values: readonly number[]): { mean: number; stddev: number } {
  const n = values.length;
  if (n === 0) return { mean: 0, stddev: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, stddev: Math.sqrt(variance) };
}

/**
 * pp: N prompt tokens evaluated in batches of the context's batch size from an empty cache;
 * tg: N tokens decoded one per llama_decode from an empty cache, each with its logits, the next
 * token chosen here (no sampling), as llama-bench's test_prompt and test_gen (llama.cpp
 * tools/llama-bench/llama-bench.cpp). Both start with BOS when the model adds one.
 */
export async function runBenchmark(
  model: LoadedModel,
  options: BenchmarkOptions & { loadSeconds: number; model: string },
): Promise<BenchmarkResult> {
  const pp = options.promptTokens ?? DEFAULT_PROMPT_TOKENS;
  const tg = options.genTokens ?? DEFAULT_GEN_TOKENS;
  const repeats = options.repeats ?? DEFAULT_REPEATS;
  for (const [name, v, min] of [["promptTokens", pp, 0], ["genTokens", tg, 0], ["repeats", repeats, 1]] as const) {
    if (!Number.isInteger(v) || v < min) throw new UsageError(`${name} must be an integer >= ${min}, got ${v}`);
  }
  const ctx = model.info.contextSize;
  for (const [test, n] of [["prompt", pp], ["generation", tg]] as const) {
    if (n > model.maxContextTokens) {
      throw new ContextOverflowError(
        `the ${test} test needs ${n} tokens, but the context holds ${ctx} (room for ${model.maxContextTokens}); raise --ctx-size`,
        { promptTokens: n, contextSize: ctx },
      );
    }
  }
  const vocab = Math.max(1, model.info.vocabularySize);
  const bos = model.info.addBos ? model.info.bosToken?.id : undefined;
  const next = tokenSource(vocab);
  const prompt = (n: number): number[] => Array.from({ length: n }, (_, i) => (i === 0 && bos !== undefined ? bos : next()));
  const genToken = (i: number): number => (i === 0 && bos !== undefined ? bos : next());

  if (options.warmup !== false) {
    if (pp > 0) await model.timePromptProcessing(prompt(pp));
    if (tg > 0) await model.timeGeneration(1, genToken);
  }
  const measure = async (test: "pp" | "tg", n: number): Promise<SpeedStats | null> => {
    if (n === 0) return null;
    const speeds: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const seconds = test === "pp" ? await model.timePromptProcessing(prompt(n)) : await model.timeGeneration(n, genToken);
      const speed = n / Math.max(seconds, 1e-9);
      speeds.push(speed);
      options.onRun?.(test, r, speed);
    }
    const { mean, stddev } = meanStddev(speeds);
    return { tokens: n, tokensPerSecond: mean, stddev };
  };
  const ppStats = await measure("pp", pp);
  const tgStats = await measure("tg", tg);
  return {
    backend: model.backend,
    model: options.model,
    threads: model.info.threads,
    generationThreads: model.info.generationThreads,
    pp: ppStats,
    tg: tgStats,
    loadSeconds: options.loadSeconds,
    // maxRSS is in kilobytes (getrusage ru_maxrss): the process's peak, which includes the model.
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}
