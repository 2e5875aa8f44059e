import { describe, expect, it } from "vitest";
import { UsageError } from "@llama-pajamas/artifact";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { METHODS, methodForFtype, parseMethod } from "../src/quantize/methods.js";
import { ggmlBlockSize, ggmlTypeSize } from "../src/quantize/native.js";
import { planTensorTypes, type RecipeModel, type RecipeTensor } from "../src/quantize/recipes.js";

describe("parseMethod", () => {
  it("accepts llama-quantize names in any case, and the Q3_K/Q4_K/Q5_K aliases", () => {
    expect(parseMethod("q4_k_m").ftype).toBe(LlamaFtype.MOSTLY_Q4_K_M);
    expect(parseMethod(" Q4_K ").name).toBe("Q4_K_M");
    expect(parseMethod("q3_k").name).toBe("Q3_K_M");
    expect(parseMethod("Q5_k").name).toBe("Q5_K_M");
    expect(parseMethod("iq2_xs").ftype).toBe(LlamaFtype.MOSTLY_IQ2_XS);
    expect(parseMethod("bf16").ftype).toBe(LlamaFtype.MOSTLY_BF16);
    for (const m of METHODS) expect(parseMethod(m.name.toLowerCase())).toBe(m);
  });

  it("throws a UsageError listing the valid names", () => {
    let err: unknown;
    try {
      parseMethod("q4_k_xl");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const msg = (err as Error).message;
    expect(msg).toContain('"q4_k_xl"');
    for (const m of METHODS) expect(msg).toContain(m.name.toLowerCase());
    expect(() => parseMethod("")).toThrow(UsageError);
    expect(() => parseMethod("COPY")).toThrow(UsageError);
  });

  it("maps ftypes back to methods", () => {
    expect(methodForFtype(LlamaFtype.MOSTLY_Q8_0)?.name).toBe("Q8_0");
    expect(methodForFtype(38)).toBeUndefined(); // MXFP4_MOE is not offered
  });
});

describe("METHODS table", () => {
  it("lists the supported methods with QUANT_OPTIONS descriptions", () => {
    expect(METHODS.map((m) => m.name)).toEqual([
      "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S",
      "IQ3_M", "IQ3_XS", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
      "Q6_K", "Q8_0", "F16", "BF16", "F32",
    ]);
    expect(parseMethod("q4_k_m").description).toBe("4.58G, +0.1754 ppl @ Llama-3-8B");
    expect(parseMethod("iq4_xs").description).toBe("4.25 bpw non-linear quantization");
  });

  it("gives each default type's nominal bits per weight (checked against ggml_type_size / ggml_blck_size)", () => {
    for (const m of METHODS) {
      expect(m.defaultTypeBitsPerWeight, m.name).toBeCloseTo((ggmlTypeSize(m.defaultType) * 8) / ggmlBlockSize(m.defaultType), 10);
    }
    expect(parseMethod("q4_k_m").defaultTypeBitsPerWeight).toBe(4.5);
    expect(parseMethod("q8_0").defaultTypeBitsPerWeight).toBe(8.5);
    expect(parseMethod("iq2_xxs").defaultTypeBitsPerWeight).toBeCloseTo(2.0625, 10);
    expect(parseMethod("f16").defaultType).toBe(GGMLType.F16);
  });

  it("gives each mixture's bits per weight on a Llama-3-8B-shaped model", () => {
    // llama-quantize reports 4.89 BPW for Llama-3-8B Q4_K_M: Q6_K output and the attn_v /
    // ffn_down bumps lift it above Q4_K's 4.5.
    expect(parseMethod("q4_k_m").bitsPerWeight).toBe(4.89);
    expect(parseMethod("q4_k_s").bitsPerWeight).toBe(4.67);
    expect(parseMethod("q6_k").bitsPerWeight).toBe(6.56);
    expect(parseMethod("q8_0").bitsPerWeight).toBe(8.5);
    expect(parseMethod("iq2_xxs").bitsPerWeight).toBe(2.38);
    for (const m of METHODS) expect(m.bitsPerWeight, m.name).toBeGreaterThanOrEqual(m.defaultTypeBitsPerWeight - 0.3);
  });

  // requiresImatrix must agree with what llama_model_quantize would refuse on real model shapes
  const shapes: { label: string; model: RecipeModel; tensors: RecipeTensor[] }[] = [
    { label: "llama-tiny", model: { arch: "llama", blockCount: 4, headCount: 4, headCountKv: 2 }, tensors: dense(4, 256, 768, 128, 32000) },
    { label: "llama-3-8B", model: { arch: "llama", blockCount: 32, headCount: 32, headCountKv: 8 }, tensors: dense(32, 4096, 14336, 1024, 128256) },
  ];
  it.each(shapes.map((s) => [s.label, s] as const))("flags the methods that need an importance matrix (%s)", (_l, s) => {
    for (const m of METHODS) {
      expect(planTensorTypes({ ftype: m.ftype, tensors: s.tensors, model: s.model }).requiresImatrix, m.name).toBe(m.requiresImatrix);
    }
  });
});

function dense(nLayer: number, nEmbd: number, nFf: number, nKv: number, nVocab: number): RecipeTensor[] {
  const t: RecipeTensor[] = [{ name: "token_embd.weight", ne: [nEmbd, nVocab], type: GGMLType.F16 }];
  for (let b = 0; b < nLayer; b++) {
    for (const [n, ne] of [
      ["attn_q", [nEmbd, nEmbd]], ["attn_k", [nEmbd, nKv]], ["attn_v", [nEmbd, nKv]], ["attn_output", [nEmbd, nEmbd]],
      ["ffn_gate", [nEmbd, nFf]], ["ffn_up", [nEmbd, nFf]], ["ffn_down", [nFf, nEmbd]],
    ] as const) t.push({ name: `blk.${b}.${n}.weight`, ne, type: GGMLType.F16 });
    t.push({ name: `blk.${b}.attn_norm.weight`, ne: [nEmbd], type: GGMLType.F32 });
  }
  t.push({ name: "output.weight", ne: [nEmbd, nVocab], type: GGMLType.F16 });
  return t;
}
