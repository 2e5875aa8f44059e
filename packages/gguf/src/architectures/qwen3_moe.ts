// model_type "qwen3_moe" -> GGUF "qwen3moe". conversion/qwen.py Qwen3MoeModel (a Qwen2MoeModel):
// TextModel's metadata plus expert_feed_forward_length; experts stacked per layer.
import { ConversionError } from "@llama-pajamas/artifact";
import { type DefaultsTable, blockCount, computed, decoderSummary, effectiveConfig, optionalInt, requireInt, requireShape } from "./hparams.js";
import { kvBuilder, textModelParameters } from "./kv.js";
import { REQUIRED_GLOBAL } from "./llama.js";
import { type ExpertSpec, type SourceItem, mapItem, planDecoder } from "./plan.js";
import { QK_NORM_BLOCK } from "./qwen3.js";
import { GLOBAL_RULES, LLAMA_ATTN_RULES, QK_NORM_RULES, QWEN_MOE_RULES, compileNameMap, type NameMap } from "./tensor-names.js";
import { splitMiddle } from "./transforms.js";
import type { Architecture, HFConfig, TensorPlan } from "./types.js";

const ARCH = "qwen3_moe";

// transformers (5.x) Qwen3MoeConfig defaults for fields the converter reads. It stores the
// expert count as num_local_experts; config.json usually says num_experts.
const QWEN3_MOE_DEFAULTS: DefaultsTable = {
  num_key_value_heads: 4,
  num_experts: computed((c) => c["num_local_experts"] ?? 128),
  num_experts_per_tok: 8,
  moe_intermediate_size: 768,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
};

function config(c: HFConfig): HFConfig {
  const cfg = requireShape(effectiveConfig(c, QWEN3_MOE_DEFAULTS), ARCH, false);
  const dense = cfg["mlp_only_layers"];
  const step = cfg["decoder_sparse_step"];
  if ((Array.isArray(dense) && dense.length > 0) || (typeof step === "number" && step !== 1)) {
    throw new ConversionError(
      `this qwen3_moe checkpoint mixes dense and MoE layers (mlp_only_layers ${JSON.stringify(dense ?? [])}, ` +
        `decoder_sparse_step ${JSON.stringify(step)}); llama.cpp's qwen3moe expects experts in every layer`,
    );
  }
  return cfg;
}

const expertCount = (cfg: HFConfig): number => requireInt(cfg, ["num_local_experts", "num_experts"], ARCH);

/** Qwen2MoeModel.modify_tensors: names containing "experts"; stacked down, gate, up. */
function qwenExperts(count: number): ExpertSpec {
  return {
    match: (name) => name.includes("experts"),
    count,
    expertName: (bid, xid, part) => `model.layers.${bid}.mlp.experts.${xid}.${part}.weight`,
    parts: ["down_proj", "gate_proj", "up_proj"].map((part) => ({
      part,
      merged: (bid: number) => `model.layers.${bid}.mlp.experts.${part}.weight`,
    })),
  };
}

/**
 * transformers 5 may save experts pre-stacked: mlp.experts.down_proj [E, embd, ff] copies
 * through; mlp.experts.gate_up_proj [E, 2*ff, embd] splits into gate (first half) and up.
 */
function fusedExperts(item: SourceItem, names: NameMap): TensorPlan[] | undefined {
  const base = item.name.replace(/\.weight$/, "");
  if (base.endsWith("mlp.experts.down_proj")) return [mapItem(ARCH, names, item, `${base}.weight`)];
  if (!base.endsWith("mlp.experts.gate_up_proj")) return undefined;
  const shape = item.info.shape;
  if (shape.length !== 3 || shape[1]! % 2 !== 0) {
    throw new ConversionError(`unexpected gate_up_proj shape [${shape.join(", ")}] for ${item.sourceName}; expected [experts, 2*ff, embd]`);
  }
  const stem = base.slice(0, -".gate_up_proj".length);
  const half = [shape[0]!, shape[1]! / 2, shape[2]!];
  return ([0, 1] as const).map((part) => ({
    ...mapItem(ARCH, names, item, `${stem}.${part === 0 ? "gate_proj" : "up_proj"}.weight`),
    shape: half,
    build: ([w]: Float32Array[]) => splitMiddle(w!, shape, part),
  }));
}

const MOE_BLOCK = [
  "blk.{bid}.attn_norm",
  "blk.{bid}.attn_q",
  "blk.{bid}.attn_k",
  "blk.{bid}.attn_v",
  "blk.{bid}.attn_output",
  ...QK_NORM_BLOCK,
  "blk.{bid}.ffn_norm",
  "blk.{bid}.ffn_gate_inp",
  "blk.{bid}.ffn_gate_exps",
  "blk.{bid}.ffn_down_exps",
  "blk.{bid}.ffn_up_exps",
];

export const qwen3_moe: Architecture = {
  modelTypes: ["qwen3_moe"],
  ggufArch: "qwen3moe",
  hfArchitectures: ["Qwen3MoeForCausalLM"],
  summary: (c) => decoderSummary(config(c), ARCH),
  metadata(c) {
    const cfg = config(c);
    const kv = kvBuilder("qwen3moe");
    textModelParameters(kv, cfg, blockCount(cfg, ARCH));
    // Qwen2MoeModel.set_gguf_parameters, after file_type.
    const moeFF = optionalInt(cfg, "moe_intermediate_size");
    if (moeFF !== undefined) kv.u32("expert_feed_forward_length", moeFF);
    const sharedFF = optionalInt(cfg, "shared_expert_intermediate_size");
    if (sharedFF !== undefined) kv.u32("expert_shared_feed_forward_length", sharedFF);
    return kv.result();
  },
  tensors(c, source) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...LLAMA_ATTN_RULES, ...QK_NORM_RULES, ...QWEN_MOE_RULES], blocks),
      blockCount: blocks,
      special: fusedExperts,
      experts: qwenExperts(expertCount(cfg)),
      required: { global: REQUIRED_GLOBAL, block: MOE_BLOCK },
      keepF32: ["blk.{bid}.ffn_gate_inp"],
    });
  },
};
