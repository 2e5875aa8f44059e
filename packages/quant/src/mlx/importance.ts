// Which importance vector an MLX module takes: the imatrix is keyed by GGUF tensor names
// (blk.0.attn_q.weight ...), MLX modules by mlx-lm's paths (model.layers.0.self_attn.q_proj).
// The dense names are the HF names, mapped by the GGUF converter's own rules; the rest are
// mlx-lm's renames (routers, and SwitchGLU's switch_mlp for stacked experts), which map onto
// llama.cpp's stacked-expert tensors: the same [experts, rows, cols] layout, experts in the
// same order, so expert e takes the imatrix's slice e. Input columns are never permuted by the
// GGUF conversion (llama's q/k rope permutation moves rows), so column j is column j.
import { GLOBAL_RULES, LLAMA_BLOCK_RULES, type NameRule, compileNameMap } from "@llama-pajamas/gguf/architectures/tensor-names.js";
import { imatrixForTensor } from "../quantize/imatrix.js";
import type { MLXModule } from "./models/index.js";

/** mlx-lm's routers and SwitchGLU projections, by the GGUF names llama.cpp gives them. */
const MLX_MOE_RULES: readonly NameRule[] = [
  { gguf: "blk.{bid}.ffn_gate_inp", hf: ["model.layers.{bid}.mlp.gate", "model.layers.{bid}.block_sparse_moe.gate"] },
  ...(["gate", "up", "down"] as const).map((part) => ({
    gguf: `blk.{bid}.ffn_${part}_exps`,
    hf: [`model.layers.{bid}.mlp.switch_mlp.${part}_proj`, `model.layers.{bid}.block_sparse_moe.switch_mlp.${part}_proj`],
  })),
];

export interface ModuleImportance {
  /** GGUF tensor name of the imatrix entry. */
  tensor: string;
  /** cols values, or cols * experts for a stacked-expert module. */
  importance: Float32Array;
  /** Rows per expert slice (the whole tensor's rows when there is one slice). */
  rowsPerSlice: number;
}

/**
 * A lookup from MLX module to its importance vector; undefined for modules the imatrix has no
 * entry for (embeddings: llama-imatrix collects blk.* matmuls, and output.weight only with
 * --process-output). A wrong-sized entry is an error (imatrixForTensor's message).
 */
export function moduleImportance(imatrix: ReadonlyMap<string, Float32Array>, blockCount: number): (m: MLXModule) => ModuleImportance | undefined {
  const names = compileNameMap([...GLOBAL_RULES, ...LLAMA_BLOCK_RULES, ...MLX_MOE_RULES], blockCount);
  return (m) => {
    const weight = m.params.find((p) => p.name === "weight");
    const tensor = names.map(`${m.path}.weight`)?.gguf;
    if (!weight || tensor === undefined) return undefined;
    const shape = weight.shape;
    const importance = imatrixForTensor(imatrix, tensor, [...shape].reverse());
    if (importance === undefined) return undefined;
    const rows = shape.length === 3 ? shape[1]! : shape.slice(0, -1).reduce((a, b) => a * b, 1);
    return { tensor, importance, rowsPerSlice: rows };
  };
}
