// KL divergence of a quantized model from its original, by llama-perplexity's --kl-divergence
// method (tools/perplexity/perplexity.cpp kl_divergence()) but in one lockstep pass: both
// models decode the same windows and each window's two sets of logits are compared while they
// are in memory, instead of writing the original's log-probabilities to a multi-GB file first.
//
// Per scored token: KLD = sum over tokens with log p_orig > -16 of p_orig (log p_orig - log p_q);
// same-top = argmax agrees; dp = p_q(target) - p_orig(target). Summaries as llama.cpp prints
// them: mean KLD with its uncertainty, median and percentiles of the per-token values, RMS dp,
// same-top fraction. llama.cpp reads the original's log-probabilities back quantized to 16 bits;
// here they are exact, which moves the figures far less than their own uncertainty.

import { UsageError } from "@llama-pajamas/artifact";
import { contextForPlan, runChunks, scoredPerChunk, type ChunkPlan, useOverlap } from "./chunks.js";
import { newRowStats, rowKLDivergence, rowKLDivergence16, rowStats } from "./log-softmax.js";
import { type EvalTextOptions, NllSums, planForModel, tokenizeForEval } from "./perplexity.js";
import { type EngineContext, EngineModel } from "../quantize/native.js";

export interface KLDivergenceResult {
  perplexity: {
    original: number;
    originalUncertainty: number;
    quantized: number;
    quantizedUncertainty: number;
  };
  kld: {
    mean: number;
    /** llama.cpp's `±` of the mean. */
    meanUncertainty: number;
    median: number;
    p90: number;
    p95: number;
    p99: number;
    max: number;
    min: number;
  };
  /** Percent of scored positions where both models' most likely token is the same. */
  sameTopPct: number;
  /** RMS of p_q(target) - p_orig(target), in percent. */
  rmsDpPct: number;
  /** Mean of p_q(target) - p_orig(target), in percent. */
  meanDpPct: number;
  ctx: number;
  chunks: number;
  tokensScored: number;
  tokensEvaluated: number;
  seconds: number;
  /** Tokens decoded per second, both models counted (2 * tokensEvaluated / seconds). */
  tokensPerSecond: number;
}

/** llama.cpp's percentile over sorted values (linear interpolation, in float). */
export function percentile(sorted: Float32Array, fraction: number): number {
  if (fraction <= 0) return sorted[0]!;
  if (fraction >= 1) return sorted[sorted.length - 1]!;
  let p = Math.fround(fraction * (sorted.length - 1));
  const ip = Math.floor(p);
  p -= ip;
  return (1 - p) * sorted[ip]! + p * sorted[Math.min(ip + 1, sorted.length - 1)]!;
}

function median(sorted: Float32Array): number {
  const n = sorted.length;
  return n % 2 === 0 ? 0.5 * (sorted[n / 2]! + sorted[n / 2 - 1]!) : sorted[(n - 1) / 2]!;
}

/** perplexity.cpp mean_and_uncertainty. */
function meanAndUncertainty(sum: number, sum2: number, count: number): [number, number] {
  if (count < 1) return [0, 0];
  const f = sum / count;
  const df = sum2 / count - f * f;
  return [f, df > 0 && count > 10 ? Math.sqrt(df / (count - 1)) : 0];
}

export interface KLDivergenceOptions extends EvalTextOptions {
  /** The unquantized model (F16/BF16/F32 GGUF), path or loaded. */
  original: string | EngineModel;
  quantized: string | EngineModel;
  /**
   * Read the original's log-probabilities through llama-perplexity's 16-bit encoding, as
   * `--kl-divergence-base` stores them: figures then equal llama.cpp's digit for digit (its
   * "Mean PPL(base)" included). Default false: exact log-probabilities.
   */
  base16Bit?: boolean;
}

/** Perplexity of both models and the KL divergence between them, in one pass. */
export async function klDivergence(opts: KLDivergenceOptions): Promise<KLDivergenceResult> {
  const owned: EngineModel[] = [];
  const load = (m: string | EngineModel) => {
    if (typeof m !== "string") return m;
    const loaded = EngineModel.load(m);
    owned.push(loaded);
    return loaded;
  };
  try {
    const original = load(opts.original);
    const quantized = load(opts.quantized);
    checkSameVocabulary(original, quantized);
    // llama.cpp scores the quantized model on the tokens stored with the original's logits
    const plan = planForModel(original, tokenizeForEval(original, opts.text), opts);
    return await klDivergenceOfPlan(original, quantized, plan, opts);
  } finally {
    for (const m of owned) m.free();
  }
}

export function checkSameVocabulary(original: EngineModel, quantized: EngineModel): void {
  const a = original.info;
  const b = quantized.info;
  if (a.nVocab !== b.nVocab || a.bos !== b.bos || a.addBos !== b.addBos) {
    throw new UsageError(
      `${quantized.path} and ${original.path} have different vocabularies (${b.nVocab} vs ${a.nVocab} tokens, BOS ${b.bos} vs ${a.bos}); ` +
        `compare a quantized model with the model it was made from`,
    );
  }
}

export async function klDivergenceOfPlan(
  original: EngineModel,
  quantized: EngineModel,
  plan: ChunkPlan,
  opts: Pick<KLDivergenceOptions, "threads" | "onProgress" | "signal" | "base16Bit" | "overlap">,
): Promise<KLDivergenceResult> {
  const nVocab = original.info.nVocab;
  const scored = scoredPerChunk(plan);
  const total = plan.nChunks * scored;
  const kldValues = new Float32Array(total);
  const nllBase = new NllSums();
  const nllQuant = new NllSums();
  let sumKld = 0;
  let sumKld2 = 0;
  let sumDp = 0;
  let sumDp2 = 0;
  let sumDp4 = 0;
  let sameTop = 0;
  let n = 0;
  const baseStats = newRowStats();
  const quantStats = newRowStats();
  const baseExps = new Float64Array(nVocab);
  const started = performance.now();
  const contexts: EngineContext[] = [];
  const spare: EngineContext[] = [];
  try {
    contexts.push(contextForPlan(original, plan, opts.threads), contextForPlan(quantized, plan, opts.threads));
    if (useOverlap(plan, nVocab, 2, opts.overlap)) spare.push(contextForPlan(original, plan, opts.threads), contextForPlan(quantized, plan, opts.threads));
    for await (const chunk of runChunks(plan, contexts, { signal: opts.signal, spare: spare.length ? spare : undefined })) {
      const [base, quant] = chunk.logits as [Float32Array, Float32Array];
      for (let r = 0; r < chunk.targets.length; r++) {
        const off = r * nVocab;
        const tok = chunk.targets[r]!;
        rowStats(base, off, nVocab, baseStats, opts.base16Bit ? undefined : baseExps);
        rowStats(quant, off, nVocab, quantStats);
        const nllQ = Math.fround(quantStats.max + quantStats.logSumExp - quant[off + tok]!);
        let nllB: number;
        let kld: number;
        let baseTop: number;
        if (opts.base16Bit) {
          const r = rowKLDivergence16({ base, baseOffset: off, baseStats, other: quant, otherOffset: off, otherStats: quantStats, n: nVocab, target: tok });
          [nllB, kld, baseTop] = [r.nllBase, r.kld, r.argmaxBase];
        } else {
          nllB = baseStats.max + baseStats.logSumExp - base[off + tok]!;
          kld = rowKLDivergence({ base, baseOffset: off, baseStats, baseExps, other: quant, otherOffset: off, otherStats: quantStats, n: nVocab });
          baseTop = baseStats.argmax;
        }
        nllBase.add(nllB);
        nllQuant.add(nllQ);
        sumKld += kld;
        sumKld2 += kld * kld;
        if (baseTop === quantStats.argmax) sameTop++;
        const dp = Math.fround(Math.fround(Math.exp(-nllQ)) - Math.fround(Math.exp(-nllB)));
        sumDp += dp;
        sumDp2 += dp * dp;
        sumDp4 += dp * dp * dp * dp;
        kldValues[n] = kld;
        n++;
      }
      opts.onProgress?.({ chunk: chunk.index + 1, chunks: plan.nChunks, perplexity: nllQuant.perplexity, elapsedMs: performance.now() - started });
    }
  } finally {
    for (const c of [...contexts, ...spare]) c.free();
  }
  const seconds = (performance.now() - started) / 1000;
  kldValues.sort();
  const [meanKld, meanKldUnc] = meanAndUncertainty(sumKld, sumKld2, n);
  const [meanDp] = meanAndUncertainty(sumDp, sumDp2, n);
  const [mseDp] = meanAndUncertainty(sumDp2, sumDp4, n);
  return {
    perplexity: {
      original: nllBase.perplexity,
      originalUncertainty: nllBase.uncertainty,
      quantized: nllQuant.perplexity,
      quantizedUncertainty: nllQuant.uncertainty,
    },
    kld: {
      mean: meanKld,
      meanUncertainty: meanKldUnc,
      median: median(kldValues),
      p90: percentile(kldValues, 0.9),
      p95: percentile(kldValues, 0.95),
      p99: percentile(kldValues, 0.99),
      max: kldValues[n - 1]!,
      min: kldValues[0]!,
    },
    sameTopPct: (100 * sameTop) / n,
    rmsDpPct: 100 * Math.sqrt(mseDp),
    meanDpPct: 100 * meanDp,
    ctx: plan.nCtx,
    chunks: plan.nChunks,
    tokensScored: n,
    tokensEvaluated: plan.nChunks * plan.nCtx,
    seconds,
    tokensPerSecond: (2 * plan.nChunks * plan.nCtx) / seconds,
  };
}
