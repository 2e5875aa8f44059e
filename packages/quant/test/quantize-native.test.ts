// native.ts: library lookup, type sizes, float rounding and the input checks that keep
// GGML_ASSERT (which aborts the process) from firing. Real native code throughout.

import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { ConversionError, UsageError } from "@llama-pajamas/artifact";
import { f32ToBF16, f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
import { ggmlTypeTraits } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import {
  fp32ToBf16Row,
  fp32ToFp16Row,
  ggmlBlockSize,
  ggmlIsQuantized,
  ggmlRowSize,
  ggmlTypeSize,
  llamaModelQuantize,
  nativeLibraryPaths,
  quantizeRequiresImatrix,
  quantizeRows,
  validateRowData,
} from "../src/quantize/native.js";
import { isQuantizedType } from "../src/quantize/recipes.js";

const ALL_TYPES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 34, 35, 39, 40, 41, 42];

/** Floats with the awkward cases: halfway points, subnormals of both formats, overflow, inf, NaN. */
function specialFloats(): Float32Array {
  const bits = new Uint32Array(4096);
  let s = 7;
  for (let i = 0; i < bits.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    bits[i] = s;
  }
  const v = new Float32Array(bits.buffer);
  const extra = [0, -0, 1, -1, 65504, 65520, 65519.99, 1e-8, 6e-8, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1e-40, -1e-45, 1e39, Infinity, -Infinity, 1.00390625, 1.01171875];
  return Float32Array.from([...extra, ...v]);
}

describe("native library lookup", () => {
  it("finds libggml-base and libllama in node-llama-cpp's prebuilt package", () => {
    const p = nativeLibraryPaths();
    expect(existsSync(p.ggmlBase)).toBe(true);
    expect(p.llama && existsSync(p.llama)).toBe(true);
    expect(p.dir).toMatch(/@node-llama-cpp[\\/][\w-]+[\\/]bins/);
  });
});

describe("ggml type traits", () => {
  it("agree with the shared ggml-type-traits table and recipes' is-quantized rule", () => {
    // Q8_1 is left out: the shared table copies gguf-py's (32, 4 + 4 + 32), while ggml's
    // block_q8_1 is 36 bytes (half2 + 32). It is a dot-product intermediate, never in a GGUF.
    expect(ggmlTypeSize(GGMLType.Q8_1)).toBe(36);
    for (const t of ALL_TYPES.filter((t) => t !== GGMLType.Q8_1)) {
      const traits = ggmlTypeTraits(t);
      expect(ggmlBlockSize(t), traits.name).toBe(traits.blockSize);
      expect(ggmlTypeSize(t), traits.name).toBe(traits.typeSize);
      expect(ggmlRowSize(t, traits.blockSize * 3), traits.name).toBe(traits.typeSize * 3);
      expect(isQuantizedType(t), traits.name).toBe(ggmlIsQuantized(t));
    }
  });

  it("know which types need an importance matrix", () => {
    expect(quantizeRequiresImatrix(GGMLType.IQ2_XXS)).toBe(true);
    expect(quantizeRequiresImatrix(GGMLType.IQ2_XS)).toBe(true);
    expect(quantizeRequiresImatrix(GGMLType.IQ1_S)).toBe(true);
    expect(quantizeRequiresImatrix(GGMLType.IQ3_XXS)).toBe(false);
    expect(quantizeRequiresImatrix(GGMLType.Q4_K)).toBe(false);
  });
});

describe("float rows", () => {
  const x = specialFloats();

  it("ggml_fp32_to_bf16_row_ref rounds exactly like gguf-py (NaN included)", () => {
    expect(fp32ToBf16Row(x)).toEqual(f32ToBF16(x));
  });

  it("ggml_fp32_to_bf16_row matches too, except subnormals where built with AVX512-BF16", () => {
    const vec = fp32ToBf16Row(x, { vectorized: true });
    const ref = f32ToBF16(x);
    const bits = new Uint32Array(x.buffer);
    for (let i = 0; i < x.length; i++) {
      const subnormal = (bits[i]! & 0x7f800000) === 0 && (bits[i]! & 0x7fffff) !== 0;
      if (!subnormal) expect(vec[i], `element ${i}`).toBe(ref[i]);
    }
  });

  it("ggml_fp32_to_fp16_row rounds like numpy astype(float16) for every non-NaN value", () => {
    const ours = fp32ToFp16Row(x);
    const numpy = f32ToF16(x);
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) expect((ours[i]! & 0x7c00) === 0x7c00 && (ours[i]! & 0x3ff) !== 0).toBe(true);
      else expect(ours[i], `element ${i} (${x[i]})`).toBe(numpy[i]);
    }
  });

  it("quantizeRows writes F16/BF16/F32 as the row converters do", () => {
    const y = x.filter((v) => Number.isFinite(v) && Math.abs(v) < 65504).subarray(0, 1024);
    expect(new Uint16Array(quantizeRows(GGMLType.F16, y, 4, 256).buffer)).toEqual(fp32ToFp16Row(y));
    expect(new Uint16Array(quantizeRows(GGMLType.BF16, y, 4, 256).buffer)).toEqual(fp32ToBf16Row(y));
    expect(new Float32Array(quantizeRows(GGMLType.F32, y, 4, 256).buffer)).toEqual(y);
  });
});

describe("quantizeRows", () => {
  const rows = Float32Array.from({ length: 8 * 256 }, (_, i) => Math.sin(i * 0.37) * 0.05);

  it("is row-independent, so chunks give the bytes of the whole", () => {
    for (const t of [GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.IQ4_XS, GGMLType.IQ3_S]) {
      const whole = quantizeRows(t, rows, 8, 256);
      const a = quantizeRows(t, rows.subarray(0, 3 * 256), 3, 256);
      const b = quantizeRows(t, rows.subarray(3 * 256), 5, 256);
      expect(Buffer.concat([a, b]).equals(Buffer.from(whole))).toBe(true);
      expect(validateRowData(t, whole)).toBe(true);
    }
  });

  it("uses the importance vector", () => {
    const w = Float32Array.from({ length: 256 }, (_, i) => (i % 7) + 0.1);
    const plain = quantizeRows(GGMLType.Q4_K, rows, 8, 256);
    const weighted = quantizeRows(GGMLType.Q4_K, rows, 8, 256, w);
    expect(Buffer.from(plain).equals(Buffer.from(weighted))).toBe(false);
    expect(quantizeRows(GGMLType.IQ2_XXS, rows, 8, 256, w)).toHaveLength(8 * ggmlRowSize(GGMLType.IQ2_XXS, 256));
  });

  it.each([
    ["rows not a whole number of blocks", () => quantizeRows(GGMLType.Q4_K, new Float32Array(352), 1, 352), /not a multiple of the Q4_K block size 256/],
    ["a length mismatch", () => quantizeRows(GGMLType.Q8_0, new Float32Array(100), 2, 64), /100 floats for 2 rows of 64/],
    ["IQ2_XXS without an imatrix", () => quantizeRows(GGMLType.IQ2_XXS, new Float32Array(256), 1, 256), /needs an importance matrix/],
    ["an imatrix of the wrong length", () => quantizeRows(GGMLType.Q4_K, new Float32Array(256), 1, 256, new Float32Array(128)), /128 values for rows of 256/],
    ["a type ggml cannot write", () => quantizeRows(GGMLType.Q8_K, new Float32Array(256), 1, 256), /cannot quantize to Q8_K/],
  ] as [string, () => unknown, RegExp][])("throws a UsageError (not an abort) for %s", (_l, f, re) => {
    expect(f).toThrow(UsageError);
    expect(f).toThrow(re);
  });

  it("fails on NaN input like llama_model_quantize (quantized data validation failed)", () => {
    const bad = rows.slice(0, 256);
    bad[5] = NaN;
    expect(() => quantizeRows(GGMLType.F16, bad, 1, 256)).toThrow(ConversionError);
    expect(() => quantizeRows(GGMLType.BF16, bad, 1, 256)).toThrow(/validation failed/);
  });

  it("ggml_validate_row_data catches a NaN scale", () => {
    const q = quantizeRows(GGMLType.Q8_0, rows.subarray(0, 256), 1, 256);
    q[0] = 0x00;
    q[1] = 0x7e; // f16 NaN as the first block's scale
    expect(validateRowData(GGMLType.Q8_0, q)).toBe(false);
  });
});

describe("llamaModelQuantize", () => {
  it("turns a failure into a ConversionError with llama.cpp's reason", async () => {
    const logs: string[] = [];
    const run = llamaModelQuantize({ input: "/nonexistent/in.gguf", output: "/nonexistent/out.gguf", ftype: LlamaFtype.MOSTLY_Q4_0, onLog: (_l, t) => logs.push(t) });
    await expect(run).rejects.toBeInstanceOf(ConversionError);
    await expect(run).rejects.toThrow(/failed to quantize|failed to open/);
    expect(logs.join("")).toMatch(/in\.gguf/);
  });
});
