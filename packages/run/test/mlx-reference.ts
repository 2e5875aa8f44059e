// MLX's float32 dequantization written out on its own (not the transcoder's), for the tests that
// check what the transcode stores: here and packages/quant/test/mlx-transcode.test.ts.
import { unpackRow } from "@llama-pajamas/gguf/mlx/affine.js";

/** q * scale + bias, each step rounded to float32, for rows of packed MLX words. */
export function mlxDequantize(words: Uint32Array, scales: Float32Array, biases: Float32Array, rows: number, cols: number, bits: number, groupSize: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const q = new Uint8Array(cols);
  for (let r = 0; r < rows; r++) {
    unpackRow(words, (r * cols * bits) / 32, bits, cols, q);
    for (let c = 0; c < cols; c++) {
      const g = r * (cols / groupSize) + Math.floor(c / groupSize);
      out[r * cols + c] = Math.fround(Math.fround(q[c]! * scales[g]!) + biases[g]!);
    }
  }
  return out;
}

/** Where two arrays first differ (NaN equals NaN), or undefined when they are equal. */
export function firstDifference(a: Float32Array, b: Float32Array): string | undefined {
  if (a.length !== b.length) return `lengths ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return `at ${i}: ${a[i]} vs ${b[i]}`;
  return undefined;
}
