// The `<arch>.*` metadata, built in the order llama.cpp's converter adds it.
import { ConversionError } from "@llama-pajamas/artifact";
import { type GGUFKV, GGUFValueType } from "../formats/gguf-types.js";
import { findHparam, fullAttentionRope, isRecord, optionalInt, optionalNumber, ropeParameters } from "./hparams.js";
import type { ArchitectureMetadata, HFConfig } from "./types.js";

const FILE_TYPE = Symbol("general.file_type");

/**
 * An ordered key list with the converter's overwrite rule: gguf-py's GGUFWriter keeps KVs in a
 * dict, so adding a key again replaces its value but keeps its first position.
 */
export interface KVBuilder {
  u32(key: string, value: number): void;
  f32(key: string, value: number): void;
  str(key: string, value: string): void;
  bool(key: string, value: boolean): void;
  /** Where TextModel.set_gguf_parameters calls add_file_type. */
  fileType(): void;
  /** A KV the converter adds while preparing tensors, before any general.* but the architecture. */
  early(kv: GGUFKV): void;
  result(): ArchitectureMetadata;
}

export function kvBuilder(arch: string): KVBuilder {
  const entries = new Map<string, GGUFKV | typeof FILE_TYPE>();
  const early: GGUFKV[] = [];
  const put = (kv: GGUFKV): void => {
    entries.set(kv.key, kv);
  };
  const full = (key: string): string => `${arch}.${key}`;
  return {
    u32: (key, value) => put({ key: full(key), type: GGUFValueType.UINT32, value }),
    f32: (key, value) => put({ key: full(key), type: GGUFValueType.FLOAT32, value }),
    str: (key, value) => put({ key: full(key), type: GGUFValueType.STRING, value }),
    bool: (key, value) => put({ key: full(key), type: GGUFValueType.BOOL, value }),
    fileType: () => entries.set("general.file_type", FILE_TYPE),
    early: (kv) => early.push(kv),
    result: () => {
      const out: ArchitectureMetadata = { afterArchitecture: early, beforeFileType: [], afterFileType: [] };
      let seen = false;
      for (const v of entries.values()) {
        if (v === FILE_TYPE) seen = true;
        else (seen ? out.afterFileType : out.beforeFileType).push(v);
      }
      if (!seen) throw new Error(`internal: ${arch} metadata never placed general.file_type`);
      return out;
    },
  };
}

// ExpertGatingFuncType in gguf-py/gguf/constants.py
const GATING: Record<string, number> = { softmax: 1, sigmoid: 2, sqrtsoftplus: 4 };

/**
 * TextModel.set_gguf_parameters (conversion/base.py): the shared keys, each written only when the
 * (effective) config has the field, ending with general.file_type.
 */
export function textModelParameters(kv: KVBuilder, config: HFConfig, blocks: number): void {
  kv.u32("block_count", blocks);
  const ints: [string, string[]][] = [
    ["context_length", ["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"]],
    ["embedding_length", ["hidden_size", "n_embd", "dim"]],
    ["feed_forward_length", ["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"]],
    ["attention.head_count", ["num_attention_heads", "n_head", "n_heads"]],
    ["attention.head_count_kv", ["num_key_value_heads", "n_kv_heads"]],
  ];
  for (const [key, names] of ints) {
    const v = optionalInt(config, names);
    if (v !== undefined) kv.u32(key, v);
  }
  if (config["is_causal"] === false) kv.bool("attention.causal", false);

  const rope = ropeParameters(config);
  const full = fullAttentionRope(rope);
  ropeScaling(kv, full);
  if ("mrope_section" in rope) {
    throw new ConversionError("multimodal RoPE sections (rope_scaling.mrope_section) are not supported for this architecture");
  }
  const theta = full["rope_theta"];
  if (typeof theta === "number") kv.f32("rope.freq_base", theta);
  const swa = rope["sliding_attention"];
  if (isRecord(swa) && typeof swa["rope_theta"] === "number") kv.f32("rope.freq_base_swa", swa["rope_theta"]);

  const floats: [string, string[]][] = [
    ["attention.layer_norm_rms_epsilon", ["rms_norm_eps", "norm_eps"]],
    ["attention.layer_norm_epsilon", ["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"]],
  ];
  for (const [key, names] of floats) {
    const v = optionalNumber(config, names);
    if (v !== undefined) kv.f32(key, v);
  }
  const moe: [string, string[]][] = [
    ["expert_count", ["num_local_experts", "num_experts", "n_routed_experts"]],
    ["expert_used_count", ["num_experts_per_tok", "num_experts_per_token", "top_k_experts"]],
    ["expert_group_count", ["n_group"]],
    ["expert_group_used_count", ["topk_group"]],
  ];
  for (const [key, names] of moe) {
    const v = optionalInt(config, names);
    if (v !== undefined) kv.u32(key, v);
  }
  const scoreNames = ["score_function", "scoring_func", "score_func", "moe_router_activation", "moe_router_activation_func", "expert_selection_fn"];
  const score = findHparam(config, scoreNames);
  if (score !== undefined) {
    const id = typeof score === "string" ? GATING[score] : undefined;
    if (id === undefined) throw new ConversionError(`unsupported expert score gating function ${JSON.stringify(score)} in config.json`);
    kv.u32("expert_gating_func", id);
  }
  const headDim = optionalInt(config, "head_dim");
  if (headDim !== undefined) {
    kv.u32("attention.key_length", headDim);
    kv.u32("attention.value_length", headDim);
  }
  kv.fileType();
}

/** The rope_type branch of TextModel.set_gguf_parameters. */
function ropeScaling(kv: KVBuilder, p: Record<string, unknown>): void {
  const type = p["rope_type"];
  if (typeof type !== "string") return;
  const factor = typeof p["factor"] === "number" ? p["factor"] : undefined;
  if (type === "linear" && factor !== undefined) {
    kv.str("rope.scaling.type", "linear");
    kv.f32("rope.scaling.factor", factor);
  } else if (type === "yarn" && factor !== undefined) {
    kv.str("rope.scaling.type", "yarn");
    kv.f32("rope.scaling.factor", factor);
    const orig = p["original_max_position_embeddings"];
    if (typeof orig !== "number") {
      throw new ConversionError("yarn RoPE scaling needs rope_scaling.original_max_position_embeddings in config.json");
    }
    kv.u32("rope.scaling.original_context_length", orig);
    const opt: [string, unknown][] = [
      ["rope.scaling.yarn_ext_factor", p["extrapolation_factor"]],
      ["rope.scaling.yarn_attn_factor", p["attention_factor"] ?? p["attn_factor"]],
      ["rope.scaling.yarn_beta_fast", p["beta_fast"]],
      ["rope.scaling.yarn_beta_slow", p["beta_slow"]],
    ];
    for (const [key, v] of opt) if (typeof v === "number") kv.f32(key, v);
  } else if (type === "su" || type === "longrope") {
    kv.str("rope.scaling.type", "longrope");
  }
  // "dynamic" is left to model classes, "llama3" becomes rope_freqs.weight, others are ignored
  // with a warning by the converter.
}

/** Metadata of a model class that adds nothing to TextModel.set_gguf_parameters (qwen2, qwen3). */
export function textModelMetadata(ggufArch: string, config: HFConfig, blocks: number): ArchitectureMetadata {
  const kv = kvBuilder(ggufArch);
  textModelParameters(kv, config, blocks);
  return kv.result();
}
