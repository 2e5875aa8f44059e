// recipes.ts against libllama's own type choice (llama-ext.h llama_quant_compute_types, what
// llama.cpp's test-quant-type-selection.cpp checks), on tensor lists shaped like real models
// of many architectures, for every llama_ftype llama.cpp can produce. No tensor data: shapes
// and names only, so this covers far more cases than the byte-level differential test.

import { describe, expect, it } from "vitest";
import { ggmlTypeName } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { llamaReferenceTensorTypes, type ReferenceModelDesc } from "../src/quantize/native.js";
import {
  blockIndex,
  chooseTensorTypes,
  ftypeDefaultType,
  isLlmType70B,
  planTensorTypes,
  recipePredicate,
  tensorAllowsQuantization,
  tensorCategory,
  type RecipeTensor,
} from "../src/quantize/recipes.js";

interface Case {
  label: string;
  desc: ReferenceModelDesc;
  tensors: { name: string; ne: number[] }[];
}

/** Every llama_ftype with a default type (llama_ftype_get_default_type != GGML_TYPE_COUNT). */
const FTYPES = [...Array(42).keys()].filter((f) => ftypeDefaultType(f) !== undefined);

function llamaLike(o: {
  arch?: string; nLayer: number; nEmbd: number; nFf: number; nHead: number; nHeadKv: number; nVocab: number;
  tied?: boolean; experts?: { n: number; ff: number; style: "3d" | "split" }; qkv?: boolean; headDim?: number;
}): Case["tensors"] {
  const hd = o.headDim ?? o.nEmbd / o.nHead;
  const t: Case["tensors"] = [{ name: "token_embd.weight", ne: [o.nEmbd, o.nVocab] }];
  for (let b = 0; b < o.nLayer; b++) {
    const p = `blk.${b}.`;
    t.push({ name: p + "attn_norm.weight", ne: [o.nEmbd] });
    if (o.qkv) t.push({ name: p + "attn_qkv.weight", ne: [o.nEmbd, hd * (o.nHead + 2 * o.nHeadKv)] });
    else {
      t.push({ name: p + "attn_q.weight", ne: [o.nEmbd, hd * o.nHead] });
      t.push({ name: p + "attn_k.weight", ne: [o.nEmbd, hd * o.nHeadKv] });
      t.push({ name: p + "attn_v.weight", ne: [o.nEmbd, hd * o.nHeadKv] });
    }
    t.push({ name: p + "attn_output.weight", ne: [hd * o.nHead, o.nEmbd] });
    t.push({ name: p + "ffn_norm.weight", ne: [o.nEmbd] });
    if (o.experts) {
      const { n, ff, style } = o.experts;
      t.push({ name: p + "ffn_gate_inp.weight", ne: [o.nEmbd, n] });
      if (style === "3d") {
        t.push({ name: p + "ffn_gate_exps.weight", ne: [o.nEmbd, ff, n] });
        t.push({ name: p + "ffn_up_exps.weight", ne: [o.nEmbd, ff, n] });
        t.push({ name: p + "ffn_down_exps.weight", ne: [ff, o.nEmbd, n] });
      } else {
        for (let e = 0; e < n; e++) {
          t.push({ name: `${p}ffn_gate.${e}.weight`, ne: [o.nEmbd, ff] });
          t.push({ name: `${p}ffn_up.${e}.weight`, ne: [o.nEmbd, ff] });
          t.push({ name: `${p}ffn_down.${e}.weight`, ne: [ff, o.nEmbd] });
        }
      }
    } else {
      t.push({ name: p + "ffn_gate.weight", ne: [o.nEmbd, o.nFf] });
      t.push({ name: p + "ffn_up.weight", ne: [o.nEmbd, o.nFf] });
      t.push({ name: p + "ffn_down.weight", ne: [o.nFf, o.nEmbd] });
    }
  }
  t.push({ name: "output_norm.weight", ne: [o.nEmbd] });
  if (!o.tied) t.push({ name: "output.weight", ne: [o.nEmbd, o.nVocab] });
  return t;
}

function desc(arch: string, o: { nLayer: number; nEmbd: number; nFf: number; nHead: number; nHeadKv: number; nExpert?: number }): ReferenceModelDesc {
  const hd = o.nEmbd / o.nHead;
  return { arch, nEmbd: o.nEmbd, nFf: o.nFf, nLayer: o.nLayer, nHead: o.nHead, nHeadKv: o.nHeadKv, nExpert: o.nExpert ?? 0, nEmbdHeadK: hd, nEmbdHeadV: hd };
}

function llamaCase(label: string, arch: string, o: Parameters<typeof llamaLike>[0] & { nExpert?: number }): Case {
  return { label, desc: desc(arch, { ...o, nExpert: o.experts?.n ?? o.nExpert }), tensors: llamaLike(o) };
}

const CASES: Case[] = [
  llamaCase("llama-tiny (GQA 2, tied)", "llama", { nLayer: 4, nEmbd: 256, nFf: 768, nHead: 4, nHeadKv: 2, nVocab: 32000, tied: true }),
  llamaCase("llama-3-8B (GQA 4)", "llama", { nLayer: 32, nEmbd: 4096, nFf: 14336, nHead: 32, nHeadKv: 8, nVocab: 128256 }),
  llamaCase("llama-3-70B (LLM_TYPE_70B)", "llama", { nLayer: 80, nEmbd: 8192, nFf: 28672, nHead: 64, nHeadKv: 8, nVocab: 128256 }),
  llamaCase("llama-65B (80 layers, MHA)", "llama", { nLayer: 80, nEmbd: 8192, nFf: 22016, nHead: 64, nHeadKv: 64, nVocab: 32000 }),
  llamaCase("llama 7 layers (counter edges)", "llama", { nLayer: 7, nEmbd: 512, nFf: 1536, nHead: 8, nHeadKv: 8, nVocab: 1000 }),
  llamaCase("llama 1 layer", "llama", { nLayer: 1, nEmbd: 256, nFf: 512, nHead: 4, nHeadKv: 1, nVocab: 1000 }),
  llamaCase("mixtral 8x7B (3-D experts)", "llama", { nLayer: 32, nEmbd: 4096, nFf: 14336, nHead: 32, nHeadKv: 8, nVocab: 32000, experts: { n: 8, ff: 14336, style: "3d" } }),
  llamaCase("mixtral-tiny (3-D experts, tied)", "llama", { nLayer: 2, nEmbd: 256, nFf: 512, nHead: 4, nHeadKv: 2, nVocab: 32000, tied: true, experts: { n: 8, ff: 512, style: "3d" } }),
  llamaCase("mixtral, split experts (old files)", "llama", { nLayer: 4, nEmbd: 512, nFf: 1024, nHead: 8, nHeadKv: 2, nVocab: 1000, experts: { n: 8, ff: 1024, style: "split" } }),
  llamaCase("qwen3moe 128 experts", "qwen3moe", { nLayer: 48, nEmbd: 2048, nFf: 6144, nHead: 32, nHeadKv: 4, nVocab: 151936, experts: { n: 128, ff: 768, style: "3d" }, headDim: 128 }),
  llamaCase("4 experts, MHA", "llama", { nLayer: 3, nEmbd: 256, nFf: 352, nHead: 4, nHeadKv: 4, nVocab: 1000, experts: { n: 4, ff: 352, style: "3d" } }),
  llamaCase("qwen2 80 layers", "qwen2", { nLayer: 80, nEmbd: 8192, nFf: 29568, nHead: 64, nHeadKv: 8, nVocab: 152064 }),
  llamaCase("qwen3-tiny", "qwen3", { nLayer: 4, nEmbd: 256, nFf: 768, nHead: 4, nHeadKv: 2, nVocab: 151936, tied: true, headDim: 64 }),
  llamaCase("falcon-7B (fused qkv)", "falcon", { nLayer: 32, nEmbd: 4544, nFf: 18176, nHead: 71, nHeadKv: 1, nVocab: 65024, qkv: true, headDim: 64 }),
  llamaCase("falcon-40B-like (fused qkv)", "falcon", { nLayer: 60, nEmbd: 8192, nFf: 32768, nHead: 128, nHeadKv: 8, nVocab: 65024, qkv: true }),
  llamaCase("phi3-like fused qkv, 3072", "phi3", { nLayer: 32, nEmbd: 3072, nFf: 8192, nHead: 32, nHeadKv: 32, nVocab: 32064, qkv: true }),
  llamaCase("gpt-oss-like rows of 2880", "llama", { nLayer: 24, nEmbd: 2880, nFf: 2880, nHead: 64, nHeadKv: 8, nVocab: 201088, headDim: 64, experts: { n: 32, ff: 2880, style: "3d" } }),
  llamaCase("rows of 352 (fallbacks)", "llama", { nLayer: 5, nEmbd: 256, nFf: 352, nHead: 8, nHeadKv: 2, nVocab: 1000 }),
  {
    label: "deepseek2-like (MLA kv_b, shared experts, a dense first layer)",
    desc: desc("deepseek2", { nLayer: 6, nEmbd: 1024, nFf: 2048, nHead: 16, nHeadKv: 16, nExpert: 64 }),
    tensors: [
      { name: "token_embd.weight", ne: [1024, 102400] },
      ...[...Array(6).keys()].flatMap((b) => [
        { name: `blk.${b}.attn_norm.weight`, ne: [1024] },
        { name: `blk.${b}.attn_q_a.weight`, ne: [1024, 512] },
        { name: `blk.${b}.attn_q_a_norm.weight`, ne: [512] },
        { name: `blk.${b}.attn_q_b.weight`, ne: [512, 3072] },
        { name: `blk.${b}.attn_kv_a_mqa.weight`, ne: [1024, 576] },
        { name: `blk.${b}.attn_kv_a_norm.weight`, ne: [512] },
        { name: `blk.${b}.attn_kv_b.weight`, ne: [512, 4096] },
        { name: `blk.${b}.attn_output.weight`, ne: [2048, 1024] },
        { name: `blk.${b}.ffn_norm.weight`, ne: [1024] },
        ...(b === 0
          ? [
              { name: `blk.${b}.ffn_gate.weight`, ne: [1024, 2048] },
              { name: `blk.${b}.ffn_up.weight`, ne: [1024, 2048] },
              { name: `blk.${b}.ffn_down.weight`, ne: [2048, 1024] },
            ]
          : [
              { name: `blk.${b}.ffn_gate_inp.weight`, ne: [1024, 64] },
              { name: `blk.${b}.exp_probs_b.bias`, ne: [64] },
              { name: `blk.${b}.ffn_gate_exps.weight`, ne: [1024, 512, 64] },
              { name: `blk.${b}.ffn_up_exps.weight`, ne: [1024, 512, 64] },
              { name: `blk.${b}.ffn_down_exps.weight`, ne: [512, 1024, 64] },
              { name: `blk.${b}.ffn_gate_shexp.weight`, ne: [1024, 1024] },
              { name: `blk.${b}.ffn_up_shexp.weight`, ne: [1024, 1024] },
              { name: `blk.${b}.ffn_down_shexp.weight`, ne: [1024, 1024] },
            ]),
      ]),
      { name: "output_norm.weight", ne: [1024] },
      { name: "output.weight", ne: [1024, 102400] },
    ],
  },
  {
    label: "odd names and shapes (never-quantized names, 1-D-like, rows of 100, 5-char name)",
    desc: desc("llama", { nLayer: 2, nEmbd: 256, nFf: 512, nHead: 4, nHeadKv: 4 }),
    tensors: [
      ...llamaLike({ nLayer: 2, nEmbd: 256, nFf: 512, nHead: 4, nHeadKv: 4, nVocab: 500, tied: true }),
      { name: "per_layer_token_embd.weight", ne: [256, 500] },
      { name: "position_embd.weight", ne: [256, 512] },
      { name: "token_types.weight", ne: [256, 2] },
      { name: "blk.0.altup_proj.weight", ne: [256, 256] },
      { name: "blk.1.laurel_l.weight", ne: [256, 64] },
      { name: "blk.0.ssm_conv1d.weight", ne: [4, 256] },
      { name: "blk.1.attn_rel_b.weight", ne: [32, 8] },
      { name: "v.patch_embd.weight", ne: [14, 14, 3, 256] },
      { name: "blk.0.attn_q.bias", ne: [256, 1] },
      { name: "blk.0.wide_vector.weight", ne: [256, 1] },
      { name: "blk.1.odd_proj.weight", ne: [100, 64] },
      { name: "blk.1.attn_v.weightx", ne: [256, 64] },
      { name: "abcde", ne: [256, 64] },
      { name: "extra.weight", ne: [256, 64, 2] },
    ],
  },
];

/** A fixed shuffle, so that the recipe sees file order and must sort like weights_map. */
function shuffled<T>(a: readonly T[]): T[] {
  const out = [...a];
  let s = 12345;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function weightsOrder(tensors: readonly { name: string }[]): number[] {
  const key = (n: string) => blockIndex(n) ?? -1;
  return tensors.map((_, i) => i).sort((a, b) => {
    const na = tensors[a]!.name, nb = tensors[b]!.name;
    return key(na) - key(nb) || (na < nb ? -1 : na > nb ? 1 : 0);
  });
}

describe("recipes.ts vs libllama llama_quant_compute_types", () => {
  it.each(CASES.map((c) => [c.label, c] as const))("%s", (_label, c) => {
    // llama_quant_model_from_metadata only marks llama with 80 layers and GQA as 70B
    const llmType70B = c.desc.arch === "llama" && c.desc.nLayer === 80 && c.desc.nHead !== c.desc.nHeadKv;
    // Q1_0 (blocks of 128) has no fallback type: llama.cpp throws on rows it cannot hold
    const q1ok = c.tensors.every((t) => !tensorAllowsQuantization(t.name, t.ne) || t.ne[0]! % 128 === 0);
    const ftypes = FTYPES.filter((f) => f !== 40 || q1ok);
    const sorted = weightsOrder(c.tensors).map((i) => c.tensors[i]!);
    const reference = llamaReferenceTensorTypes({ model: c.desc, tensors: sorted, ftypes });
    const input: RecipeTensor[] = shuffled(c.tensors).map((t) => ({ ...t, type: t.ne.length > 1 ? GGMLType.F16 : GGMLType.F32 }));
    const model = { arch: c.desc.arch, blockCount: c.desc.nLayer, headCount: c.desc.nHead, headCountKv: c.desc.nHeadKv, expertCount: c.desc.nExpert, llmType70B };
    const problems: string[] = [];
    let compared = 0;
    for (const ftype of ftypes) {
      const plan = planTensorTypes({ ftype, tensors: input, model });
      const byName = new Map(input.map((t, i) => [t.name, plan.tensors[i]!]));
      const theirs = reference.get(ftype)!;
      sorted.forEach((t, i) => {
        const ours = byName.get(t.name)!;
        const ref = theirs[i];
        compared++;
        if ((ref === null) !== !ours.allowsQuantization) {
          problems.push(`ftype ${ftype} ${t.name}: quantized upstream ${ref !== null}, ours ${ours.allowsQuantization}`);
        } else if (ref !== null && ref !== ours.type) {
          problems.push(`ftype ${ftype} ${t.name}: upstream ${ggmlTypeName(ref)}, ours ${ggmlTypeName(ours.type)}`);
        }
      });
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(compared).toBe(ftypes.length * c.tensors.length);
  });
});

describe("recipes.ts details", () => {
  const tiny = CASES[0]!;
  const tinyTensors = tiny.tensors.map((t) => ({ ...t, type: t.ne.length > 1 ? GGMLType.F16 : GGMLType.F32 }));
  const tinyModel = { arch: "llama", blockCount: 4, headCount: 4, headCountKv: 2 };

  it("keeps non-quantized tensors in their input type and derives LLM_TYPE_70B like llama.cpp", () => {
    const types = chooseTensorTypes({ ftype: LlamaFtype.MOSTLY_Q4_K_M, tensors: tinyTensors, model: tinyModel });
    expect(types[1]).toBe(GGMLType.F32); // blk.0.attn_norm.weight
    expect(types[0]).toBe(GGMLType.Q6_K); // tied token_embd follows the output rule
    expect(isLlmType70B({ arch: "llama", blockCount: 80, headCount: 64, headCountKv: 8 })).toBe(true);
    expect(isLlmType70B({ arch: "llama", blockCount: 80, headCount: 64, headCountKv: 64 })).toBe(false);
    expect(isLlmType70B({ arch: "qwen2", blockCount: 80, headCount: 64, headCountKv: 8 })).toBe(true);
    expect(isLlmType70B({ arch: "jais2", blockCount: 68, headCount: 8, headCountKv: 8 })).toBe(true);
  });

  it("applies overrides, pure, --leave-output-tensor and explicit output/embedding types", () => {
    const base = { ftype: LlamaFtype.MOSTLY_Q4_K_M, tensors: tinyTensors, model: tinyModel };
    const pure = chooseTensorTypes({ ...base, pure: true });
    expect(new Set(pure.filter((_, i) => tinyTensors[i]!.ne.length > 1))).toEqual(new Set([GGMLType.Q4_K]));
    const over = chooseTensorTypes({ ...base, tensorTypeOverrides: [{ pattern: "attn_v", type: GGMLType.Q8_0 }], tokenEmbeddingType: GGMLType.Q8_0 });
    tinyTensors.forEach((t, i) => {
      if (t.name.includes("attn_v")) expect(over[i]).toBe(GGMLType.Q8_0);
    });
    expect(over[0]).toBe(GGMLType.Q8_0);
    const untied = [...tinyTensors, { name: "output.weight", ne: [256, 32000], type: GGMLType.F16 }];
    const keep = chooseTensorTypes({ ...base, tensors: untied, quantizeOutputTensor: false });
    expect(keep.at(-1)).toBe(GGMLType.F16);
    const out8 = chooseTensorTypes({ ...base, tensors: untied, outputTensorType: GGMLType.Q8_0 });
    expect(out8.at(-1)).toBe(GGMLType.Q8_0);
    expect(out8[0]).toBe(GGMLType.Q4_K); // untied: token_embd keeps the default
  });

  it("has_imatrix changes the IQ3_XXS / IQ4 / Q4_0 rules and reports imatrix requirements", () => {
    const plan = (ftype: number, haveImatrix: boolean) => planTensorTypes({ ftype, tensors: tinyTensors, model: tinyModel, haveImatrix });
    const v = tinyTensors.findIndex((t) => t.name === "blk.0.attn_v.weight");
    const d = tinyTensors.findIndex((t) => t.name === "blk.0.ffn_down.weight");
    expect(plan(LlamaFtype.MOSTLY_IQ3_XXS, false).tensors[v]!.type).toBe(GGMLType.IQ3_S);
    expect(plan(LlamaFtype.MOSTLY_IQ3_XXS, true).tensors[v]!.type).toBe(GGMLType.IQ3_XXS);
    expect(plan(LlamaFtype.MOSTLY_Q4_0, true).tensors[d]!.type).toBe(GGMLType.Q4_0); // 4 layers: 4/8 = 0
    expect(plan(LlamaFtype.MOSTLY_IQ2_XS, true).requiresImatrix).toBe(true);
    expect(plan(LlamaFtype.MOSTLY_Q4_K_M, false).requiresImatrix).toBe(false);
  });

  it("exposes the recipe as a (name, block, ne) predicate", () => {
    const pred = recipePredicate({ ftype: LlamaFtype.MOSTLY_Q4_K_M, tensors: tinyTensors, model: tinyModel });
    // use_more_bits(i, 4): i >= 7*4/8 or (i - 4/8) % 3 == 2, so blocks 2 and 3
    expect(pred("blk.0.ffn_down.weight", 0, [768, 256])).toBe(GGMLType.Q4_K);
    expect(pred("blk.2.ffn_down.weight", 2, [768, 256])).toBe(GGMLType.Q6_K);
    expect(() => pred("blk.9.nope.weight", 9, [1])).toThrow(/not in the list/);
    expect(() => pred("blk.0.ffn_down.weight", 0, [256, 768])).toThrow(/ne/);
  });

  it("categorizes like tensor_get_category and refuses bad input", () => {
    expect(tensorCategory("blk.3.ffn_down_exps.weight")).toBe("FFN_DOWN");
    expect(tensorCategory("blk.3.attn_kv_b.weight")).toBe("ATTENTION_KV_B");
    expect(tensorCategory("per_layer_token_embd.weight")).toBe("TOKEN_EMBD");
    expect(() => planTensorTypes({ ftype: 39, tensors: tinyTensors, model: tinyModel })).toThrow(/invalid output file type/);
    expect(() => planTensorTypes({ ftype: 2, tensors: [...tinyTensors, tinyTensors[0]!], model: tinyModel })).toThrow(/duplicate/);
  });
});
