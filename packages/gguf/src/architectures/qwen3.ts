// model_type "qwen3" -> GGUF "qwen3". conversion/qwen.py Qwen3Model (a Qwen2Model): TextModel's
// metadata, Llama block names plus per-head q_norm/k_norm, no RoPE permute.
import { type DefaultsTable, blockCount, decoderSummary, effectiveConfig, requireShape } from "./hparams.js";
import { textModelMetadata } from "./kv.js";
import { DENSE_BLOCK, REQUIRED_GLOBAL } from "./llama.js";
import { planDecoder } from "./plan.js";
import { GLOBAL_RULES, LLAMA_BLOCK_RULES, QK_NORM_RULES, compileNameMap } from "./tensor-names.js";
import type { Architecture, HFConfig } from "./types.js";

const ARCH = "qwen3";

// transformers (5.x) Qwen3Config defaults for fields the converter reads.
const QWEN3_DEFAULTS: DefaultsTable = {
  head_dim: 128,
  num_key_value_heads: 32,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
};

const config = (c: HFConfig): HFConfig => requireShape(effectiveConfig(c, QWEN3_DEFAULTS), ARCH, true);

export const QK_NORM_BLOCK = ["blk.{bid}.attn_q_norm", "blk.{bid}.attn_k_norm"];

export const qwen3: Architecture = {
  modelTypes: ["qwen3"],
  ggufArch: "qwen3",
  hfArchitectures: ["Qwen3ForCausalLM", "Qwen3Model"],
  summary: (c) => decoderSummary(config(c), ARCH),
  metadata: (c) => {
    const cfg = config(c);
    return textModelMetadata("qwen3", cfg, blockCount(cfg, ARCH));
  },
  tensors(c, source) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...LLAMA_BLOCK_RULES, ...QK_NORM_RULES], blocks),
      blockCount: blocks,
      required: { global: REQUIRED_GLOBAL, block: [...DENSE_BLOCK, ...QK_NORM_BLOCK] },
    });
  },
};
