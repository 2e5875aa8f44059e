// HF tensor name -> GGUF tensor name, as data (after gguf-py/gguf/tensor_mapping.py).
// A rule gives the canonical GGUF name and the HF spellings, with {bid} for the block index;
// ".weight" / ".bias" suffixes carry over, as in TensorNameMap.get_name(try_suffixes=...).

export interface NameRule {
  gguf: string;
  hf: readonly string[];
}

const rule = (gguf: string, ...hf: string[]): NameRule => ({ gguf, hf });

/** Embedding, final norm and head: every decoder here. */
export const GLOBAL_RULES: readonly NameRule[] = [
  rule("token_embd", "model.embed_tokens"),
  rule("output_norm", "model.norm"),
  rule("output", "lm_head"),
];

/** The Llama attention half-block, shared by llama, mistral, mixtral, qwen2, qwen3, qwen3_moe. */
export const LLAMA_ATTN_RULES: readonly NameRule[] = [
  rule("blk.{bid}.attn_norm", "model.layers.{bid}.input_layernorm"),
  rule("blk.{bid}.attn_q", "model.layers.{bid}.self_attn.q_proj"),
  rule("blk.{bid}.attn_k", "model.layers.{bid}.self_attn.k_proj"),
  rule("blk.{bid}.attn_v", "model.layers.{bid}.self_attn.v_proj"),
  rule("blk.{bid}.attn_output", "model.layers.{bid}.self_attn.o_proj"),
  rule("blk.{bid}.ffn_norm", "model.layers.{bid}.post_attention_layernorm"),
];

/** The dense SwiGLU MLP (the qwen3moe GGUF arch has none, so it leaves these out). */
export const LLAMA_MLP_RULES: readonly NameRule[] = [
  rule("blk.{bid}.ffn_gate", "model.layers.{bid}.mlp.gate_proj"),
  rule("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.up_proj"),
  rule("blk.{bid}.ffn_down", "model.layers.{bid}.mlp.down_proj"),
];

export const LLAMA_BLOCK_RULES: readonly NameRule[] = [...LLAMA_ATTN_RULES, ...LLAMA_MLP_RULES];

/** Per-head RMSNorm of q and k (qwen3, qwen3_moe, gemma3). */
export const QK_NORM_RULES: readonly NameRule[] = [
  rule("blk.{bid}.attn_q_norm", "model.layers.{bid}.self_attn.q_norm"),
  rule("blk.{bid}.attn_k_norm", "model.layers.{bid}.self_attn.k_norm"),
];

/** Mixtral's router and the stacked-expert names LlamaModel.modify_tensors feeds the map. */
export const MIXTRAL_MOE_RULES: readonly NameRule[] = [
  rule("blk.{bid}.ffn_gate_inp", "model.layers.{bid}.block_sparse_moe.gate"),
  rule("blk.{bid}.ffn_gate_exps", "layers.{bid}.feed_forward.experts.w1"),
  rule("blk.{bid}.ffn_down_exps", "layers.{bid}.feed_forward.experts.w2"),
  rule("blk.{bid}.ffn_up_exps", "layers.{bid}.feed_forward.experts.w3"),
];

/** Qwen MoE router and stacked experts (Qwen2MoeModel.modify_tensors merged names). */
export const QWEN_MOE_RULES: readonly NameRule[] = [
  rule("blk.{bid}.ffn_gate_inp", "model.layers.{bid}.mlp.gate"),
  rule("blk.{bid}.ffn_gate_exps", "model.layers.{bid}.mlp.experts.gate_proj"),
  rule("blk.{bid}.ffn_down_exps", "model.layers.{bid}.mlp.experts.down_proj"),
  rule("blk.{bid}.ffn_up_exps", "model.layers.{bid}.mlp.experts.up_proj"),
];

/** Phi-3 keeps q/k/v and gate/up fused; llama.cpp's phi3 graph reads them fused. */
export const PHI3_BLOCK_RULES: readonly NameRule[] = [
  rule("blk.{bid}.attn_norm", "model.layers.{bid}.input_layernorm"),
  rule("blk.{bid}.attn_qkv", "model.layers.{bid}.self_attn.qkv_proj"),
  rule("blk.{bid}.attn_output", "model.layers.{bid}.self_attn.o_proj"),
  rule("blk.{bid}.ffn_norm", "model.layers.{bid}.post_attention_layernorm"),
  rule("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.gate_up_proj"),
  rule("blk.{bid}.ffn_down", "model.layers.{bid}.mlp.down_proj"),
];

/** Gemma 3's sandwich norms: post_attention_layernorm is NOT ffn_norm here. */
export const GEMMA3_BLOCK_RULES: readonly NameRule[] = [
  rule("blk.{bid}.attn_norm", "model.layers.{bid}.input_layernorm"),
  rule("blk.{bid}.attn_q", "model.layers.{bid}.self_attn.q_proj"),
  rule("blk.{bid}.attn_k", "model.layers.{bid}.self_attn.k_proj"),
  rule("blk.{bid}.attn_v", "model.layers.{bid}.self_attn.v_proj"),
  rule("blk.{bid}.attn_output", "model.layers.{bid}.self_attn.o_proj"),
  rule("blk.{bid}.post_attention_norm", "model.layers.{bid}.post_attention_layernorm"),
  rule("blk.{bid}.ffn_norm", "model.layers.{bid}.pre_feedforward_layernorm"),
  rule("blk.{bid}.post_ffw_norm", "model.layers.{bid}.post_feedforward_layernorm"),
  rule("blk.{bid}.ffn_gate", "model.layers.{bid}.mlp.gate_proj"),
  rule("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.up_proj"),
  rule("blk.{bid}.ffn_down", "model.layers.{bid}.mlp.down_proj"),
];

export interface MappedName {
  gguf: string;
  bid: number | undefined;
}

export interface NameMap {
  /** The GGUF name for an HF name, or undefined when no rule matches (map_tensor_name fails). */
  map(hfName: string): MappedName | undefined;
  /** The first HF spelling (with `suffix`) of a GGUF base name, for error messages. */
  hfNameOf(ggufBase: string, suffix?: string): string | undefined;
}

/**
 * Expands the rules for blocks 0..blockCount-1 into a lookup table, like TensorNameMap: a block
 * index past the config's block count does not map. A fresh table per call.
 */
export function compileNameMap(rules: readonly NameRule[], blockCount: number): NameMap {
  const table = new Map<string, MappedName>();
  const reverse = new Map<string, string>();
  for (const r of rules) {
    const blocks = r.gguf.includes("{bid}") ? blockCount : 1;
    for (let bid = 0; bid < blocks; bid++) {
      const sub = (s: string): string => s.replaceAll("{bid}", String(bid));
      const gguf = sub(r.gguf);
      const b = r.gguf.includes("{bid}") ? bid : undefined;
      for (const hf of r.hf) if (!table.has(sub(hf))) table.set(sub(hf), { gguf, bid: b });
      if (r.hf[0] !== undefined && !reverse.has(gguf)) reverse.set(gguf, sub(r.hf[0]));
    }
  }
  return {
    map(hfName) {
      const exact = table.get(hfName);
      if (exact) return exact;
      for (const suffix of [".weight", ".bias"]) {
        if (!hfName.endsWith(suffix)) continue;
        const hit = table.get(hfName.slice(0, -suffix.length));
        if (hit) return { gguf: hit.gguf + suffix, bid: hit.bid };
      }
      return undefined;
    },
    hfNameOf(ggufBase, suffix = ".weight") {
      const hf = reverse.get(ggufBase);
      return hf === undefined ? undefined : hf + suffix;
    },
  };
}
