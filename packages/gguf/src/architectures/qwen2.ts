// model_type "qwen2" -> GGUF "qwen2". conversion/qwen.py Qwen2Model: TextModel's metadata as is,
// tensors copied by name (q/k/v biases included), no RoPE permute.
import { type DefaultsTable, blockCount, decoderSummary, effectiveConfig, requireShape } from "./hparams.js";
import { textModelMetadata } from "./kv.js";
import { DENSE_BLOCK, REQUIRED_GLOBAL } from "./llama.js";
import { planDecoder, textModelFilter } from "./plan.js";
import { GLOBAL_RULES, LLAMA_BLOCK_RULES, compileNameMap } from "./tensor-names.js";
import type { Architecture, HFConfig } from "./types.js";

const ARCH = "qwen2";

// transformers (5.x) Qwen2Config defaults for fields the converter reads.
const QWEN2_DEFAULTS: DefaultsTable = {
  num_key_value_heads: 32,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
};

const config = (c: HFConfig): HFConfig => requireShape(effectiveConfig(c, QWEN2_DEFAULTS), ARCH, true);

export const qwen2: Architecture = {
  modelTypes: ["qwen2"],
  ggufArch: "qwen2",
  hfArchitectures: ["Qwen2ForCausalLM", "Qwen2Model"],
  summary: (c) => decoderSummary(config(c), ARCH),
  // Qwen2Model.set_gguf_parameters adds only a pooling type, for sentence-transformers
  // checkpoints (modules.json), which are not language models and not handled here.
  metadata: (c) => {
    const cfg = config(c);
    return textModelMetadata("qwen2", cfg, blockCount(cfg, ARCH));
  },
  tensors(c, source) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    // Qwen2Model.modify_tensors: the bare "Qwen2Model" class saves names without "model.".
    const bare = Array.isArray(cfg["architectures"]) && cfg["architectures"][0] === "Qwen2Model";
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...LLAMA_BLOCK_RULES], blocks),
      blockCount: blocks,
      rename: (name) => {
        const n = textModelFilter(name);
        return n !== undefined && bare ? `model.${n}` : n;
      },
      required: { global: REQUIRED_GLOBAL, block: DENSE_BLOCK },
    });
  },
};
