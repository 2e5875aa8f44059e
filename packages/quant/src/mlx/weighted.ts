// Importance-weighted MLX affine quantization (issue 6, `convert --calibrate` with MLX output).
// The stored format is exactly mx.quantize(mode="affine")'s (see affine.ts): codes q in
// [0, 2^bits - 1] packed as MLX packs them, scale and bias per group in the weight dtype,
// w_hat = q * scale + bias. Only the choice of (scale, bias) and codes differs: MLX takes the
// group's min/max; here each group minimises the importance-weighted error
//
//   E = sum_i imp_i * (w_i - (q_i * scale + bias))^2
//
// where imp_i is the importance matrix's value for the input column of w_i (the mean squared
// activation that column sees, so E estimates the group's share of the output error). mlx-lm
// does nothing of the kind; llama.cpp's k-quants do a similar search for their own formats.
//
// Per group (n = 2^bits - 1):
//   1. MLX's own (scale, bias) and codes are the baseline, kept unless something beats it.
//   2. Candidate step sizes range / (n + d), d on a grid over [-1, 1]: codes by rounding from
//      the group's minimum, then the weighted least-squares (scale, bias) for those codes, in
//      closed form (normal equations of a weighted line fit through the points (q_i, w_i)):
//        [sum imp q^2  sum imp q] [scale]   [sum imp q w]
//        [sum imp q    sum imp  ] [bias ] = [sum imp w  ]
//   3. Each solution is rounded to the storage dtype first (what is stored is what counts), the
//      codes are reassigned to the nearest level of the rounded (scale, bias), the error is
//      measured, and the fit is repeated from the new codes while it keeps improving.
//   4. The best candidate and the baseline are compared on the values MLX's qmm kernels
//      dequantize (float32 multiply-add, rounded once to the dtype); the candidate is kept only
//      when its weighted error is strictly lower. So no group is ever worse than MLX's under E.
// Groups whose importances are all zero (a column no calibration token reached) keep MLX's.
// Cost: about 1.5M weights/s on one core, some 20x slower than affineQuantize's min/max.
import { ConversionError } from "@llama-pajamas/artifact";
import { f16ToF32, f32BitsToF16Bits } from "@llama-pajamas/gguf/formats/float.js";
import {
  type AffineKernel,
  type AffineQuantizeOptions,
  type AffineQuantized,
  type MLXFloatDtype,
  affineGroupParams,
  affineQuantizeGroups,
  castToDtype,
  checkAffineParams,
  roundHalfAway,
  roundHalfEven,
} from "@llama-pajamas/gguf/mlx/affine.js";

/**
 * The grid of step-size offsets d (step = range / (n + d)): 7 points over [-1, 1]. On
 * llama-tiny's weights and llama-imatrix's matrix, 11 points and more refits lower E by another
 * 0.2-0.5% of MLX's error at half the speed.
 */
const GRID_STEPS = 6;
/** Refits from reassigned codes per candidate (each stops early once it stops improving). */
const MAX_REFITS = 4;

export interface WeightedAffineOptions extends AffineQuantizeOptions {
  /**
   * Importance per input column: `cols` values, or `cols * slices` for stacked experts (slice e
   * holds expert e's columns, as in llama.cpp's imatrix for a [experts, rows, cols] weight).
   */
  importance: Float32Array;
  /** Tensor rows per importance slice (an expert's rows); needed when there are several slices. */
  rowsPerSlice?: number;
}

/** What the weighted quantizer did, summed over every call given the same object. */
export interface WeightedStats {
  groups: number;
  /** Groups whose stored (scale, bias, codes) differ from MLX's min/max choice. */
  changed: number;
  /** Sum over groups of E for MLX's choice and for the chosen one (dequantized values). */
  errorMLX: number;
  errorWeighted: number;
}

export function newWeightedStats(): WeightedStats {
  return { groups: 0, changed: 0, errorMLX: 0, errorWeighted: 0 };
}

export interface WeightedGroup {
  /** The stored scale and bias (exact values of the dtype). */
  scale: number;
  bias: number;
  q: Uint8Array;
  /** E of the stored group, on the dequantized values. */
  error: number;
  /** E of MLX's own choice for the same group. */
  errorMLX: number;
  /** True when MLX's own choice was kept. */
  fromMLX: boolean;
}

/**
 * One group: `values` (already values of `dtype`) and their importances, both of groupSize
 * entries. For tests and tools; affineQuantizeWeighted does the same over whole tensors.
 */
export function weightedAffineGroup(opts: { values: Float32Array; importance: Float32Array; bits: number; dtype: MLXFloatDtype; kernel?: AffineKernel }): WeightedGroup {
  const g = opts.values.length;
  if (opts.importance.length !== g) throw new RangeError(`${opts.importance.length} importances for a group of ${g} values`);
  checkAffineParams({ bits: opts.bits, groupSize: g });
  const solver = new GroupSolver(g, opts.bits, opts.dtype, opts.kernel ?? "metal");
  const r = solver.solve(opts.values, 0, opts.importance, 0);
  return { scale: r.scale, bias: r.bias, q: solver.q.slice(), error: r.error, errorMLX: r.errorMLX, fromMLX: r.fromMLX };
}

/**
 * mx.quantize's output format for a [rows, cols] array, with each group's parameters chosen by
 * importance-weighted error (see the header). `firstRow` places `data` in the tensor, which
 * picks the expert slice of each row.
 */
export function affineQuantizeWeighted(opts: WeightedAffineOptions, stats?: WeightedStats): AffineQuantized {
  const { cols, groupSize, bits } = opts;
  checkAffineParams({ ...opts, cols });
  const imp = opts.importance;
  if (imp.length === 0 || imp.length % cols !== 0) {
    throw new ConversionError(`${opts.name ?? "tensor"}: ${imp.length} importance values are not whole slices of ${cols} columns`);
  }
  const slices = imp.length / cols;
  if (slices > 1 && !(opts.rowsPerSlice !== undefined && opts.rowsPerSlice > 0)) {
    throw new ConversionError(`${opts.name ?? "tensor"}: ${slices} importance slices need rowsPerSlice`);
  }
  const solver = new GroupSolver(groupSize, bits, opts.dtype, opts.kernel ?? "metal");
  const firstRow = opts.firstRow ?? 0;
  return affineQuantizeGroups(opts, (w, start, r, q, at) => {
    const slice = slices === 1 ? 0 : Math.floor((firstRow + r) / opts.rowsPerSlice!);
    if (slice >= slices) throw new ConversionError(`${opts.name ?? "tensor"}: row ${firstRow + r} falls past the ${slices} importance slices`);
    const res = solver.solve(w, start, imp, slice * cols + at);
    q.set(solver.q, at);
    if (stats) {
      stats.groups++;
      if (!res.fromMLX) stats.changed++;
      stats.errorMLX += res.errorMLX;
      stats.errorWeighted += res.error;
    }
    return res;
  });
}

interface Solution {
  scale: number;
  bias: number;
  error: number;
  errorMLX: number;
  fromMLX: boolean;
}

/** One group at a time, with scratch buffers reused across groups. */
class GroupSolver {
  /** The chosen codes of the last solve(). */
  readonly q: Uint8Array;
  private readonly cand: Uint8Array;
  private readonly mlx: Uint8Array;
  private readonly n: number;
  private readonly round: (x: number) => number;
  private readonly toDtype: (x: number) => number;
  /** The best candidate of the current solve(), exact E of the rounded (scale, bias). */
  private best = Infinity;
  private bestScale = 0;
  private bestBias = 0;

  constructor(
    private readonly g: number,
    private readonly bits: number,
    dtype: MLXFloatDtype,
    private readonly kernel: AffineKernel,
  ) {
    this.q = new Uint8Array(g);
    this.cand = new Uint8Array(g);
    this.mlx = new Uint8Array(g);
    this.n = (1 << bits) - 1;
    this.round = kernel === "metal" ? roundHalfAway : roundHalfEven;
    this.toDtype = scalarRounder(dtype);
  }

  solve(x: Float32Array, xo: number, imp: Float32Array, io: number): Solution {
    const { g, n } = this;
    // 1. MLX's choice, code for code as affineQuantize computes it.
    const p = affineGroupParams(x, xo, { groupSize: g, bits: this.bits, kernel: this.kernel });
    for (let j = 0; j < g; j++) {
      const v = this.round(Math.fround(Math.fround(x[xo + j]! - p.bias) / p.scale));
      this.mlx[j] = v < 0 ? 0 : v > n ? n : v;
    }
    const sM = this.toDtype(p.scale);
    const bM = this.toDtype(p.bias);
    const errorMLX = this.dequantError(x, xo, imp, io, this.mlx, sM, bM);
    const keepMLX = (): Solution => {
      this.q.set(this.mlx);
      return { scale: sM, bias: bM, error: errorMLX, errorMLX, fromMLX: true };
    };

    let total = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < g; j++) {
      total += imp[io + j]!;
      const v = x[xo + j]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(total > 0) || !(hi > lo)) return keepMLX();

    // 2-3. Candidates: MLX's codes refitted, then the grid of step sizes from the minimum.
    this.best = Infinity;
    this.refine(x, xo, imp, io, this.mlx, p.scale);
    const range = hi - lo;
    for (let k = 0; k <= GRID_STEPS; k++) {
      const inv = (n - 1 + (2 * k) / GRID_STEPS) / range;
      for (let j = 0; j < g; j++) {
        const v = Math.round((x[xo + j]! - lo) * inv);
        this.cand[j] = v < 0 ? 0 : v > n ? n : v;
      }
      this.refine(x, xo, imp, io, this.cand, 1 / inv);
    }
    if (this.best === Infinity) return keepMLX();
    const bestScale = this.bestScale;
    const bestBias = this.bestBias;

    // 4. Keep it only when it beats MLX on the values the kernels give back.
    const error = this.dequantError(x, xo, imp, io, this.q, bestScale, bestBias);
    if (!(error < errorMLX)) return keepMLX();
    return { scale: bestScale, bias: bestBias, error, errorMLX, fromMLX: false };
  }

  /**
   * Fit (scale, bias) to codes `start`, round them to the dtype, reassign the codes, measure;
   * again from the new codes while E drops. The best seen goes to best / q.
   */
  private refine(x: Float32Array, xo: number, imp: Float32Array, io: number, start: Uint8Array, step: number): void {
    let prev = Infinity;
    let codes = start;
    let s = step;
    for (let it = 0; it < MAX_REFITS; it++) {
      const fit = this.fit(x, xo, imp, io, codes, s); // reads codes before assign() overwrites cand
      if (fit === undefined) return;
      const sT = this.toDtype(fit.scale);
      const bT = this.toDtype(fit.bias);
      if (!Number.isFinite(sT) || !Number.isFinite(bT)) return;
      const err = this.assign(x, xo, imp, io, sT, bT);
      if (err < this.best) {
        this.best = err;
        this.bestScale = sT;
        this.bestBias = bT;
        this.q.set(this.cand);
      }
      if (!(err < prev)) return;
      prev = err;
      s = sT;
      codes = this.cand;
    }
  }

  /**
   * The weighted least-squares (scale, bias) for codes `q`. When the weighted codes are all
   * equal (one column carries all the importance) the scale stays `step` and the bias alone
   * fits; undefined when nothing can be fitted.
   */
  private fit(x: Float32Array, xo: number, imp: Float32Array, io: number, q: Uint8Array, step: number): { scale: number; bias: number } | undefined {
    let sw = 0;
    let sq = 0;
    let sqq = 0;
    let sx = 0;
    let sqx = 0;
    for (let j = 0; j < this.g; j++) {
      const w = imp[io + j]!;
      if (w === 0) continue;
      const qj = q[j]!;
      const xj = x[xo + j]!;
      sw += w;
      sq += w * qj;
      sqq += w * qj * qj;
      sx += w * xj;
      sqx += w * qj * xj;
    }
    if (!(sw > 0)) return undefined;
    const det = sw * sqq - sq * sq;
    if (det > 1e-9 * sw * sqq) return { scale: (sw * sqx - sq * sx) / det, bias: (sqq * sx - sq * sqx) / det };
    return Number.isFinite(step) && step !== 0 ? { scale: step, bias: (sx - step * sq) / sw } : undefined;
  }

  /** Nearest codes for a stored (scale, bias) into `cand`; returns E in exact arithmetic. */
  private assign(x: Float32Array, xo: number, imp: Float32Array, io: number, scale: number, bias: number): number {
    const { g, n } = this;
    let err = 0;
    for (let j = 0; j < g; j++) {
      const xj = x[xo + j]!;
      let v = scale === 0 ? 0 : Math.round((xj - bias) / scale);
      v = v < 0 ? 0 : v > n ? n : v;
      this.cand[j] = v;
      const d = xj - (v * scale + bias);
      err += imp[io + j]! * d * d;
    }
    return err;
  }

  /** E on the values MLX's qmm kernels use: fround(q * scale + bias), rounded to the dtype. */
  private dequantError(x: Float32Array, xo: number, imp: Float32Array, io: number, q: Uint8Array, scale: number, bias: number): number {
    let err = 0;
    for (let j = 0; j < this.g; j++) {
      const v = this.toDtype(Math.fround(Math.fround(q[j]! * scale) + bias));
      const d = x[xo + j]! - v;
      err += imp[io + j]! * d * d;
    }
    return err;
  }
}

/** Scalar round-to-nearest-even into a dtype (the same bits as castToDtype), without allocating. */
function scalarRounder(dtype: MLXFloatDtype): (x: number) => number {
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  if (dtype === "float32") return Math.fround;
  if (dtype === "bfloat16") {
    return (x) => {
      f[0] = x;
      const b = bits[0]!;
      if ((b & 0x7fffffff) > 0x7f800000) return NaN;
      bits[0] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
      return f[0]!;
    };
  }
  const h = new Uint16Array(1);
  return (x) => {
    f[0] = x;
    h[0] = f32BitsToF16Bits(bits[0]!);
    return f16ToF32(h, f)[0]!;
  };
}
