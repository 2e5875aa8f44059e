// model_type "llama" (alias "mistral") -> GGUF "llama". conversion/llama.py LlamaModel.
import { ConversionError } from "@llama-pajamas/artifact";
import {
  type DefaultsTable,
  blockCount,
  decoderSummary,
  effectiveConfig,
  fullAttentionRope,
  headDimFromHidden,
  kvHeadsFromHeads,
  optionalInt,
  requireInt,
  requireShape,
  ropeParameters,
} from "./hparams.js";
import { kvBuilder, textModelParameters } from "./kv.js";
import { type SourceItem, planDecoder, textModelFilter } from "./plan.js";
import { GLOBAL_RULES, LLAMA_BLOCK_RULES, compileNameMap } from "./tensor-names.js";
import { llama3RopeFactors, permuteRopeRows } from "./transforms.js";
import type { Architecture, ArchitectureMetadata, HFConfig, TensorPlan } from "./types.js";

const ARCH = "llama";

// transformers (5.x) LlamaConfig / MistralConfig defaults for fields the converter reads.
const LLAMA_DEFAULTS: DefaultsTable = {
  head_dim: headDimFromHidden,
  num_key_value_heads: kvHeadsFromHeads,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
};
const MISTRAL_DEFAULTS: DefaultsTable = { ...LLAMA_DEFAULTS, num_key_value_heads: 8, max_position_embeddings: 4096 * 32 };

export function llamaConfig(config: HFConfig, defaults?: DefaultsTable, arch = ARCH): HFConfig {
  const d = defaults ?? (config["model_type"] === "mistral" ? MISTRAL_DEFAULTS : LLAMA_DEFAULTS);
  return requireShape(effectiveConfig(config, d), arch, true);
}

/** LlamaModel.set_gguf_parameters: the shared keys, then vocab_size and rope.dimension_count. */
export function llamaMetadata(cfg: HFConfig, arch = ARCH): ArchitectureMetadata {
  const kv = kvBuilder("llama");
  textModelParameters(kv, cfg, blockCount(cfg, arch));
  kv.u32("vocab_size", requireInt(cfg, "vocab_size", arch));
  kv.u32("rope.dimension_count", ropeDim(cfg, arch));
  return kv.result();
}

function ropeDim(cfg: HFConfig, arch: string): number {
  return optionalInt(cfg, "head_dim") ?? Math.floor(requireInt(cfg, "hidden_size", arch) / requireInt(cfg, "num_attention_heads", arch));
}

/** LlamaModel.filter_tensors: SmolVLM's text_model. prefix, then the text-model filter. */
export function llamaFilter(name: string): string | undefined {
  return textModelFilter(name.replaceAll("text_model.", ""));
}

/**
 * LlamaModel.modify_tensors' undo_permute: q_proj rows are permuted with num_attention_heads,
 * k_proj rows with num_key_value_heads (weights and biases alike).
 */
export function llamaPermute(cfg: HFConfig, arch: string): (item: SourceItem, plan: TensorPlan) => TensorPlan {
  const nHead = requireInt(cfg, ["n_heads", "num_attention_heads"], arch);
  const nHeadKv = requireInt(cfg, ["n_kv_heads", "num_key_value_heads"], arch);
  return (item, plan) => {
    const q = item.name.endsWith("q_proj.weight") || item.name.endsWith("q_proj.bias");
    const k = item.name.endsWith("k_proj.weight") || item.name.endsWith("k_proj.bias");
    if (!q && !k) return plan;
    const heads = q ? nHead : nHeadKv;
    const rows = plan.shape[0]!;
    if (rows % (heads * 2) !== 0) {
      throw new ConversionError(
        `${item.sourceName} has ${rows} rows, which do not split into ${heads} heads of even size; ` +
          `config.json's head counts do not match the checkpoint`,
      );
    }
    return { ...plan, build: ([w]) => permuteRopeRows(w!, rows, heads) };
  };
}

/** LlamaModel.generate_extra_tensors: rope_freqs.weight for llama3 RoPE scaling, else nothing. */
export function llamaGeneratedTensors(cfg: HFConfig, arch: string): TensorPlan[] {
  const rope = fullAttentionRope(ropeParameters(cfg));
  if (Object.keys(rope).length === 0) return [];
  const type = rope["rope_type"];
  if (typeof type !== "string" || type.toLowerCase() !== "llama3") return [];
  const num = (key: string, def: number): number => {
    const v = rope[key];
    return typeof v === "number" ? v : def;
  };
  const dim = ropeDim(cfg, arch);
  const opts = {
    base: num("rope_theta", 10000),
    dim,
    factor: num("factor", 8),
    lowFreqFactor: num("low_freq_factor", 1),
    highFreqFactor: num("high_freq_factor", 4),
    originalContext: num("original_max_position_embeddings", 8192),
  };
  return [{ name: "rope_freqs.weight", sources: [], shape: [Math.ceil(dim / 2)], generate: () => llama3RopeFactors(opts) }];
}

export const DENSE_BLOCK = [
  "blk.{bid}.attn_norm",
  "blk.{bid}.attn_q",
  "blk.{bid}.attn_k",
  "blk.{bid}.attn_v",
  "blk.{bid}.attn_output",
  "blk.{bid}.ffn_norm",
  "blk.{bid}.ffn_gate",
  "blk.{bid}.ffn_up",
  "blk.{bid}.ffn_down",
];
export const REQUIRED_GLOBAL = ["token_embd", "output_norm"];

export const llama: Architecture = {
  modelTypes: ["llama", "mistral"],
  ggufArch: "llama",
  hfArchitectures: ["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"],
  summary: (config) => decoderSummary(llamaConfig(config), ARCH),
  metadata: (config) => llamaMetadata(llamaConfig(config)),
  tensors(config, source) {
    const cfg = llamaConfig(config);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...LLAMA_BLOCK_RULES], blocks),
      blockCount: blocks,
      rename: llamaFilter,
      generated: llamaGeneratedTensors(cfg, ARCH),
      modify: llamaPermute(cfg, ARCH),
      required: { global: REQUIRED_GLOBAL, block: DENSE_BLOCK },
    });
  },
};
