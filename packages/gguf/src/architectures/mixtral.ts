// model_type "mixtral" -> GGUF "llama" with experts. conversion/llama.py LlamaModel: the same
// metadata and q/k permute as llama, plus per-expert w1/w2/w3 stacked into 3-D tensors.
import { type DefaultsTable, blockCount, decoderSummary, requireInt } from "./hparams.js";
import { DENSE_BLOCK, REQUIRED_GLOBAL, llamaConfig, llamaFilter, llamaGeneratedTensors, llamaMetadata, llamaPermute } from "./llama.js";
import { type ExpertSpec, planDecoder } from "./plan.js";
import { GLOBAL_RULES, LLAMA_BLOCK_RULES, MIXTRAL_MOE_RULES, compileNameMap } from "./tensor-names.js";
import type { Architecture, HFConfig } from "./types.js";

const ARCH = "mixtral";

// transformers (5.x) MixtralConfig defaults (it leaves head_dim unset: no key_length is written).
const MIXTRAL_DEFAULTS: DefaultsTable = {
  num_key_value_heads: 8,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  max_position_embeddings: 4096 * 32,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
};

const config = (c: HFConfig): HFConfig => llamaConfig(c, MIXTRAL_DEFAULTS, ARCH);

/**
 * LlamaModel.modify_tensors: every tensor whose name contains "block_sparse_moe.experts" is
 * buffered per layer; once a layer has num_local_experts * 3 of them, w1, w2, w3 are stacked
 * (torch.stack, dim 0) and written as ffn_gate_exps, ffn_down_exps, ffn_up_exps, in that order.
 */
export function mixtralExperts(count: number): ExpertSpec {
  return {
    match: (name) => name.includes("block_sparse_moe.experts"),
    count,
    expertName: (bid, xid, part) => `model.layers.${bid}.block_sparse_moe.experts.${xid}.${part}.weight`,
    parts: ["w1", "w2", "w3"].map((part) => ({ part, merged: (bid: number) => `layers.${bid}.feed_forward.experts.${part}.weight` })),
  };
}

const MOE_BLOCK = [
  ...DENSE_BLOCK.filter((n) => !/ffn_(gate|up|down)$/.test(n)),
  "blk.{bid}.ffn_gate_inp",
  "blk.{bid}.ffn_gate_exps",
  "blk.{bid}.ffn_down_exps",
  "blk.{bid}.ffn_up_exps",
];

export const mixtral: Architecture = {
  modelTypes: ["mixtral"],
  ggufArch: "llama",
  hfArchitectures: ["MixtralForCausalLM"],
  summary: (c) => decoderSummary(config(c), ARCH),
  metadata: (c) => llamaMetadata(config(c), ARCH),
  tensors(c, source) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...LLAMA_BLOCK_RULES, ...MIXTRAL_MOE_RULES], blocks),
      blockCount: blocks,
      rename: llamaFilter,
      generated: llamaGeneratedTensors(cfg, ARCH),
      modify: llamaPermute(cfg, ARCH),
      experts: mixtralExperts(requireInt(cfg, "num_local_experts", ARCH)),
      required: { global: REQUIRED_GLOBAL, block: MOE_BLOCK },
      keepF32: ["blk.{bid}.ffn_gate_inp"],
    });
  },
};
