// model_type "phi3" -> GGUF "phi3". conversion/phi.py Phi3MiniModel. Phi-3 keeps q/k/v and
// gate/up fused (attn_qkv, ffn_up = [gate; up]); llama.cpp's phi3 graph splits them at run time,
// so tensors copy through by name. Its own set_gguf_parameters (no TextModel keys), and LongRoPE
// checkpoints get rope_factors_long/short tensors plus an attn_factor KV.
import { ConversionError } from "@llama-pajamas/artifact";
import { type DefaultsTable, blockCount, decoderSummary, effectiveConfig, fullAttentionRope, kvHeadsFromHeads, optionalInt, requireInt, requireNumber, requireShape, ropeParameters } from "./hparams.js";
import { kvBuilder } from "./kv.js";
import { REQUIRED_GLOBAL } from "./llama.js";
import { planDecoder } from "./plan.js";
import { GLOBAL_RULES, PHI3_BLOCK_RULES, compileNameMap } from "./tensor-names.js";
import { GGUFValueType } from "../formats/gguf-types.js";
import type { Architecture, ArchitectureMetadata, HFConfig, TensorPlan } from "./types.js";

const ARCH = "phi3";

// transformers (5.x) Phi3Config defaults for fields the converter reads.
const PHI3_DEFAULTS: DefaultsTable = {
  num_key_value_heads: kvHeadsFromHeads,
  max_position_embeddings: 4096,
  original_max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
};

const config = (c: HFConfig): HFConfig => requireShape(effectiveConfig(c, PHI3_DEFAULTS), ARCH, true);

interface Phi3Rope {
  maxPos: number;
  origMaxPos: number;
  ropeDims: number;
  theta: number;
  params: Record<string, unknown>;
}

function phi3Rope(cfg: HFConfig): Phi3Rope {
  const params = ropeParameters(cfg);
  const nEmbd = requireInt(cfg, ["hidden_size", "n_embd"], ARCH);
  const nHead = requireInt(cfg, ["num_attention_heads", "n_head"], ARCH);
  const orig = params["original_max_position_embeddings"];
  if (typeof orig !== "number") {
    throw new ConversionError(`phi3 needs original_max_position_embeddings in config.json (top level or in rope_scaling)`);
  }
  const pct = typeof params["partial_rotary_factor"] === "number" ? params["partial_rotary_factor"] : 1.0;
  const theta = fullAttentionRope(params)["rope_theta"];
  if (typeof theta !== "number") throw new ConversionError(`phi3 needs rope_theta in config.json`);
  return {
    maxPos: requireInt(cfg, ["n_positions", "max_position_embeddings"], ARCH),
    origMaxPos: orig,
    ropeDims: Math.floor(Math.trunc(pct * nEmbd) / nHead),
    theta,
    params,
  };
}

/**
 * Phi3MiniModel.generate_extra_tensors: with rope_scaling.long_factor, the attention factor and
 * both factor lists, validated as the converter does.
 */
function longRope(r: Phi3Rope): { attnFactor: number; long: number[]; short: number[] } | undefined {
  const long = r.params["long_factor"];
  if (!Array.isArray(long) || long.length === 0) return undefined;
  const scale = r.maxPos / r.origMaxPos;
  const type = typeof r.params["rope_type"] === "string" ? (r.params["rope_type"] as string).toLowerCase() : "";
  if (type === "") throw new ConversionError("phi3 LongRoPE config has long_factor but no rope_scaling.type");
  let attnFactor: number;
  if (type === "su" || type === "longrope") {
    attnFactor = scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(r.origMaxPos)) : 1.0;
  } else if (type === "yarn") {
    attnFactor = scale > 1 ? 0.1 * Math.log(scale) + 1.0 : 1.0;
  } else {
    throw new ConversionError(`phi3 rope scaling type "${type}" is not supported (llama.cpp handles su, longrope, yarn)`);
  }
  const short = r.params["short_factor"];
  if (!Array.isArray(short)) throw new ConversionError("phi3 LongRoPE config has long_factor but no rope_scaling.short_factor");
  if (long.length !== short.length || long.length !== r.ropeDims / 2) {
    throw new ConversionError(
      `phi3 rope long/short factors must have ${r.ropeDims / 2} entries; long_factor has ${long.length}, short_factor ${short.length}`,
    );
  }
  const nums = (a: unknown[], what: string): number[] =>
    a.map((v) => {
      if (typeof v !== "number") throw new ConversionError(`phi3 rope_scaling.${what} holds a non-number ${JSON.stringify(v)}`);
      return v;
    });
  return { attnFactor, long: nums(long, "long_factor"), short: nums(short, "short_factor") };
}

function phi3Metadata(cfg: HFConfig): ArchitectureMetadata {
  const r = phi3Rope(cfg);
  const kv = kvBuilder("phi3");
  const lr = longRope(r);
  // Added during prepare_tensors, i.e. before every general.* key but the architecture.
  if (lr) kv.early({ key: "phi3.rope.scaling.attn_factor", type: GGUFValueType.FLOAT32, value: lr.attnFactor });
  kv.u32("context_length", r.maxPos);
  kv.u32("rope.scaling.original_context_length", r.origMaxPos);
  kv.u32("embedding_length", requireInt(cfg, ["hidden_size", "n_embd"], ARCH));
  kv.u32("feed_forward_length", requireInt(cfg, "intermediate_size", ARCH));
  kv.u32("block_count", blockCount(cfg, ARCH));
  kv.u32("attention.head_count", requireInt(cfg, ["num_attention_heads", "n_head"], ARCH));
  kv.u32("attention.head_count_kv", requireInt(cfg, ["num_key_value_heads", "n_head_kv"], ARCH));
  kv.f32("attention.layer_norm_rms_epsilon", requireNumber(cfg, "rms_norm_eps", ARCH));
  kv.u32("rope.dimension_count", r.ropeDims);
  kv.f32("rope.freq_base", r.theta);
  kv.fileType();
  // 0 marks "no sliding window" (Phi-4 vs other phi3 models).
  kv.u32("attention.sliding_window", optionalInt(cfg, "sliding_window") ?? 0);
  return kv.result();
}

function phi3Generated(cfg: HFConfig): TensorPlan[] {
  const lr = longRope(phi3Rope(cfg));
  if (!lr) return [];
  const plan = (name: string, values: number[]): TensorPlan => ({
    name,
    sources: [],
    shape: [values.length],
    generate: () => Float32Array.from(values),
  });
  return [plan("rope_factors_long.weight", lr.long), plan("rope_factors_short.weight", lr.short)];
}

export const phi3: Architecture = {
  modelTypes: ["phi3"],
  ggufArch: "phi3",
  hfArchitectures: ["Phi3ForCausalLM"],
  summary: (c) => decoderSummary(config(c), ARCH),
  metadata: (c) => phi3Metadata(config(c)),
  tensors(c, source) {
    const cfg = config(c);
    const blocks = blockCount(cfg, ARCH);
    return planDecoder({
      arch: ARCH,
      source,
      names: compileNameMap([...GLOBAL_RULES, ...PHI3_BLOCK_RULES], blocks),
      blockCount: blocks,
      generated: phi3Generated(cfg),
      required: {
        global: REQUIRED_GLOBAL,
        block: PHI3_BLOCK_RULES.map((r) => r.gguf),
      },
    });
  },
};
