// mlx_lm/models/qwen3_moe.py: qwen3 attention; a layer is sparse unless listed in
// mlp_only_layers or off the decoder_sparse_step, and then mlp = { gate, switch_mlp: SwitchGLU }
// with mlp.experts.{e}.{up,down,gate}_proj stacked by sanitize. Its quant_predicate keeps the
// router at 8 bits, group 64. Beyond mlx-lm: transformers 5's pre-stacked experts
// (mlp.experts.gate_up_proj [E, 2*ff, hidden], gate first; mlp.experts.down_proj) are split
// into the same layout, as our GGUF path does.
import { ConversionError } from "@llama-pajamas/artifact";
import { Binder, attention, blockNorms, boolField, decoder, intField, isRotaryInvFreq, mlp, switchGLU } from "./binder.js";
import type { MLXModelFile, SourceRun } from "./types.js";

export const qwen3_moe: MLXModelFile = {
  file: "qwen3_moe",
  modules(config, sources) {
    const arch = "qwen3_moe";
    const hidden = intField(config, "hidden_size", arch);
    const experts = intField(config, "num_experts", arch);
    const moeInter = intField(config, "moe_intermediate_size", arch);
    const step = intField(config, "decoder_sparse_step", arch);
    const dense = config["mlp_only_layers"];
    if (!Array.isArray(dense)) throw new ConversionError(`config.json has no "mlp_only_layers" list, which mlx-lm's qwen3_moe model needs`);
    const tied = boolField(config, "tie_word_embeddings", arch);
    const b = new Binder(arch, sources, (n) => isRotaryInvFreq(n) || (tied && n === "lm_head.weight"));
    const fused = (p: string, part: string): string | undefined =>
      [`${p}.mlp.experts.${part}`, `${p}.mlp.experts.${part}.weight`].find((n) => b.has(n));
    const expertRuns = (p: string, part: "gate_proj" | "up_proj" | "down_proj", shape: number[]): SourceRun[] => {
      if (b.has(`${p}.mlp.experts.0.${part}.weight`)) {
        return b.stack(Array.from({ length: experts }, (_, e) => `${p}.mlp.experts.${e}.${part}.weight`), shape);
      }
      if (part === "down_proj" && fused(p, "down_proj")) return b.tensor(fused(p, "down_proj")!, shape);
      const gateUp = fused(p, "gate_up_proj");
      if (part !== "down_proj" && gateUp) {
        const per = shape[1]! * shape[2]!; // one half of one expert
        return b.runs(gateUp, [experts, 2 * shape[1]!, shape[2]!], () =>
          Array.from({ length: experts }, (_, e) => ({ tensor: gateUp, startElement: (2 * e + (part === "gate_proj" ? 0 : 1)) * per, elementCount: per })),
        );
      }
      return b.stack(Array.from({ length: experts }, (_, e) => `${p}.mlp.experts.${e}.${part}.weight`), shape); // names the missing tensor
    };
    return decoder(b, {
      vocab: intField(config, "vocab_size", arch),
      hidden,
      layers: intField(config, "num_hidden_layers", arch),
      tied,
      block: (p, i) => {
        attention(b, `${p}.self_attn`, {
          hidden,
          heads: intField(config, "num_attention_heads", arch),
          kvHeads: intField(config, "num_key_value_heads", arch),
          headDim: intField(config, "head_dim", arch),
          qkvBias: false,
          oBias: false,
          qkNorm: true,
        });
        blockNorms(b, p, hidden); // Qwen3MoeDecoderLayer assigns the norms before mlp
        if (!dense.includes(i) && experts > 0 && step > 0 && (i + 1) % step === 0) {
          b.plain(`${p}.mlp.gate`, "linear", [experts, hidden]);
          switchGLU(b, `${p}.mlp.switch_mlp`, { experts, hidden, inter: moeInter, source: (part, shape) => expertRuns(p, part, shape) });
        } else {
          mlp(b, `${p}.mlp`, { hidden, inter: intField(config, "intermediate_size", arch) });
        }
      },
    });
  },
  quantPredicate: (path) => (path.endsWith("mlp.gate") ? { group_size: 64, bits: 8 } : true),
};
