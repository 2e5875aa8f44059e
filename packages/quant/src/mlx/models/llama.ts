// mlx_lm/models/llama.py (also mistral, via MODEL_REMAPPING): HF names unchanged; sanitize drops
// rotary_emb.inv_freq and, when tied, lm_head.weight. tie_word_embeddings defaults to True.
import type { HFConfig } from "@llama-pajamas/gguf/architectures/types.js";
import { Binder, attention, blockNorms, decoder, intField, isRotaryInvFreq, mlp } from "./binder.js";
import { pyBool } from "./config.js";
import type { MLXModelFile } from "./types.js";

export const llama: MLXModelFile = {
  file: "llama",
  modules(config: HFConfig, sources) {
    const arch = "llama";
    const hidden = intField(config, "hidden_size", arch);
    const heads = intField(config, "num_attention_heads", arch);
    const tied = pyBool(config, "tie_word_embeddings", true);
    // head_dim = args.head_dim or hidden_size // n_heads
    const headDim = typeof config["head_dim"] === "number" && config["head_dim"] > 0 ? config["head_dim"] : Math.floor(hidden / heads);
    const qkvBias = pyBool(config, "attention_bias", false);
    const b = new Binder(arch, sources, (n) => isRotaryInvFreq(n) || (tied && n === "lm_head.weight"));
    return decoder(b, {
      vocab: intField(config, "vocab_size", arch),
      hidden,
      layers: intField(config, "num_hidden_layers", arch),
      tied,
      block: (p) => {
        attention(b, `${p}.self_attn`, { hidden, heads, kvHeads: intField(config, "num_key_value_heads", arch, heads), headDim, qkvBias, oBias: qkvBias });
        mlp(b, `${p}.mlp`, { hidden, inter: intField(config, "intermediate_size", arch), bias: pyBool(config, "mlp_bias", false) });
        blockNorms(b, p, hidden);
      },
    });
  },
};
