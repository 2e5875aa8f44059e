// Per-row log-softmax statistics over llama.cpp logits, with the arithmetic of
// tools/perplexity/perplexity.cpp: a float max, differences rounded to float, and the sum of
// exponentials in double. exp is a Cody-Waite reduction with a degree-7 polynomial (relative
// error below 1e-8, finer than expf's), about twice as fast as Math.exp in V8; these loops run
// over n_vocab values for every scored token, so they dominate a tiny model's evaluation.

const LOG2E = 1.4426950408889634;
const LN2_HI = 0.6931471803691238;
const LN2_LO = 1.9082149292705877e-10;
/** expf underflows to 0 below this; those terms add nothing to a double sum. */
const EXP_MIN = -104;
/** 2^-k for k = 0..160. */
const POW2_NEG = Float64Array.from({ length: 161 }, (_, k) => 2 ** -k);

/** exp(x) for x <= 0 (0 below EXP_MIN). */
export function expNonPositive(x: number): number {
  if (x < EXP_MIN) return 0;
  const k = (0.5 - x * LOG2E) | 0; // round(-x / ln2), x <= 0
  const r = x + k * LN2_HI + k * LN2_LO;
  return (1 + r * (1 + r * (0.5 + r * (0.16666666666666666 + r * (0.041666666666666664 + r * (0.008333333333333333 +
    r * (0.001388888888888889 + r * 0.0001984126984126984))))))) * POW2_NEG[k]!;
}

/** Statistics of one row of logits. */
export interface RowStats {
  /** Largest logit (first index on ties, as perplexity.cpp's strict `>`). */
  max: number;
  argmax: number;
  /** log(sum(exp(logit - max))), rounded to float as perplexity.cpp stores log_sum_exp. */
  logSumExp: number;
}

export function newRowStats(): RowStats {
  return { max: 0, argmax: 0, logSumExp: 0 };
}

/**
 * Max, argmax and log-sum-exp of logits[offset .. offset + n). When `exps` is given, it receives
 * exp(logit - max) for each entry (the KL divergence reuses them as unnormalized probabilities).
 */
export function rowStats(logits: Float32Array, offset: number, n: number, out: RowStats, exps?: Float64Array): RowStats {
  let max = logits[offset]!;
  let argmax = 0;
  for (let i = 1; i < n; i++) {
    const v = logits[offset + i]!;
    if (v > max) {
      max = v;
      argmax = i;
    }
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = Math.fround(logits[offset + i]! - max);
    let e = 0;
    if (x >= EXP_MIN) {
      const k = (0.5 - x * LOG2E) | 0;
      const r = x + k * LN2_HI + k * LN2_LO;
      e = (1 + r * (1 + r * (0.5 + r * (0.16666666666666666 + r * (0.041666666666666664 + r * (0.008333333333333333 +
        r * (0.001388888888888889 + r * 0.0001984126984126984))))))) * POW2_NEG[k]!;
    }
    if (exps) exps[i] = e;
    sum += e;
  }
  out.max = max;
  out.argmax = argmax;
  out.logSumExp = Math.fround(Math.log(sum));
  return out;
}

/**
 * Negative log-likelihood of `token` (perplexity.cpp log_softmax: max + log_sum_exp - logit,
 * in double from float parts).
 */
export function tokenNll(logits: Float32Array, offset: number, stats: RowStats, token: number): number {
  return stats.max - logits[offset + token]! + stats.logSumExp;
}

/**
 * KL(base || other) for one position, as perplexity.cpp's KLD log_softmax computes it from the
 * base's stored log-probabilities: the sum over tokens whose base log-probability exceeds -16
 * of p_base * (log p_base - log p_other). `baseExps` holds exp(base logit - base max)
 * (from rowStats), so no exponential is taken again here.
 */
export function rowKLDivergence(opts: {
  base: Float32Array;
  baseOffset: number;
  baseStats: RowStats;
  baseExps: Float64Array;
  other: Float32Array;
  otherOffset: number;
  otherStats: RowStats;
  n: number;
}): number {
  const { base, baseOffset, baseStats, baseExps, other, otherOffset, otherStats, n } = opts;
  const baseShift = baseStats.max + baseStats.logSumExp; // log p_base = logit - baseShift
  const otherShift = otherStats.max + otherStats.logSumExp;
  const invSum = Math.exp(-baseStats.logSumExp);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const lpBase = base[baseOffset + i]! - baseShift;
    if (lpBase > -16) {
      sum += baseExps[i]! * invSum * (lpBase - (other[otherOffset + i]! - otherShift));
    }
  }
  return sum;
}

/** perplexity.cpp nearest_int: round half to even, through float. */
function nearestInt(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** What rowKLDivergence16 also reports about the base row it quantized. */
export interface Base16Row {
  kld: number;
  /** -log p_base(target) from the 16-bit values. */
  nllBase: number;
  /** First index of the largest 16-bit log-probability. */
  argmaxBase: number;
}

/**
 * rowKLDivergence as llama-perplexity computes it from a --kl-divergence-base file: the base's
 * log-probabilities go through perplexity.cpp's 16-bit encoding first (log_softmax with
 * uint16_t output: range [max - 16, max] in 65535 steps, lower values clamped), then are read
 * back (the KLD log_softmax). Gives llama.cpp's figures digit for digit, at the cost of one more
 * exponential per token and position.
 */
export function rowKLDivergence16(opts: {
  base: Float32Array;
  baseOffset: number;
  baseStats: RowStats;
  other: Float32Array;
  otherOffset: number;
  otherStats: RowStats;
  n: number;
  target: number;
}): Base16Row {
  const { base, baseOffset: bo, baseStats, other, otherOffset: oo, otherStats, n } = opts;
  const f = Math.fround;
  const maxLogit = baseStats.max;
  let minLogit = maxLogit;
  for (let i = 0; i < n; i++) if (base[bo + i]! < minLogit) minLogit = base[bo + i]!;
  minLogit = Math.max(minLogit, f(maxLogit - 16));
  const minLogProb = f(f(minLogit - maxLogit) - baseStats.logSumExp);
  const scale = f(f(maxLogit - minLogit) / 65535);
  const invScale = scale ? f(1 / scale) : 0;
  const otherShift = f(otherStats.max + otherStats.logSumExp);
  let sum = 0;
  let argmaxBase = -1;
  let pMax = 0;
  let nllBase = 0;
  for (let i = 0; i < n; i++) {
    const l = base[bo + i]!;
    const code = scale && l > minLogit ? nearestInt(f(invScale * f(l - minLogit))) : 0;
    const lp = f(f(scale * code) + minLogProb);
    if (i === 0 || lp > pMax) {
      pMax = lp;
      argmaxBase = i;
    }
    if (i === opts.target) nllBase = -lp;
    if (lp > -16) sum += f(expNonPositive(lp)) * f(f(lp - other[oo + i]!) + otherShift);
  }
  return { kld: sum, nllBase, argmaxBase };
}
