// model_type "gemma3" (Gemma3ForConditionalGeneration: its text_config and language_model.*
// tensors; the vision tower and projector are dropped) and "gemma3_text" (Gemma3ForCausalLM)
// -> GGUF "gemma3". conversion/gemma.py Gemma3Model.
//
// Gemma's RMSNorm computes x * (1 + w): llama.cpp's is x * w, so every *norm.weight is written
// as w + 1. The sqrt(hidden) embedding scale is applied by llama.cpp at run time, not here.
import { ConversionError } from "@llama-pajamas/artifact";
import { type DefaultsTable, blockCount, decoderSummary, effectiveConfig, fullAttentionRope, optionalInt, optionalNumber, requireInt, requireShape, ropeParameters } from "./hparams.js";
import { kvBuilder, textModelParameters } from "./kv.js";
import { REQUIRED_GLOBAL } from "./llama.js";
import { type SourceItem, planDecoder } from "./plan.js";
import { GEMMA3_BLOCK_RULES, GLOBAL_RULES, QK_NORM_RULES, compileNameMap } from "./tensor-names.js";
import { addScalar, firstRows } from "./transforms.js";
import type { Architecture, ArchitectureMetadata, HFConfig, TensorOptions, TensorPlan } from "./types.js";

const ARCH = "gemma3";

// transformers (5.x) Gemma3TextConfig defaults; published multimodal configs leave most of these out
// of text_config, and Gemma3Model.set_gguf_parameters falls back to the same values.
const GEMMA3_DEFAULTS: DefaultsTable = {
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  rope_local_base_freq: 10_000,
  sliding_window: 4096,
};

function config(c: HFConfig): HFConfig {
  const cfg = requireShape(effectiveConfig(c, GEMMA3_DEFAULTS), ARCH, true);
  if (cfg["attn_logit_softcapping"] !== undefined && cfg["attn_logit_softcapping"] !== null) {
    throw new ConversionError(
      `config.json sets attn_logit_softcapping ${JSON.stringify(cfg["attn_logit_softcapping"])}, which Gemma 3 does not have; ` +
        `llama.cpp's converter refuses it (is this a Gemma 2 checkpoint with the wrong model_type?)`,
    );
  }
  return cfg;
}

function gemma3Metadata(cfg: HFConfig): ArchitectureMetadata {
  const kv = kvBuilder("gemma3");
  textModelParameters(kv, cfg, blockCount(cfg, ARCH));
  // Gemma3Model.set_gguf_parameters re-adds keys after super(); re-added keys keep their place.
  kv.u32("context_length", requireInt(cfg, "max_position_embeddings", ARCH));
  kv.u32("attention.head_count", requireInt(cfg, "num_attention_heads", ARCH));
  kv.f32("attention.layer_norm_rms_epsilon", optionalNumber(cfg, "rms_norm_eps") ?? 1e-6);
  kv.u32("attention.key_length", requireInt(cfg, "head_dim", ARCH));
  kv.u32("attention.value_length", requireInt(cfg, "head_dim", ARCH));
  const theta = fullAttentionRope(ropeParameters(cfg))["rope_theta"];
  kv.f32("rope.freq_base", typeof theta === "number" ? theta : 1_000_000);
  const softcap = optionalNumber(cfg, "final_logit_softcapping");
  if (softcap) kv.f32("final_logit_softcapping", softcap);
  if (cfg["sliding_window_pattern"] !== 1) kv.u32("attention.sliding_window", requireInt(cfg, "sliding_window", ARCH));
  kv.u32("attention.head_count_kv", requireInt(cfg, "num_key_value_heads", ARCH));
  return kv.result();
}

/**
 * Gemma3Model.modify_tensors: token_embd keeps only the tokenizer's rows, and every tensor whose
 * name ends in "norm.weight" gets +1.
 */
function gemma3Modify(cfg: HFConfig, options: TensorOptions | undefined): (item: SourceItem, plan: TensorPlan) => TensorPlan {
  const vocab = options?.tokenizerVocabCount ?? optionalInt(cfg, "vocab_size");
  return (item, plan) => {
    if (item.name.includes("embed_tokens.weight") && vocab !== undefined && plan.shape[0]! > vocab) {
      const rows = plan.shape[0]!;
      return { ...plan, shape: [vocab, ...plan.shape.slice(1)], build: ([w]) => firstRows(w!, rows, vocab) };
    }
    if (item.name.endsWith("norm.weight")) return { ...plan, build: ([w]) => addScalar(w!, 1) };
    return plan;
  };
}

export const gemma3: Architecture = {
  modelTypes: ["gemma3", "gemma3_text"],
  ggufArch: "gemma3",
  hfArchitectures: ["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"],
  summary: (c) => decoderSummary(config(c), ARCH),
  metadata: (c) => gemma3Metadata(config(c)),
  tensors(c, source, options) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...GEMMA3_BLOCK_RULES, ...QK_NORM_RULES], blocks),
      blockCount: blocks,
      modify: gemma3Modify(cfg, options),
      required: {
        global: REQUIRED_GLOBAL,
        block: [...GEMMA3_BLOCK_RULES, ...QK_NORM_RULES].map((r) => r.gguf),
      },
    });
  },
};
