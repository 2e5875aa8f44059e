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
import { bf16ToF32, f16ToF32, f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
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

/** Whether every value survives float16 exactly, i.e. the blocks dequantize to MLX's values. */
export function exactParams(values: Float32Array): boolean {
  const back = f16ToF32(f32ToF16(values));
  for (let i = 0; i < values.length; i++) if (back[i] !== values[i] && !(Number.isNaN(back[i]) && Number.isNaN(values[i]))) return false;
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

/** A module's rows ready to become blocks: the scale and bias of each group as float16 bits. */
export interface BlockSource extends AffineRows {
  scaleBits: Uint16Array;
  biasBits: Uint16Array;
}

export function blockSource(src: AffineRows): BlockSource {
  return { ...src, scaleBits: f32ToF16(src.scales), biasBits: f32ToF16(src.biases) };
}

/**
 * One row of `src` (4 or 5 bits) as Q4_1 or Q5_1 blocks written into `out` at `at`.
 * `q` is scratch of cols bytes (used for 5 bits).
 */
export function encodeRowAsBlocks(src: BlockSource, row: number, out: Uint8Array, at: number, q: Uint8Array): void {
  const { cols, bits, groupSize, words } = src;
  const groups = cols / groupSize;
  const blocksPerGroup = groupSize / 32;
  const wordAt = (row * cols * bits) / 32;
  if (bits === 5) unpackRow(words, wordAt, bits, cols, q);
  const blockBytes = bits === 4 ? Q4_1_BLOCK_BYTES : Q5_1_BLOCK_BYTES;
  for (let b = 0; b < cols / 32; b++) {
    const g = row * groups + Math.floor(b / blocksPerGroup);
    let o = at + b * blockBytes;
    const d = src.scaleBits[g]!;
    const m = src.biasBits[g]!;
    out[o] = d & 255;
    out[o + 1] = d >>> 8;
    out[o + 2] = m & 255;
    out[o + 3] = m >>> 8;
    o += 4;
    if (bits === 4) {
      // MLX packs value k of a word at bits 4k: the block's values 0-7, 8-15, 16-23, 24-31 are
      // words w, w+1, w+2, w+3, and qs[i] pairs value i (low nibble) with value i + 16 (high).
      const w = wordAt + b * 4;
      for (let half = 0; half < 2; half++) {
        const lo = words[w + half]!;
        const hi = words[w + half + 2]!;
        for (let k = 0; k < 8; k++) out[o + half * 8 + k] = ((lo >>> (4 * k)) & 15) | (((hi >>> (4 * k)) & 15) << 4);
      }
      continue;
    }
    const base = b * 32;
    let qh = 0;
    for (let j = 0; j < 32; j++) qh |= ((q[base + j]! >> 4) & 1) << j;
    out[o] = qh & 255;
    out[o + 1] = (qh >>> 8) & 255;
    out[o + 2] = (qh >>> 16) & 255;
    out[o + 3] = qh >>> 24;
    o += 4;
    for (let i = 0; i < 16; i++) out[o + i] = (q[base + i]! & 15) | ((q[base + i + 16]! & 15) << 4);
  }
}
