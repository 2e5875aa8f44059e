// mlx_lm/models/mixtral.py: llama attention (head_dim = hidden // heads), then
// block_sparse_moe = { gate: Linear(hidden, experts), switch_mlp: SwitchGLU }. sanitize stacks
// experts.{e}.w1/w2/w3 into switch_mlp.gate_proj/down_proj/up_proj [experts, out, in].
// Every ModelArgs field has a default (vocab 32000, kv heads 8, 8 experts, untied).
import { Binder, attention, blockNorms, decoder, intField, isRotaryInvFreq, switchGLU } from "./binder.js";
import { pyBool } from "./config.js";
import type { MLXModelFile } from "./types.js";

const HF_PART = { gate_proj: "w1", down_proj: "w2", up_proj: "w3" } as const;

export const mixtral: MLXModelFile = {
  file: "mixtral",
  modules(config, sources) {
    const arch = "mixtral";
    const hidden = intField(config, "hidden_size", arch, 4096);
    const heads = intField(config, "num_attention_heads", arch, 32);
    const experts = intField(config, "num_local_experts", arch, 8);
    const inter = intField(config, "intermediate_size", arch, 14336);
    const tied = pyBool(config, "tie_word_embeddings", false);
    const b = new Binder(arch, sources, (n) => isRotaryInvFreq(n) || (tied && n === "lm_head.weight"));
    return decoder(b, {
      vocab: intField(config, "vocab_size", arch, 32000),
      hidden,
      layers: intField(config, "num_hidden_layers", arch, 32),
      tied,
      block: (p) => {
        const kvHeads = intField(config, "num_key_value_heads", arch, 8);
        attention(b, `${p}.self_attn`, { hidden, heads, kvHeads, headDim: Math.floor(hidden / heads), qkvBias: false, oBias: false });
        b.plain(`${p}.block_sparse_moe.gate`, "linear", [experts, hidden]);
        switchGLU(b, `${p}.block_sparse_moe.switch_mlp`, {
          experts,
          hidden,
          inter,
          source: (part, shape) => b.stack(Array.from({ length: experts }, (_, e) => `${p}.block_sparse_moe.experts.${e}.${HF_PART[part]}.weight`), shape),
        });
        blockNorms(b, p, hidden);
      },
    });
  },
};
