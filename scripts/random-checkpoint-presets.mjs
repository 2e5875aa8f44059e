// Presets for make-random-checkpoint.mjs: config.json / generation_config.json as the published
// checkpoints of each family write them (classic keys: rope_theta, rope_scaling, torch_dtype, as
// the fixtures in shared/fixtures use), and the tensor list in PyTorch module order.

/** A float that config.json writes Python-style (1000000.0, 1e-06), as transformers does. */
export class PyFloat {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}
/** @param {number} v */
const f = (v) => new PyFloat(v);

const VERSION = "5.17.0";
const QWEN_TOKENIZER = { from: "qwen3-tiny", files: ["tokenizer.json", "tokenizer_config.json"], vocab: 151936 };
const LLAMA2_TOKENIZER = { from: "llama-tiny", files: ["tokenizer.json", "tokenizer_config.json"], vocab: 32000 };

/**
 * @typedef {{ name: string, shape: number[], kind: "matrix" | "norm" | "bias" }} TensorSpec
 * @typedef {{ config: Record<string, unknown>, generation: Record<string, unknown>,
 *   tokenizer: { from: string, files: string[], vocab: number, sentencePiece?: boolean },
 *   normCenter?: number, tensors: () => TensorSpec[] }} Preset
 */

/** @param {string} name @param {number[]} shape @returns {TensorSpec} */
const mat = (name, shape) => ({ name, shape, kind: "matrix" });
/** @param {string} name @param {number} n @returns {TensorSpec} */
const norm = (name, n) => ({ name, shape: [n], kind: "norm" });
/** @param {string} name @param {number} n @returns {TensorSpec} */
const bias = (name, n) => ({ name, shape: [n], kind: "bias" });

/**
 * A Llama-shaped decoder's tensors in module registration order (what state_dict() yields and
 * save_pretrained shards by).
 * @param {{ layers: number, hidden: number, heads: number, kvHeads: number, headDim: number,
 *   ff: number, vocab: number, tied: boolean, qkvBias?: boolean, qkNorm?: boolean,
 *   moe?: { experts: number, ff: number }, fusedPhi3?: boolean, sandwichNorms?: boolean }} s
 * @returns {TensorSpec[]}
 */
function decoderTensors(s) {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  /** @type {TensorSpec[]} */
  const t = [mat("model.embed_tokens.weight", [s.vocab, s.hidden])];
  for (let b = 0; b < s.layers; b++) {
    const p = `model.layers.${b}`;
    if (s.fusedPhi3) {
      t.push(mat(`${p}.self_attn.o_proj.weight`, [s.hidden, q]), mat(`${p}.self_attn.qkv_proj.weight`, [q + 2 * kv, s.hidden]));
      t.push(mat(`${p}.mlp.gate_up_proj.weight`, [2 * s.ff, s.hidden]), mat(`${p}.mlp.down_proj.weight`, [s.hidden, s.ff]));
    } else {
      for (const [n, rows] of /** @type {[string, number][]} */ ([["q_proj", q], ["k_proj", kv], ["v_proj", kv]])) {
        t.push(mat(`${p}.self_attn.${n}.weight`, [rows, s.hidden]));
        if (s.qkvBias) t.push(bias(`${p}.self_attn.${n}.bias`, rows));
      }
      t.push(mat(`${p}.self_attn.o_proj.weight`, [s.hidden, q]));
      if (s.qkNorm) t.push(norm(`${p}.self_attn.q_norm.weight`, s.headDim), norm(`${p}.self_attn.k_norm.weight`, s.headDim));
      if (s.moe) {
        t.push(mat(`${p}.mlp.gate.weight`, [s.moe.experts, s.hidden]));
        for (let e = 0; e < s.moe.experts; e++) {
          const x = `${p}.mlp.experts.${e}`;
          t.push(mat(`${x}.gate_proj.weight`, [s.moe.ff, s.hidden]), mat(`${x}.up_proj.weight`, [s.moe.ff, s.hidden]));
          t.push(mat(`${x}.down_proj.weight`, [s.hidden, s.moe.ff]));
        }
      } else {
        t.push(mat(`${p}.mlp.gate_proj.weight`, [s.ff, s.hidden]), mat(`${p}.mlp.up_proj.weight`, [s.ff, s.hidden]));
        t.push(mat(`${p}.mlp.down_proj.weight`, [s.hidden, s.ff]));
      }
    }
    t.push(norm(`${p}.input_layernorm.weight`, s.hidden), norm(`${p}.post_attention_layernorm.weight`, s.hidden));
    if (s.sandwichNorms) t.push(norm(`${p}.pre_feedforward_layernorm.weight`, s.hidden), norm(`${p}.post_feedforward_layernorm.weight`, s.hidden));
  }
  t.push(norm("model.norm.weight", s.hidden));
  if (!s.tied) t.push(mat("lm_head.weight", [s.vocab, s.hidden]));
  return t;
}

const TINY = { layers: 2, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ff: 768 };

/** LongRoPE factor lists of a Phi-3-128k style config (rope dims 64 -> 32 each). */
const longFactors = Array.from({ length: 32 }, (_, i) => f(Math.round((1 + i * 0.25) * 100) / 100));
const shortFactors = Array.from({ length: 32 }, (_, i) => f(Math.round((1 + i * 0.01) * 100) / 100));

/** @type {Record<string, Preset>} */
export const PRESETS = {
  // MistralForCausalLM, Mistral-7B-v0.3 layout at toy scale, untied head, Llama-2 tokenizer.
  mistral: {
    config: {
      architectures: ["MistralForCausalLM"], attention_dropout: f(0), bos_token_id: 1, eos_token_id: 2, head_dim: 64,
      hidden_act: "silu", hidden_size: 256, initializer_range: f(0.02), intermediate_size: 768,
      max_position_embeddings: 32768, model_type: "mistral", num_attention_heads: 4, num_hidden_layers: 2,
      num_key_value_heads: 2, rms_norm_eps: f(1e-5), rope_theta: f(1e6), sliding_window: null,
      tie_word_embeddings: false, torch_dtype: "bfloat16", transformers_version: VERSION, use_cache: true, vocab_size: 32000,
    },
    generation: { _from_model_config: true, bos_token_id: 1, eos_token_id: 2, transformers_version: VERSION },
    tokenizer: LLAMA2_TOKENIZER,
    tensors: () => decoderTensors({ ...TINY, vocab: 32000, tied: false }),
  },
  // Qwen2ForCausalLM, Qwen2.5-0.5B layout: q/k/v biases, tied embeddings.
  qwen2: {
    config: {
      architectures: ["Qwen2ForCausalLM"], attention_dropout: f(0), bos_token_id: 151643, eos_token_id: 151645,
      hidden_act: "silu", hidden_size: 256, initializer_range: f(0.02), intermediate_size: 768,
      max_position_embeddings: 32768, max_window_layers: 2, model_type: "qwen2", num_attention_heads: 4,
      num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: f(1e-6), rope_scaling: null, rope_theta: f(1e6),
      sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "bfloat16", transformers_version: VERSION,
      use_cache: true, use_sliding_window: false, vocab_size: 151936,
    },
    generation: { bos_token_id: 151643, eos_token_id: 151645, transformers_version: VERSION },
    tokenizer: QWEN_TOKENIZER,
    tensors: () => decoderTensors({ ...TINY, vocab: 151936, tied: true, qkvBias: true }),
  },
  // Qwen3MoeForCausalLM, Qwen3-30B-A3B layout: 8 experts of 256, top 2, per-expert tensors.
  qwen3_moe: {
    config: {
      architectures: ["Qwen3MoeForCausalLM"], attention_bias: false, attention_dropout: f(0), bos_token_id: 151643,
      decoder_sparse_step: 1, eos_token_id: 151645, head_dim: 64, hidden_act: "silu", hidden_size: 256,
      initializer_range: f(0.02), intermediate_size: 768, max_position_embeddings: 40960, max_window_layers: 2,
      mlp_only_layers: [], model_type: "qwen3_moe", moe_intermediate_size: 256, norm_topk_prob: true,
      num_attention_heads: 4, num_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 2, num_key_value_heads: 2,
      output_router_logits: false, rms_norm_eps: f(1e-6), rope_scaling: null, rope_theta: f(1e6),
      router_aux_loss_coef: f(0.001), sliding_window: null, tie_word_embeddings: false, torch_dtype: "bfloat16",
      transformers_version: VERSION, use_cache: true, use_sliding_window: false, vocab_size: 151936,
    },
    generation: { bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643, transformers_version: VERSION },
    tokenizer: QWEN_TOKENIZER,
    tensors: () => decoderTensors({ ...TINY, vocab: 151936, tied: false, qkNorm: true, moe: { experts: 8, ff: 256 } }),
  },
  // Phi3ForCausalLM, Phi-3-mini-128k layout: fused qkv and gate_up, LongRoPE factors.
  phi3: {
    config: {
      architectures: ["Phi3ForCausalLM"], attention_bias: false, attention_dropout: f(0), bos_token_id: 1,
      embd_pdrop: f(0), eos_token_id: 2, hidden_act: "silu", hidden_size: 256, initializer_range: f(0.02),
      intermediate_size: 768, max_position_embeddings: 131072, model_type: "phi3", num_attention_heads: 4,
      num_hidden_layers: 2, num_key_value_heads: 4, original_max_position_embeddings: 4096, pad_token_id: null,
      resid_pdrop: f(0), rms_norm_eps: f(1e-5),
      rope_scaling: { long_factor: longFactors, short_factor: shortFactors, type: "longrope" },
      rope_theta: f(10000), sliding_window: 262144, tie_word_embeddings: false, torch_dtype: "bfloat16",
      transformers_version: VERSION, use_cache: true, vocab_size: 32000,
    },
    generation: { _from_model_config: true, bos_token_id: 1, eos_token_id: 2, transformers_version: VERSION },
    tokenizer: { ...LLAMA2_TOKENIZER, sentencePiece: true },
    tensors: () => decoderTensors({ ...TINY, kvHeads: 4, vocab: 32000, tied: false, fusedPhi3: true }),
  },
  // Gemma3ForCausalLM (model_type gemma3_text), gemma-3-1b layout: MQA, q/k norms, sandwich norms.
  gemma3: {
    config: {
      architectures: ["Gemma3ForCausalLM"], attention_bias: false, attention_dropout: f(0), attn_logit_softcapping: null,
      bos_token_id: 1, cache_implementation: "hybrid", eos_token_id: 2, final_logit_softcapping: null, head_dim: 64,
      hidden_activation: "gelu_pytorch_tanh", hidden_size: 256, initializer_range: f(0.02), intermediate_size: 768,
      max_position_embeddings: 32768, model_type: "gemma3_text", num_attention_heads: 4, num_hidden_layers: 2,
      num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 64, rms_norm_eps: f(1e-6),
      rope_local_base_freq: f(10000), rope_scaling: null, rope_theta: f(1e6), sliding_window: 512,
      sliding_window_pattern: 6, torch_dtype: "bfloat16", transformers_version: VERSION, use_cache: true, vocab_size: 32000,
    },
    generation: { _from_model_config: true, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0, transformers_version: VERSION },
    tokenizer: { ...LLAMA2_TOKENIZER, sentencePiece: true },
    // Gemma's RMSNorm scales by (1 + w), so its norm weights sit around 0, not 1.
    normCenter: 0,
    tensors: () => decoderTensors({ ...TINY, kvHeads: 1, vocab: 32000, tied: true, qkNorm: true, sandwichNorms: true }),
  },
  // Qwen3-8B at full size (8.2B parameters, 16.4 GB bf16) for speed benchmarks.
  "qwen3-8b": {
    config: {
      architectures: ["Qwen3ForCausalLM"], attention_bias: false, attention_dropout: f(0), bos_token_id: 151643,
      eos_token_id: 151645, head_dim: 128, hidden_act: "silu", hidden_size: 4096, initializer_range: f(0.02),
      intermediate_size: 12288, max_position_embeddings: 40960, max_window_layers: 36, model_type: "qwen3",
      num_attention_heads: 32, num_hidden_layers: 36, num_key_value_heads: 8, rms_norm_eps: f(1e-6),
      rope_scaling: null, rope_theta: f(1e6), sliding_window: null, tie_word_embeddings: false,
      torch_dtype: "bfloat16", transformers_version: VERSION, use_cache: true, use_sliding_window: false, vocab_size: 151936,
    },
    generation: {
      bos_token_id: 151643, do_sample: true, eos_token_id: [151645, 151643], pad_token_id: 151643,
      temperature: f(0.6), top_k: 20, top_p: f(0.95), transformers_version: VERSION,
    },
    tokenizer: QWEN_TOKENIZER,
    tensors: () =>
      decoderTensors({ layers: 36, hidden: 4096, heads: 32, kvHeads: 8, headDim: 128, ff: 12288, vocab: 151936, tied: false, qkNorm: true }),
  },
};
