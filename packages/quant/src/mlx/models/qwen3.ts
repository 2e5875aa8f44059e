// mlx_lm/models/qwen3.py: llama blocks plus per-head q_norm/k_norm; head_dim and
// tie_word_embeddings are required fields of its ModelArgs.
import { Binder, attention, blockNorms, boolField, decoder, intField, isRotaryInvFreq, mlp } from "./binder.js";
import type { MLXModelFile } from "./types.js";

export const qwen3: MLXModelFile = {
  file: "qwen3",
  modules(config, sources) {
    const arch = "qwen3";
    const hidden = intField(config, "hidden_size", arch);
    const tied = boolField(config, "tie_word_embeddings", arch);
    const b = new Binder(arch, sources, (n) => isRotaryInvFreq(n) || (tied && n === "lm_head.weight"));
    return decoder(b, {
      vocab: intField(config, "vocab_size", arch),
      hidden,
      layers: intField(config, "num_hidden_layers", arch),
      tied,
      block: (p) => {
        attention(b, `${p}.self_attn`, {
          hidden,
          heads: intField(config, "num_attention_heads", arch),
          kvHeads: intField(config, "num_key_value_heads", arch),
          headDim: intField(config, "head_dim", arch),
          qkvBias: false,
          oBias: false,
          qkNorm: true,
        });
        mlp(b, `${p}.mlp`, { hidden, inter: intField(config, "intermediate_size", arch) });
        blockNorms(b, p, hidden);
      },
    });
  },
};
