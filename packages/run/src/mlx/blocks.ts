// MLX affine groups as GGUF Q4_1 / Q5_1 blocks, without requantizing.
//
// MLX stores a group of g values of a row as q (bits wide), scale s and bias b, and means
// w = q * s + b. ggml's Q4_1 and Q5_1 blocks (ggml-common.h) hold 32 values as
//   block_q4_1 { half d; half m; uint8 qs[16]; }              w[j] = q[j] * d + m
//   block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16]; }  w[j] = q[j] * d + m
// with qs[i] = q[i] & 15 | (q[i + 16] & 15) << 4 and, for Q5_1, bit j of the little-endian
// uint32 qh = bit 4 of q[j]. So a 4-bit (5-bit) group of 32, 64 or 128 values becomes 1, 2 or 4
// blocks sharing d = s and m = b, and dequantizes to the same float32 values, as long as s and
// b are float16 numbers (always true for float16 exports; bfloat16 and float32 ones are checked
// per value, see `exactParams`).
import { f16ToF32, bf16ToF32, f32BitsToF16Bits } from "@llama-pajamas/gguf/formats/float.js";
import { unpackRow } from "@llama-pajamas/gguf/mlx/affine.js";

export const Q4_1_BLOCK_BYTES = 20;
export const Q5_1_BLOCK_BYTES = 24;

/** A quantized module's data for some of its rows, as read from disk. */
export interface AffineRows {
  bits: number;
  groupSize: number;
  cols: number;
  /** Packed words, cols * bits / 32 per row. */
  words: Uint32Array;
  /** Widened exactly from the stored dtype; cols / groupSize per row. */
  scales: Float32Array;
  biases: Float32Array;
}

/** Stored scale/bias bits as float32 values. */
export function widenParams(raw: Uint8Array, dtype: "F16" | "BF16" | "F32"): Float32Array {
  const copy = raw.slice(); // aligned, own buffer
  if (dtype === "F32") return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  const halves = new Uint16Array(copy.buffer, 0, copy.byteLength / 2);
  return dtype === "F16" ? f16ToF32(halves) : bf16ToF32(halves);
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
const half = new Uint16Array(1);
const halfBack = new Float32Array(1);

/** float32 -> float16 bits, round to nearest even (numpy's rule). */
function toF16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(f32Bits[0]!);
}

/** Whether every value survives float16 exactly, i.e. the blocks dequantize to MLX's values. */
export function exactParams(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) {
    half[0] = toF16Bits(values[i]!);
    f16ToF32(half, halfBack);
    if (halfBack[0] !== values[i] && !(Number.isNaN(halfBack[0]) && Number.isNaN(values[i]))) return false;
  }
  return true;
}

/** MLX's float32 dequantization of one row (q * scale + bias, one rounding each). */
export function dequantizeAffineRow(src: AffineRows, row: number, out: Float32Array, q = new Uint8Array(src.cols)): Float32Array {
  const { cols, bits, groupSize } = src;
  unpackRow(src.words, (row * cols * bits) / 32, bits, cols, q);
  const groups = cols / groupSize;
  for (let c = 0; c < cols; c++) {
    const g = row * groups + Math.floor(c / groupSize);
    out[c] = Math.fround(Math.fround(q[c]! * src.scales[g]!) + src.biases[g]!);
  }
  return out;
}

/**
 * One row of `src` (4 or 5 bits) as Q4_1 or Q5_1 blocks written into `out` at `at`.
 * `q` is scratch of cols bytes.
 */
export function encodeRowAsBlocks(src: AffineRows, row: number, out: Uint8Array, at: number, q: Uint8Array): void {
  const { cols, bits, groupSize } = src;
  unpackRow(src.words, (row * cols * bits) / 32, bits, cols, q);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const groups = cols / groupSize;
  const blockBytes = bits === 4 ? Q4_1_BLOCK_BYTES : Q5_1_BLOCK_BYTES;
  for (let b = 0; b < cols / 32; b++) {
    const g = row * groups + Math.floor((b * 32) / groupSize);
    let o = at + b * blockBytes;
    view.setUint16(o, toF16Bits(src.scales[g]!), true);
    view.setUint16(o + 2, toF16Bits(src.biases[g]!), true);
    o += 4;
    const base = b * 32;
    if (bits === 5) {
      let qh = 0;
      for (let j = 0; j < 32; j++) qh |= ((q[base + j]! >> 4) & 1) << j;
      view.setUint32(o, qh >>> 0, true);
      o += 4;
    }
    for (let i = 0; i < 16; i++) out[o + i] = (q[base + i]! & 15) | ((q[base + i + 16]! & 15) << 4);
  }
}
