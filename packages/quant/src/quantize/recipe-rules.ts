// The standalone rules of llama.cpp src/llama-quant.cpp that need no quantize state:
// llama_ftype_get_default_type, tensor_get_category, category_is_attn_v,
// tensor_allows_quantization, tensor_requires_imatrix, plus the model facts they read
// (LLM_TYPE_70B, weight_name_comparer). recipes.ts holds the stateful mixture rules.

import { findGGMLTypeTraits, GGML_TYPE_Q1_0, GGML_TYPE_Q2_0 } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";

// llama_ftype values llama.h has that the shared LlamaFtype enum does not name.
export const LLAMA_FTYPE_MOSTLY_TQ1_0 = 36;
export const LLAMA_FTYPE_MOSTLY_TQ2_0 = 37;
export const LLAMA_FTYPE_MOSTLY_MXFP4_MOE = 38;
export const LLAMA_FTYPE_MOSTLY_Q1_0 = 40;
export const LLAMA_FTYPE_MOSTLY_Q2_0 = 41;

/** tensor_category in llama-quant.cpp. */
export type TensorCategory =
  | "TOKEN_EMBD" | "ATTENTION_Q" | "ATTENTION_V" | "ATTENTION_K" | "ATTENTION_QKV" | "ATTENTION_KV_B"
  | "ATTENTION_OUTPUT" | "FFN_UP" | "FFN_GATE" | "FFN_DOWN" | "OUTPUT" | "OTHER";

export const GGML_TYPE_COUNT = 43;

/** A params->output_tensor_type-style field that is set (upstream's "< GGML_TYPE_COUNT"). */
export function isSet(t: number | undefined): t is number {
  return t !== undefined && t < GGML_TYPE_COUNT;
}

/** ggml_blck_size, from the shared traits table. */
export function blck(type: number): number {
  const t = findGGMLTypeTraits(type);
  if (!t) throw new RangeError(`unknown ggml type ${type}`);
  return t.blockSize;
}

/** ggml_is_quantized: every block type is; F32/F16/BF16/I* (block size 1) are not. */
export function isQuantizedType(type: number): boolean {
  return blck(type) > 1;
}

/** ggml_n_dims: trailing dimensions of size 1 do not count; at least 1. */
export function nDims(ne: readonly number[]): number {
  for (let i = Math.min(ne.length, 4) - 1; i >= 1; i--) if ((ne[i] ?? 1) > 1) return i + 1;
  return 1;
}

/** sscanf(name, "blk.%d.", &il) == 1 (the trailing "." is not checked by the return value). */
export function blockIndex(name: string): number | undefined {
  const m = /^blk\.\s*([+-]?\d+)/.exec(name);
  return m ? Number.parseInt(m[1]!, 10) : undefined;
}

/** llama_model_loader::weight_name_comparer: block number (-1 for none), then name. */
export function weightNameCompare(a: string, b: string): number {
  const la = blockIndex(a) ?? -1;
  const lb = blockIndex(b) ?? -1;
  if (la !== lb) return la - lb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** LLM_TYPE_70B as llama.cpp's load_arch_hparams assigns it (src/models/*.cpp). */
export function isLlmType70B(model: { arch: string; blockCount: number; headCount: number; headCountKv: number; expertCount?: number }): boolean {
  switch (model.arch) {
    case "llama": return (model.expertCount ?? 0) !== 8 && model.blockCount === 80 && model.headCount !== model.headCountKv;
    case "qwen2": case "deci": case "olmo": return model.blockCount === 80;
    case "jais2": return model.blockCount === 68;
    default: return false;
  }
}

/** llama_ftype_get_default_type; undefined where upstream returns GGML_TYPE_COUNT. */
export function ftypeDefaultType(ftype: LlamaFtype | number): GGMLType | number | undefined {
  const F = LlamaFtype;
  switch (ftype) {
    case F.MOSTLY_Q4_0: return GGMLType.Q4_0;
    case F.MOSTLY_Q4_1: return GGMLType.Q4_1;
    case F.MOSTLY_Q5_0: return GGMLType.Q5_0;
    case F.MOSTLY_Q5_1: return GGMLType.Q5_1;
    case F.MOSTLY_Q8_0: return GGMLType.Q8_0;
    case F.MOSTLY_F16: return GGMLType.F16;
    case F.MOSTLY_BF16: return GGMLType.BF16;
    case F.ALL_F32: return GGMLType.F32;
    case LLAMA_FTYPE_MOSTLY_Q1_0: return GGML_TYPE_Q1_0;
    case LLAMA_FTYPE_MOSTLY_Q2_0: return GGML_TYPE_Q2_0;
    case LLAMA_FTYPE_MOSTLY_MXFP4_MOE: return GGMLType.MXFP4;
    case F.MOSTLY_Q2_K_S: case F.MOSTLY_Q2_K: return GGMLType.Q2_K;
    case F.MOSTLY_IQ3_XS: return GGMLType.IQ3_S;
    case F.MOSTLY_Q3_K_S: case F.MOSTLY_Q3_K_M: case F.MOSTLY_Q3_K_L: return GGMLType.Q3_K;
    case F.MOSTLY_Q4_K_S: case F.MOSTLY_Q4_K_M: return GGMLType.Q4_K;
    case F.MOSTLY_Q5_K_S: case F.MOSTLY_Q5_K_M: return GGMLType.Q5_K;
    case F.MOSTLY_Q6_K: return GGMLType.Q6_K;
    case LLAMA_FTYPE_MOSTLY_TQ1_0: return GGMLType.TQ1_0;
    case LLAMA_FTYPE_MOSTLY_TQ2_0: return GGMLType.TQ2_0;
    case F.MOSTLY_IQ2_XXS: return GGMLType.IQ2_XXS;
    case F.MOSTLY_IQ2_XS: return GGMLType.IQ2_XS;
    case F.MOSTLY_IQ2_S: return GGMLType.IQ2_XS;
    case F.MOSTLY_IQ2_M: return GGMLType.IQ2_S;
    case F.MOSTLY_IQ3_XXS: return GGMLType.IQ3_XXS;
    case F.MOSTLY_IQ1_S: return GGMLType.IQ1_S;
    case F.MOSTLY_IQ1_M: return GGMLType.IQ1_M;
    case F.MOSTLY_IQ4_NL: return GGMLType.IQ4_NL;
    case F.MOSTLY_IQ4_XS: return GGMLType.IQ4_XS;
    case F.MOSTLY_IQ3_S: case F.MOSTLY_IQ3_M: return GGMLType.IQ3_S;
    default: return undefined;
  }
}

/** tensor_get_category: broad categories by name substring, in upstream's test order. */
export function tensorCategory(name: string): TensorCategory {
  if (name === "output.weight") return "OUTPUT";
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight") return "TOKEN_EMBD";
  if (name.includes("attn_qkv.weight")) return "ATTENTION_QKV";
  if (name.includes("attn_kv_b.weight")) return "ATTENTION_KV_B";
  if (name.includes("attn_v.weight")) return "ATTENTION_V";
  if (name.includes("attn_k.weight")) return "ATTENTION_K";
  if (name.includes("attn_q.weight")) return "ATTENTION_Q";
  if (name.includes("attn_output.weight")) return "ATTENTION_OUTPUT";
  if (name.includes("ffn_up")) return "FFN_UP";
  if (name.includes("ffn_gate")) return "FFN_GATE";
  if (name.includes("ffn_down")) return "FFN_DOWN";
  return "OTHER";
}

/** category_is_attn_v. */
export function isAttnV(c: TensorCategory): boolean {
  return c === "ATTENTION_V" || c === "ATTENTION_QKV" || c === "ATTENTION_KV_B";
}

/** Name fragments tensor_allows_quantization never quantizes. */
const NEVER_QUANTIZED = [
  "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
  "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
  "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
  "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
  "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
  "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
  "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
  ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
];

/** tensor_allows_quantization (params->only_copy is not supported here). */
export function tensorAllowsQuantization(
  name: string,
  ne: readonly number[],
  opts?: { quantizeOutputTensor?: boolean },
): boolean {
  // quantize only 2D and 3D tensors (experts)
  if (nDims(ne) < 2) return false;
  // name.rfind("weight") == name.size() - 6, with size_t arithmetic: a 5-character name
  // without "weight" compares npos with npos and passes, as upstream.
  const at = name.lastIndexOf("weight");
  let quantize = at === -1 ? name.length === 5 : at === name.length - 6;
  if (opts?.quantizeOutputTensor === false && name === "output.weight") quantize = false;
  // LLM_TN(arch)(LLM_TENSOR_POS_EMBD / LLM_TENSOR_TOKEN_TYPES, "weight") are arch-independent names
  if (name === "position_embd.weight" || name === "token_types.weight") quantize = false;
  for (const frag of NEVER_QUANTIZED) if (name.includes(frag)) quantize = false;
  return quantize;
}

/** tensor_requires_imatrix. */
export function tensorRequiresImatrix(name: string, type: number, ftype: number): boolean {
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight" || name === "output.weight") return false;
  switch (type) {
    case GGMLType.IQ3_XXS: case GGMLType.IQ2_XXS: case GGMLType.IQ2_XS: case GGMLType.IQ2_S:
    case GGMLType.IQ1_M: case GGMLType.IQ1_S:
      return true;
    case GGMLType.Q2_K:
      // k-quants need none, except the Q2_K tensors of a Q2_K_S file
      return ftype === LlamaFtype.MOSTLY_Q2_K_S;
    default:
      return false;
  }
}
