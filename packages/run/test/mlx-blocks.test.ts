// MLX affine groups re-expressed as ggml Q4_1 / Q5_1 blocks (src/mlx/blocks.ts), checked against
// ggml's own dequantize_row_q4_1 / _q5_1 and MLX's float32 dequantization written out here.
import { describe, expect, it } from "vitest";
import { bf16ToF32, f16ToF32, f32ToBF16 } from "@llama-pajamas/gguf/formats/float.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { dequantizeRows } from "@llama-pajamas/gguf/ggml.js";
import { affineQuantize, unpackRow } from "@llama-pajamas/gguf/mlx/affine.js";
import { type AffineRows, blockSource, encodeRowAsBlocks, exactParams } from "../src/mlx/blocks.js";
import { rowMapping, targetType } from "../src/mlx/transcode.js";
import { firstDifference, mlxDequantize } from "./mlx-reference.js";

/** A deterministic pseudo-random stream (xorshift32). */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}


describe("MLX affine groups as Q4_1 / Q5_1 blocks", () => {
  for (const bits of [4, 5]) {
    for (const groupSize of [32, 64, 128]) {
      it(`${bits}-bit, group ${groupSize}: ggml dequantizes the blocks to MLX's values bit for bit`, () => {
        const rows = 6;
        const cols = 256;
        const rand = random(bits * 1000 + groupSize);
        // Rows of different scales and signs, so that both edge anchors and all codes occur.
        const w = new Float32Array(rows * cols);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = (rand() - (r % 3) * 0.3) * 10 ** -(r % 3);
        const quant = affineQuantize({ data: w, rows, cols, groupSize, bits, dtype: "float16" });
        const scales = f16ToF32(quant.scales as Uint16Array);
        const biases = f16ToF32(quant.biases as Uint16Array);
        const src: AffineRows = { bits, groupSize, cols, words: quant.weight, scales, biases };
        const type = bits === 4 ? GGMLType.Q4_1 : GGMLType.Q5_1;
        const rowBytes = (cols / 32) * (bits === 4 ? 20 : 24);
        const blocks = new Uint8Array(rows * rowBytes);
        const q = new Uint8Array(cols);
        for (let r = 0; r < rows; r++) encodeRowAsBlocks(blockSource(src), r, blocks, r * rowBytes, q);
        const got = dequantizeRows(type, blocks, rows, cols);
        const want = mlxDequantize(quant.weight, scales, biases, rows, cols, bits, groupSize);
        expect(firstDifference(got, want)).toBeUndefined();
        // Every code value appears, so the nibble/high-bit layout is exercised in full.
        const codes = new Set<number>();
        for (let r = 0; r < rows; r++) unpackRow(quant.weight, (r * cols * bits) / 32, bits, cols, q).forEach((v) => codes.add(v));
        expect(codes.size).toBe(2 ** bits);
      });
    }
  }

  it("tells which bfloat16 scales float16 cannot hold (tiny and huge ones)", () => {
    const representable = bf16ToF32(f32ToBF16(new Float32Array([0.0123, -0.5, 3.75, 1e-3])));
    expect(exactParams(representable)).toBe(true);
    expect(exactParams(bf16ToF32(f32ToBF16(new Float32Array([2 ** -20 * 1.5078125]))))).toBe(false); // below f16's subnormal precision
    expect(exactParams(bf16ToF32(f32ToBF16(new Float32Array([1e6]))))).toBe(false); // past f16's range
  });
});

describe("transcode rules", () => {
  it("maps MLX widths to GGUF types: 4 and 5 bits exactly, the rest to the nearest type", () => {
    expect([4, 5, 8, 6, 3, 2].map((b) => [GGMLType[targetType(b, 256).type], targetType(b, 256).exact])).toEqual([
      ["Q4_1", true], ["Q5_1", true], ["Q8_0", false], ["Q6_K", false], ["Q3_K", false], ["Q2_K", false],
    ]);
    // Rows that are not whole 256-value super-blocks fall back as llama-quantize falls back.
    expect([6, 3, 2].map((b) => GGMLType[targetType(b, 96).type])).toEqual(["Q8_0", "IQ4_NL", "IQ4_NL"]);
  });

  it("learns a row permutation from the converter's transform, and refuses transforms that change values", () => {
    const plan = (build?: (x: Float32Array[]) => Float32Array) => ({ name: "t.weight", sources: ["a", "b"], shape: [4, 8], ...(build ? { build } : {}) });
    const swapHalves = (x: Float32Array[]) => {
      const a = x[0]!;
      const n = a.length / 2;
      return Float32Array.from([...a.subarray(n), ...a.subarray(0, n)]);
    };
    expect([...rowMapping({ ...plan(swapHalves), sources: ["a"] }, [4])!]).toEqual([2, 3, 0, 1]);
    const stack = (x: Float32Array[]) => Float32Array.from([...x[0]!, ...x[1]!]);
    expect([...rowMapping(plan(stack), [2, 2])!]).toEqual([0, 1, 2, 3]);
    const plusOne = (x: Float32Array[]) => x[0]!.map((v) => v + 1);
    expect(rowMapping({ ...plan(plusOne), sources: ["a"] }, [4])).toBeUndefined();
    expect(rowMapping({ ...plan(), sources: ["a"] }, [3])).toBeUndefined(); // row count mismatch
  });
});
