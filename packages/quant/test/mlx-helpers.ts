// Helpers for the MLX tests: tiny synthetic checkpoints (for architectures and shapes the
// fixtures lack) and readers for what the exporter wrote.
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { f32ToBF16 } from "@llama-pajamas/gguf/formats/float.js";
import { readSafetensorsHeader, readTensorBytes, readTensorF32, type SafetensorsTensor } from "@llama-pajamas/gguf/formats/safetensors.js";
import { expect } from "vitest";
import { SafetensorsFileWriter } from "../src/mlx/safetensors-writer.js";
import { validate } from "../src/validation/validate.js";
import { FIXTURES } from "./helpers.js";

/** Deterministic normal-ish values (sum of uniforms), scaled like weights. */
export function weights(n: number, seed: number, scale = 0.02): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  return new Float32Array(n).map(() => (next() + next() + next() + next() - 2) * scale);
}

export interface SyntheticTensor {
  shape: number[];
  dtype?: "BF16" | "F32";
  data?: Float32Array;
}

/** A checkpoint dir: config.json, generation_config.json, model.safetensors and llama-tiny's tokenizer. */
export async function writeCheckpoint(dir: string, config: Record<string, unknown>, tensors: Record<string, SyntheticTensor>): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  await writeFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [2, 7] }));
  await copyFile(join(FIXTURES, "llama-tiny", "tokenizer.json"), join(dir, "tokenizer.json"));
  await copyFile(join(FIXTURES, "llama-tiny", "tokenizer_config.json"), join(dir, "tokenizer_config.json"));
  const entries = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype ?? ("BF16" as const), shape: t.shape }));
  const w = new SafetensorsFileWriter(join(dir, "model.safetensors"), entries, { format: "pt" });
  await w.open();
  let seed = 1;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = t.data ?? (name.endsWith("norm.weight") ? new Float32Array(n).fill(1).map((x, i) => x + (i % 7) / 64) : weights(n, seed++));
    const bytes = (t.dtype ?? "BF16") === "F32" ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(f32ToBF16(data).buffer);
    await w.write(name, 0, bytes);
  }
  await w.finish();
}

/** A tiny qwen3_moe: layer 0 sparse (4 experts), layer 1 dense (mlp_only_layers), untied lm_head. */
export const QWEN3_MOE_CONFIG = {
  architectures: ["Qwen3MoeForCausalLM"],
  model_type: "qwen3_moe",
  hidden_size: 64,
  num_hidden_layers: 2,
  intermediate_size: 128,
  moe_intermediate_size: 64,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 32,
  num_experts: 4,
  num_experts_per_tok: 2,
  decoder_sparse_step: 1,
  mlp_only_layers: [1],
  norm_topk_prob: true,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  max_position_embeddings: 512,
  tie_word_embeddings: false,
  vocab_size: 128,
  torch_dtype: "bfloat16",
};

export function qwen3MoeTensors(fusedExperts: boolean): Record<string, SyntheticTensor> {
  const t: Record<string, SyntheticTensor> = { "model.embed_tokens.weight": { shape: [128, 64] }, "model.norm.weight": { shape: [64] }, "lm_head.weight": { shape: [128, 64] } };
  for (const l of [0, 1]) {
    const p = `model.layers.${l}`;
    Object.assign(t, {
      [`${p}.self_attn.q_proj.weight`]: { shape: [64, 64] },
      [`${p}.self_attn.k_proj.weight`]: { shape: [32, 64] },
      [`${p}.self_attn.v_proj.weight`]: { shape: [32, 64] },
      [`${p}.self_attn.o_proj.weight`]: { shape: [64, 64] },
      [`${p}.self_attn.q_norm.weight`]: { shape: [32] },
      [`${p}.self_attn.k_norm.weight`]: { shape: [32] },
      [`${p}.input_layernorm.weight`]: { shape: [64] },
      [`${p}.post_attention_layernorm.weight`]: { shape: [64] },
    });
    if (l === 1) {
      Object.assign(t, { [`${p}.mlp.gate_proj.weight`]: { shape: [128, 64] }, [`${p}.mlp.up_proj.weight`]: { shape: [128, 64] }, [`${p}.mlp.down_proj.weight`]: { shape: [64, 128] } });
      continue;
    }
    t[`${p}.mlp.gate.weight`] = { shape: [4, 64] };
    // The same values either way: expert e's gate/up/down come from seeds 100+e, 200+e, 300+e.
    const gate = [0, 1, 2, 3].map((e) => weights(64 * 64, 100 + e));
    const up = [0, 1, 2, 3].map((e) => weights(64 * 64, 200 + e));
    const down = [0, 1, 2, 3].map((e) => weights(64 * 64, 300 + e));
    if (fusedExperts) {
      const gateUp = new Float32Array(4 * 128 * 64);
      for (let e = 0; e < 4; e++) {
        gateUp.set(gate[e]!, e * 128 * 64);
        gateUp.set(up[e]!, e * 128 * 64 + 64 * 64);
      }
      t[`${p}.mlp.experts.gate_up_proj`] = { shape: [4, 128, 64], data: gateUp };
      const d = new Float32Array(4 * 64 * 64);
      down.forEach((x, e) => d.set(x, e * 64 * 64));
      t[`${p}.mlp.experts.down_proj`] = { shape: [4, 64, 64], data: d };
    } else {
      for (let e = 0; e < 4; e++) {
        t[`${p}.mlp.experts.${e}.gate_proj.weight`] = { shape: [64, 64], data: gate[e] };
        t[`${p}.mlp.experts.${e}.up_proj.weight`] = { shape: [64, 64], data: up[e] };
        t[`${p}.mlp.experts.${e}.down_proj.weight`] = { shape: [64, 64], data: down[e] };
      }
    }
  }
  return t;
}

/** A tiny llama whose MLP width (96) a group of 64 does not divide. */
export const LLAMA_96_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  vocab_size: 256,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
};

export function llama96Tensors(dtype: "BF16" | "F32" = "BF16"): Record<string, SyntheticTensor> {
  const t: Record<string, SyntheticTensor> = { "model.embed_tokens.weight": { shape: [256, 64], dtype }, "model.norm.weight": { shape: [64], dtype } };
  for (const l of [0, 1]) {
    const p = `model.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "o_proj"]) t[`${p}.self_attn.${n}.weight`] = { shape: [64, 64], dtype };
    t[`${p}.mlp.gate_proj.weight`] = { shape: [96, 64], dtype };
    t[`${p}.mlp.up_proj.weight`] = { shape: [96, 64], dtype };
    t[`${p}.mlp.down_proj.weight`] = { shape: [64, 96], dtype };
    t[`${p}.input_layernorm.weight`] = { shape: [64], dtype };
    t[`${p}.post_attention_layernorm.weight`] = { shape: [64], dtype };
  }
  return t;
}

/** Every tensor of an exported dir, by name, with its raw bytes reader. */
export async function readShards(dir: string, files: string[]): Promise<Map<string, SafetensorsTensor>> {
  const all = new Map<string, SafetensorsTensor>();
  for (const f of files) for (const t of (await readSafetensorsHeader(join(dir, f))).tensors) all.set(t.name, t);
  return all;
}

export async function u32(t: SafetensorsTensor): Promise<Uint32Array> {
  const b = await readTensorBytes(t);
  return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export async function u16(t: SafetensorsTensor): Promise<Uint16Array> {
  const b = await readTensorBytes(t);
  return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
}

export { readTensorF32 };

/**
 * Plain and importance-weighted MLX exports validated the same way against an F16 GGUF (first
 * `chunks` of the default text): the weighted one must have the lower mean KLD.
 */
export async function expectWeightedCloser(f16: string, plainDir: string, weightedDir: string, chunks: number): Promise<void> {
  const measure = async (mlxDir: string) => {
    const v = await validate({ original: f16, quantized: mlxDir, chunks, updateArtifact: false });
    return { kld: v.kld!.mean, ppl: v.perplexity!.quantized };
  };
  const plain = await measure(plainDir);
  const weighted = await measure(weightedDir);
  expect(weighted.kld, `mean KLD (perplexity): plain ${plain.kld} (${plain.ppl}), weighted ${weighted.kld} (${weighted.ppl})`).toBeLessThan(plain.kld);
}
