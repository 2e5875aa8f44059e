// mlx_lm/models/qwen2.py: llama blocks with q/k/v biases (o_proj without), head_dim always
// hidden_size // heads, tie_word_embeddings defaulting to True.
import { Binder, attention, blockNorms, decoder, intField, isRotaryInvFreq, mlp } from "./binder.js";
import { pyBool } from "./config.js";
import type { MLXModelFile } from "./types.js";

export const qwen2: MLXModelFile = {
  file: "qwen2",
  modules(config, sources) {
    const arch = "qwen2";
    const hidden = intField(config, "hidden_size", arch);
    const heads = intField(config, "num_attention_heads", arch);
    const tied = pyBool(config, "tie_word_embeddings", true);
    const b = new Binder(arch, sources, (n) => isRotaryInvFreq(n) || (tied && n === "lm_head.weight"));
    return decoder(b, {
      vocab: intField(config, "vocab_size", arch),
      hidden,
      layers: intField(config, "num_hidden_layers", arch),
      tied,
      block: (p) => {
        const kvHeads = intField(config, "num_key_value_heads", arch);
        attention(b, `${p}.self_attn`, { hidden, heads, kvHeads, headDim: Math.floor(hidden / heads), qkvBias: true, oBias: false });
        mlp(b, `${p}.mlp`, { hidden, inter: intField(config, "intermediate_size", arch) });
        blockNorms(b, p, hidden);
      },
    });
  },
};
