// MLX affine quantization (mx.quantize(w, group_size, bits, mode="affine")), reproduced in
// TypeScript. Followed from ml-explore/mlx at 846d1762 (v0.32.1+):
//   mlx/backend/metal/kernels/quantized.h  affine_quantize     (Apple GPU; what mlx_lm.convert runs)
//   mlx/backend/cuda/quantized/affine_quantize.cu              (same arithmetic as Metal)
//   mlx/backend/cpu/quantized.cpp          quantize<T, U>      (CPU stream)
//   mlx/ops.cpp                            affine_quantize / pack_and_quantize (op-level fallback)
//
// Per group of g consecutive values of a row, all in float32 (the inputs are T = the weight's
// dtype, widened exactly):
//
//   w_max, w_min   over the group. GPU kernels start the max at 0 (`float w_max = 0`), so an
//                  all-negative group gets w_max = 0; the CPU kernel starts at -inf.
//   scale  = max((w_max - w_min) / (2^bits - 1), 1e-7)
//   side   = |w_min| > |w_max|            the larger-magnitude edge is anchored exactly:
//   scale  = side ? scale : -scale
//   edge   = side ? w_min : w_max
//   q0     = round(edge / scale)
//   scale  = q0 != 0 ? edge / q0 : scale  so that 0 sits exactly on level -q0
//   bias   = q0 != 0 ? edge : 0
//   q_i    = clamp(round((w_i - bias) / scale), 0, 2^bits - 1)
//   stored: q packed into uint32 words; scale and bias cast (round to nearest even) to T.
//
// `round` is the one place the backends differ: Metal's and CUDA's round() rounds halfway cases
// away from zero, the CPU kernel's std::rint rounds them to even. The docs' formula (no
// anchoring, bias = w_min) is a simplification; the kernels above are what runs.
//
// Dequantization: w_hat = q * scale + bias with the stored T scale/bias, computed in float32 and
// rounded once to T (the qmm kernels' dequantize since mlx#4241, "Dequantize in float32").
// mx.dequantize on a CPU stream (ops.cpp fallback) instead rounds to T after the multiply and
// again after the add: `arithmetic: "dtype"` reproduces that.
import { ConversionError } from "@llama-pajamas/artifact";
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from "../formats/float.js";

export const MLX_AFFINE_BITS: readonly number[] = [2, 3, 4, 5, 6, 8];
export const MLX_GROUP_SIZES: readonly number[] = [32, 64, 128];
/** MLX's quantization modes; this module writes "affine" only. */
export const MLX_QUANT_MODES: readonly string[] = ["affine", "mxfp4", "nvfp4", "mxfp8"];

/** MLX dtype names, as config.json's torch_dtype spells them. */
export type MLXFloatDtype = "float32" | "float16" | "bfloat16";
/** Which MLX backend's arithmetic to reproduce (see the header). */
export type AffineKernel = "metal" | "cpu";

/** The constant eps of all three kernels, as a float32. */
const EPS = Math.fround(1e-7);

export interface AffineQuantized {
  /** Packed values, [rows, cols * bits / 32] uint32 words (see packRow). */
  weight: Uint32Array;
  /** [rows, cols / groupSize]: bit patterns for float16/bfloat16, values for float32. */
  scales: Uint16Array | Float32Array;
  biases: Uint16Array | Float32Array;
}

export interface AffineOptions {
  groupSize: number;
  bits: number;
  /** Default "affine"; any other mode is refused. */
  mode?: string;
}

export interface AffineQuantizeOptions extends AffineOptions {
  /** Row-major values; cast to `dtype` first (as mx.quantize sees a T array). */
  data: Float32Array;
  /** Elements per row (the last dimension). */
  cols: number;
  dtype: MLXFloatDtype;
  /** Default "metal": the arithmetic of mlx_lm.convert on Apple silicon. */
  kernel?: AffineKernel;
  /** Tensor name and the row `data` starts at, for error messages. */
  name?: string;
  firstRow?: number;
}

/** Throws a clear error unless (mode, bits, groupSize, cols) is something MLX quantizes. */
export function checkAffineParams(opts: AffineOptions & { cols?: number; name?: string }): void {
  const what = opts.name ? ` for ${opts.name}` : "";
  const mode = opts.mode ?? "affine";
  if (mode !== "affine") {
    const known = MLX_QUANT_MODES.includes(mode);
    throw new ConversionError(
      `quantization mode ${JSON.stringify(mode)}${what} is ${known ? "an MLX mode this exporter does not write" : "not an MLX mode"}; ` +
        `supported: "affine" (MLX also has ${MLX_QUANT_MODES.filter((m) => m !== "affine").join(", ")})`,
      { code: "E_PRECISION" },
    );
  }
  if (!MLX_AFFINE_BITS.includes(opts.bits)) {
    throw new ConversionError(`${opts.bits} bits${what} is not supported by MLX affine quantization; supported: ${MLX_AFFINE_BITS.join(", ")}`, {
      code: "E_PRECISION",
    });
  }
  if (!MLX_GROUP_SIZES.includes(opts.groupSize)) {
    throw new ConversionError(`group size ${opts.groupSize}${what} is not supported by MLX; supported: ${MLX_GROUP_SIZES.join(", ")}`, {
      code: "E_PRECISION",
    });
  }
  if (opts.cols !== undefined && (opts.cols <= 0 || opts.cols % opts.groupSize !== 0)) {
    throw new ConversionError(
      `the last dimension${what} (${opts.cols}) is not divisible by the group size ${opts.groupSize}, so MLX cannot quantize it ` +
        `(mx.quantize raises the same); choose a group size that divides it or leave the tensor unquantized`,
      { code: "E_PRECISION" },
    );
  }
}

/** Rounds float32 values to a storage dtype and back (round to nearest even). */
export function castToDtype(data: Float32Array, dtype: MLXFloatDtype): Float32Array {
  if (dtype === "bfloat16") return bf16ToF32(f32ToBF16(data));
  if (dtype === "float16") return f16ToF32(f32ToF16(data));
  return data;
}

/** A dtype's little-endian bytes of float32 values (rounded to nearest even). */
export function encodeDtype(data: Float32Array, dtype: MLXFloatDtype): Uint8Array {
  const out = dtype === "bfloat16" ? f32ToBF16(data) : dtype === "float16" ? f32ToF16(data) : data;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function dtypeBytes(dtype: MLXFloatDtype): number {
  return dtype === "float32" ? 4 : 2;
}

/** Round half to even (std::rint, metal::rint). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact for doubles
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Round half away from zero (Metal's and CUDA's round()). */
export function roundHalfAway(x: number): number {
  const a = Math.abs(x);
  if (a >= 8388608) return x; // float32 values >= 2^23 are integers already
  const r = Math.floor(a + 0.5); // exact: see the note in the tests
  return x < 0 ? -r : r;
}

export interface AffineGroupParams {
  /** float32, before the cast to T: the values the q_i were computed with. */
  scale: number;
  bias: number;
}

/**
 * scale and bias of one group, in float32, exactly as the kernel computes them (see header).
 * `values[offset .. offset + groupSize)` must already be T values.
 */
export function affineGroupParams(values: Float32Array, offset: number, opts: { groupSize: number; bits: number; kernel?: AffineKernel }): AffineGroupParams {
  const gpu = (opts.kernel ?? "metal") === "metal";
  const nBins = (1 << opts.bits) - 1;
  let wMin = Infinity;
  let wMax = gpu ? 0 : -Infinity;
  for (let j = 0; j < opts.groupSize; j++) {
    const v = values[offset + j]!;
    if (v < wMin) wMin = v;
    if (v > wMax) wMax = v;
  }
  const round = gpu ? roundHalfAway : roundHalfEven;
  let scale = Math.fround(Math.fround(wMax - wMin) / nBins);
  if (scale < EPS) scale = EPS; // std::max(x, eps) / metal max
  const side = Math.abs(wMin) > Math.abs(wMax);
  scale = side ? scale : -scale;
  const edge = side ? wMin : wMax;
  const q0 = round(Math.fround(edge / scale));
  if (q0 === 0) return { scale, bias: 0 };
  return { scale: Math.fround(edge / q0), bias: edge };
}

/**
 * Quantizes one group: writes its codes to q[at .. at + groupSize) and returns its scale and bias
 * (float32 values of the weight dtype). `w` is the data cast to the dtype; the group starts at
 * w[start] and lies in row `row` of the call's data.
 */
export type GroupQuantizer = (w: Float32Array, start: number, row: number, q: Uint8Array, at: number) => { scale: number; bias: number };

/**
 * MLX's affine layout for a [rows, cols] array (any leading dims flattened into rows), with each
 * group's scale, bias and codes chosen by `quantizeGroup`: packing, storage dtype and the
 * refusal of non-finite inputs (MLX would quietly write garbage) are shared by every chooser.
 */
export function affineQuantizeGroups(opts: AffineQuantizeOptions, quantizeGroup: GroupQuantizer): AffineQuantized {
  const { cols, groupSize, bits } = opts;
  checkAffineParams({ ...opts, cols });
  if (opts.data.length % cols !== 0) throw new RangeError(`${opts.data.length} values are not whole rows of ${cols}`);
  const w = castToDtype(opts.data, opts.dtype);
  const rows = w.length / cols;
  const groupsPerRow = cols / groupSize;
  const wordsPerRow = (cols * bits) / 32;
  const weight = new Uint32Array(rows * wordsPerRow);
  const scales = new Float32Array(rows * groupsPerRow);
  const biases = new Float32Array(rows * groupsPerRow);
  const q = new Uint8Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groupsPerRow; g++) {
      const start = r * cols + g * groupSize;
      for (let j = 0; j < groupSize; j++) {
        if (!Number.isFinite(w[start + j]!)) {
          throw new ConversionError(
            `${opts.name ?? "tensor"} has a non-finite value (${w[start + j]}) at row ${(opts.firstRow ?? 0) + r}, column ${g * groupSize + j}; ` +
              `it cannot be quantized (the checkpoint looks corrupt)`,
          );
        }
      }
      const { scale, bias } = quantizeGroup(w, start, r, q, g * groupSize);
      scales[r * groupsPerRow + g] = scale;
      biases[r * groupsPerRow + g] = bias;
    }
    packRow(q, bits, weight, r * wordsPerRow);
  }
  return { weight, scales: storeParams(scales, opts.dtype), biases: storeParams(biases, opts.dtype) };
}

/**
 * mx.quantize(w, group_size, bits, mode="affine") of a [rows, cols] array (any leading dims
 * flattened into rows). Non-finite inputs are refused: MLX would quietly write garbage.
 */
export function affineQuantize(opts: AffineQuantizeOptions): AffineQuantized {
  const { groupSize, bits } = opts;
  const nBins = (1 << bits) - 1;
  const round = (opts.kernel ?? "metal") === "metal" ? roundHalfAway : roundHalfEven;
  return affineQuantizeGroups(opts, (w, start, _row, q, at) => {
    const { scale, bias } = affineGroupParams(w, start, { groupSize, bits, kernel: opts.kernel });
    for (let j = 0; j < groupSize; j++) {
      let v = round(Math.fround(Math.fround(w[start + j]! - bias) / scale));
      if (v < 0) v = 0; // never taken in exact arithmetic; the CPU kernel clamps anyway
      if (v > nBins) v = nBins;
      q[at + j] = v;
    }
    return { scale, bias };
  });
}

function storeParams(values: Float32Array, dtype: MLXFloatDtype): Uint16Array | Float32Array {
  return dtype === "bfloat16" ? f32ToBF16(values) : dtype === "float16" ? f32ToF16(values) : values;
}

function loadParams(values: Uint16Array | Float32Array, dtype: MLXFloatDtype): Float32Array {
  if (dtype === "float32") {
    if (!(values instanceof Float32Array)) throw new TypeError("float32 scales/biases must be a Float32Array");
    return values;
  }
  if (!(values instanceof Uint16Array)) throw new TypeError(`${dtype} scales/biases must be a Uint16Array of bit patterns`);
  return dtype === "bfloat16" ? bf16ToF32(values) : f16ToF32(values);
}

/*
 * Packing: one row is a little-endian bit stream. Value k of the row occupies stream bits
 * [k*bits, (k+1)*bits), least significant bit first; stream bit n is bit (n % 32) of word
 * n / 32. Rows start on a word boundary because cols is a multiple of 32. This is how all
 * three kernels lay it out: the Metal/CUDA kernels write 1 byte (2, 4, 8 bits), 3 bytes (8 x 3
 * bits, 4 x 6 bits) or 5 bytes (8 x 5 bits) per pack, little-endian; the CPU kernel ORs
 * `q << (k * bits)` into uint32 (2, 4, 8 bits) or into a uint64 it stores as 3 or 5 bytes.
 *
 *   4 bits:  word 0 = v7 v6 v5 v4 v3 v2 v1 v0          (v0 in bits 0-3)
 *   8 bits:  word 0 = v3 v2 v1 v0                      (v0 in bits 0-7)
 *   2 bits:  word 0 = v15 ... v1 v0                    (v0 in bits 0-1)
 *   3 bits:  32 values in 3 words; v10 straddles words 0 and 1, v21 words 1 and 2:
 *            word 0 = [v10 lo2][v9 ]...[v1 ][v0 ]       bits 30-31 = v10 bits 0-1
 *            word 1 = [v21 lo1][v20]...[v11][v10 hi1]   bit 0 = v10 bit 2
 *            word 2 = [v31]...[v22][v21 hi2]            bits 0-1 = v21 bits 1-2
 *   5 bits:  32 values in 5 words; v6, v12, v19, v25 straddle (word 0 bits 30-31 = v6 bits 0-1)
 *   6 bits:  16 values in 3 words; v5 and v10 straddle (word 0 bits 30-31 = v5 bits 0-1,
 *            word 1 bits 0-3 = v5 bits 2-5; word 1 bits 28-31 = v10 bits 0-3 ...)
 */

/** Packs one row of values (each < 2^bits) into `out` from word `at` (see the diagram). */
export function packRow(q: Uint8Array, bits: number, out: Uint32Array, at: number): void {
  const words = (q.length * bits) / 32;
  out.fill(0, at, at + words);
  for (let k = 0; k < q.length; k++) {
    const pos = k * bits;
    const word = at + (pos >>> 5);
    const shift = pos & 31;
    const v = q[k]!;
    out[word] = out[word]! | (v << shift); // bits past 31 fall off here ...
    if (shift + bits > 32) out[word + 1] = out[word + 1]! | (v >>> (32 - shift)); // ... and land here
  }
}

/** The inverse of packRow: `count` values from word `at`. */
export function unpackRow(words: Uint32Array, at: number, bits: number, count: number, out: Uint8Array = new Uint8Array(count)): Uint8Array {
  const mask = (1 << bits) - 1;
  for (let k = 0; k < count; k++) {
    const pos = k * bits;
    const word = at + (pos >>> 5);
    const shift = pos & 31;
    let v = words[word]! >>> shift;
    if (shift + bits > 32) v |= words[word + 1]! << (32 - shift);
    out[k] = v & mask;
  }
  return out;
}

export interface AffineDequantizeOptions extends AffineOptions, AffineQuantized {
  cols: number;
  dtype: MLXFloatDtype;
  /** "float32" (default): one rounding to T, as the qmm kernels; "dtype": mx.dequantize on CPU. */
  arithmetic?: "float32" | "dtype";
}

/** mx.dequantize: the T values (as float32) of a quantized [rows, cols] array. */
export function affineDequantize(opts: AffineDequantizeOptions): Float32Array {
  const { cols, groupSize, bits, dtype } = opts;
  checkAffineParams({ ...opts, cols });
  const wordsPerRow = (cols * bits) / 32;
  const groupsPerRow = cols / groupSize;
  if (opts.weight.length % wordsPerRow !== 0) throw new RangeError(`${opts.weight.length} words are not whole rows of ${wordsPerRow}`);
  const rows = opts.weight.length / wordsPerRow;
  const scales = loadParams(opts.scales, dtype);
  const biases = loadParams(opts.biases, dtype);
  if (scales.length !== rows * groupsPerRow || biases.length !== rows * groupsPerRow) {
    throw new RangeError(`scales/biases hold ${scales.length}/${biases.length} values; ${rows} rows of ${groupsPerRow} groups need ${rows * groupsPerRow}`);
  }
  const out = new Float32Array(rows * cols);
  const q = new Uint8Array(cols);
  const stepwise = opts.arithmetic === "dtype";
  for (let r = 0; r < rows; r++) {
    unpackRow(opts.weight, r * wordsPerRow, bits, cols, q);
    for (let c = 0; c < cols; c++) {
      const g = r * groupsPerRow + Math.floor(c / groupSize);
      const product = Math.fround(q[c]! * scales[g]!);
      out[r * cols + c] = stepwise ? Math.fround(roundScalar(product, dtype) + biases[g]!) : Math.fround(product + biases[g]!);
    }
  }
  return castToDtype(out, dtype);
}

const scratch = new Float32Array(1);
function roundScalar(x: number, dtype: MLXFloatDtype): number {
  scratch[0] = x;
  return castToDtype(scratch, dtype)[0]!;
}
