// The importance-weighted MLX quantizer (src/mlx/weighted.ts) on inputs small enough to check by
// hand, its contract against MLX's own min/max choice, the imatrix-name mapping of MLX modules,
// and an export with an importance matrix: the same files, names, shapes and dtypes as mx.quantize's
// export, only the chosen scales, biases and codes differ. No engine here (see
// mlx-weighted-kld.test.ts for the KL divergence it buys).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MLXFloatDtype, affineDequantize, affineQuantize, castToDtype, unpackRow } from "@llama-pajamas/gguf/mlx/affine.js";
import { exportMLX } from "../src/mlx/export.js";
import { moduleImportance } from "../src/mlx/importance.js";
import type { MLXModule } from "../src/mlx/models/index.js";
import { affineQuantizeWeighted, newWeightedStats, weightedAffineGroup } from "../src/mlx/weighted.js";
import { QWEN3_MOE_CONFIG, qwen3MoeTensors, readShards, u16, u32, weights, writeCheckpoint } from "./mlx-helpers.js";

/** sum_i imp_i (w_i - w_hat_i)^2 over one group. */
function weightedError(w: Float32Array, wHat: Float32Array, imp: Float32Array | undefined, from = 0, to = w.length): number {
  let e = 0;
  for (let i = from; i < to; i++) e += (imp ? imp[i % imp.length]! : 1) * (w[i]! - wHat[i]!) ** 2;
  return e;
}

function dequantize(r: ReturnType<typeof affineQuantize>, cols: number, groupSize: number, bits: number, dtype: MLXFloatDtype): Float32Array {
  return affineDequantize({ ...r, cols, groupSize, bits, dtype });
}

describe("one group, by hand", () => {
  it("one dominant importance: that value is reproduced (MLX's min/max grid misses it by 0.42 of a step)", () => {
    // 4 bits, w_j = j/31 (j = 0..31) in float32. MLX (Metal): w_min 0, w_max 1, |0| > |1| is false,
    // so it anchors the max: scale = -1/15, bias = 1, levels 1 - k/15. w_5 = 5/31 = 0.16129 sits
    // between 1 - 13/15 = 0.13333 and 0.2: MLX gives 0.13333, an error of 5/31 - 2/15 = 0.02796.
    const values = new Float32Array(32).map((_, j) => j / 31);
    const importance = new Float32Array(32).fill(1);
    importance[5] = 1e6;
    const mlx = affineQuantize({ data: values, cols: 32, groupSize: 32, bits: 4, dtype: "float32" });
    const mlxHat = dequantize(mlx, 32, 32, 4, "float32");
    expect(mlxHat[5]!).toBeCloseTo(2 / 15, 6);
    expect(values[5]! - mlxHat[5]!).toBeCloseTo(5 / 31 - 2 / 15, 6);

    const g = weightedAffineGroup({ values, importance, bits: 4, dtype: "float32" });
    expect(g.fromMLX).toBe(false);
    const hat = g.q[5]! * g.scale + g.bias;
    expect(Math.abs(hat - values[5]!)).toBeLessThan(1e-6);
    expect(g.error).toBeLessThan(g.errorMLX / 100);

    // bfloat16: scale and bias are stored with 8 significant bits, so "exactly" means within
    // their rounding: far under MLX's 0.028 and under 1% of a step (1/15).
    const v16 = castToDtype(values, "bfloat16");
    const g16 = weightedAffineGroup({ values: v16, importance, bits: 4, dtype: "bfloat16" });
    const r16 = affineQuantizeWeighted({ data: v16, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", importance });
    const hat16 = dequantize(r16, 32, 32, 4, "bfloat16");
    expect(Math.abs(hat16[5]! - v16[5]!)).toBeLessThan(0.01 / 15);
    expect(unpackRow(r16.weight, 0, 4, 32)).toEqual(g16.q);
  });

  it("equal importances, an outlier: MLX spends a level on it (error 20), the weighted fit does better", () => {
    // 2 bits (levels 0..3), float32. 31 values cycling 0, 1, 2 (eleven 0s, ten 1s, ten 2s), then 9.
    // MLX: w_min 0, w_max 9, scale -3, bias 9 (max anchored): levels 9, 6, 3, 0. The 0s and the 9
    // are exact; each 1 goes to 0 and each 2 to 3, one unit off: E = 10 + 10 = 20. Scale 2, bias 0
    // alone (levels 0, 2, 4, 6) already gives 10 * 1^2 + (9 - 6)^2 = 19, so the search must reach <= 19.
    const values = new Float32Array(32).map((_, j) => (j === 31 ? 9 : j % 3));
    const ones = new Float32Array(32).fill(1);
    const g = weightedAffineGroup({ values, importance: ones, bits: 2, dtype: "float32" });
    expect(g.errorMLX).toBe(20);
    expect(g.error).toBeLessThanOrEqual(19);
    const r = affineQuantizeWeighted({ data: values, cols: 32, groupSize: 32, bits: 2, dtype: "float32", importance: ones });
    expect(weightedError(values, dequantize(r, 32, 32, 2, "float32"), undefined)).toBeCloseTo(g.error, 9);
  });

  it("a group nothing reached (all importances 0) and a constant group keep MLX's bytes", () => {
    const data = weights(4 * 64, 3);
    const mlx = affineQuantize({ data, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16" });
    const zero = affineQuantizeWeighted({ data, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16", importance: new Float32Array(64) });
    expect(zero).toEqual(mlx);
    const flat = new Float32Array(64).fill(0.25);
    const one = new Float32Array(64).fill(1);
    expect(affineQuantizeWeighted({ data: flat, cols: 64, groupSize: 64, bits: 3, dtype: "float16", importance: one })).toEqual(
      affineQuantize({ data: flat, cols: 64, groupSize: 64, bits: 3, dtype: "float16" }),
    );
  });
});

describe("against MLX's min/max", () => {
  it("with equal importances, never a group worse than MLX's on the plain squared error, and better overall", () => {
    for (const dtype of ["bfloat16", "float16", "float32"] as const) {
      for (const bits of [2, 3, 4, 5, 6, 8]) {
        for (const groupSize of [32, 64, 128]) {
          const cols = 256;
          const raw = weights(8 * cols, bits * 131 + groupSize);
          raw[17] = 0.11; // an outlier or two, as real weights have
          raw[cols + 200] = -0.09;
          const data = castToDtype(raw, dtype); // the values the quantizer sees
          const ones = new Float32Array(cols).fill(1);
          const mlx = dequantize(affineQuantize({ data, cols, groupSize, bits, dtype }), cols, groupSize, bits, dtype);
          const stats = newWeightedStats();
          const ours = dequantize(affineQuantizeWeighted({ data, cols, groupSize, bits, dtype, importance: ones }, stats), cols, groupSize, bits, dtype);
          let worse = 0;
          for (let at = 0; at < data.length; at += groupSize) {
            if (weightedError(data, ours, undefined, at, at + groupSize) > weightedError(data, mlx, undefined, at, at + groupSize)) worse++;
          }
          const what = `${dtype} ${bits} bits group ${groupSize}`;
          expect(worse, what).toBe(0);
          expect(weightedError(data, ours, undefined), what).toBeLessThan(weightedError(data, mlx, undefined));
          // the stats report the same errors as the dequantized values give
          expect(stats.errorWeighted / weightedError(data, ours, undefined), what).toBeCloseTo(1, 9);
          expect(stats.errorMLX / weightedError(data, mlx, undefined), what).toBeCloseTo(1, 9);
        }
      }
    }
  });

  it("with real-looking importances, lower importance-weighted error than MLX's in every group", () => {
    const cols = 512;
    const data = castToDtype(weights(16 * cols, 11), "bfloat16");
    // importances spread over four orders of magnitude, a few columns dominant (as imatrices are)
    const imp = new Float32Array(cols).map((_, j) => 10 ** (((j * 7919) % 97) / 24) * (j % 61 === 0 ? 100 : 1));
    for (const bits of [3, 4]) {
      const mlx = dequantize(affineQuantize({ data, cols, groupSize: 64, bits, dtype: "bfloat16" }), cols, 64, bits, "bfloat16");
      const ours = dequantize(affineQuantizeWeighted({ data, cols, groupSize: 64, bits, dtype: "bfloat16", importance: imp }), cols, 64, bits, "bfloat16");
      for (let at = 0; at < data.length; at += 64) expect(weightedError(data, ours, imp, at, at + 64)).toBeLessThanOrEqual(weightedError(data, mlx, imp, at, at + 64));
      expect(weightedError(data, ours, imp)).toBeLessThan(0.9 * weightedError(data, mlx, imp));
    }
  });

  it("stacked experts: row r takes slice floor(r / rowsPerSlice), also when the rows come in chunks", () => {
    const cols = 64;
    const data = castToDtype(weights(2 * 4 * cols, 5), "bfloat16"); // [2 experts, 4 rows, 64]
    const imp = new Float32Array(2 * cols).map((_, j) => (j < cols ? 1 + (j % 5) : 1 + ((j * 13) % 17) ** 2));
    const opts = { cols, groupSize: 32, bits: 4, dtype: "bfloat16" as const };
    const whole = affineQuantizeWeighted({ ...opts, data, importance: imp, rowsPerSlice: 4 });
    const e0 = affineQuantizeWeighted({ ...opts, data: data.subarray(0, 4 * cols), importance: imp.subarray(0, cols) });
    const e1 = affineQuantizeWeighted({ ...opts, data: data.subarray(4 * cols), importance: imp.subarray(cols) });
    expect(Array.from(whole.weight)).toEqual([...e0.weight, ...e1.weight]);
    expect(Array.from(whole.scales)).toEqual([...e0.scales, ...e1.scales]);
    expect(Array.from(whole.biases)).toEqual([...e0.biases, ...e1.biases]);
    // a chunk of rows 3..5 straddles the two experts
    const chunk = affineQuantizeWeighted({ ...opts, data: data.subarray(3 * cols, 6 * cols), importance: imp, rowsPerSlice: 4, firstRow: 3 });
    expect(Array.from(chunk.scales)).toEqual(Array.from(whole.scales.subarray(3 * 2, 6 * 2)));
    expect(() => affineQuantizeWeighted({ ...opts, data, importance: imp })).toThrow(/rowsPerSlice/);
    expect(() => affineQuantizeWeighted({ ...opts, data, importance: imp.subarray(1) })).toThrow(/whole slices/);
  });
});

describe("imatrix names of MLX modules", () => {
  const mod = (path: string, shape: number[], kind: MLXModule["kind"] = "linear"): MLXModule => ({ path, kind, params: [{ name: "weight", shape, runs: [] }] });
  const imatrix = new Map<string, Float32Array>([
    ["blk.0.attn_q.weight", new Float32Array(64).fill(1)],
    ["blk.1.ffn_down.weight", new Float32Array(128).fill(2)],
    ["blk.0.ffn_gate_inp.weight", new Float32Array(64).fill(3)],
    ["blk.0.ffn_up_exps.weight", new Float32Array(4 * 64).fill(4)],
    ["blk.0.ffn_down_exps.weight", new Float32Array(64).fill(5)], // wrong: one slice for four experts
  ]);
  const lookup = moduleImportance(imatrix, 2);

  it("maps dense layers, routers and switch_mlp experts to llama.cpp's tensors", () => {
    expect(lookup(mod("model.layers.0.self_attn.q_proj", [64, 64]))).toMatchObject({ tensor: "blk.0.attn_q.weight", rowsPerSlice: 64 });
    expect(lookup(mod("model.layers.1.mlp.down_proj", [64, 128]))?.tensor).toBe("blk.1.ffn_down.weight");
    expect(lookup(mod("model.layers.0.mlp.gate", [4, 64]))?.tensor).toBe("blk.0.ffn_gate_inp.weight"); // qwen3_moe router
    expect(lookup(mod("model.layers.0.block_sparse_moe.gate", [4, 64]))?.tensor).toBe("blk.0.ffn_gate_inp.weight"); // mixtral router
    const experts = lookup(mod("model.layers.0.mlp.switch_mlp.up_proj", [4, 32, 64], "switch_linear"));
    expect(experts).toMatchObject({ tensor: "blk.0.ffn_up_exps.weight", rowsPerSlice: 32 });
    expect(experts?.importance.length).toBe(4 * 64);
    expect(lookup(mod("model.layers.0.block_sparse_moe.switch_mlp.up_proj", [4, 32, 64], "switch_linear"))?.tensor).toBe("blk.0.ffn_up_exps.weight");
  });

  it("has nothing for embeddings, for modules the imatrix lacks, or past the block count; refuses a wrong size", () => {
    expect(lookup(mod("model.embed_tokens", [256, 64], "embedding"))).toBeUndefined();
    expect(lookup(mod("lm_head", [256, 64]))).toBeUndefined();
    expect(lookup(mod("model.layers.0.self_attn.k_proj", [32, 64]))).toBeUndefined();
    expect(moduleImportance(imatrix, 0)(mod("model.layers.0.self_attn.q_proj", [64, 64]))).toBeUndefined();
    expect(() => lookup(mod("model.layers.0.mlp.switch_mlp.down_proj", [4, 64, 64], "switch_linear"))).toThrow(/imatrix size 64 .* 256 .*blk\.0\.ffn_down_exps/);
  });
});

describe("exportMLX with an importance matrix (synthetic qwen3_moe, stacked experts)", () => {
  let dir: string;
  const imatrix = new Map<string, Float32Array>();
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lp-mlx-weighted-"));
    await writeCheckpoint(join(dir, "src"), QWEN3_MOE_CONFIG, qwen3MoeTensors(false));
    // llama-imatrix's entries for this model: attention, router, stacked experts (layer 0), dense MLP (layer 1)
    let seed = 9;
    const vec = (n: number) => new Float32Array(n).map(() => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32) ** 4 * 50);
    for (const l of [0, 1]) for (const t of ["attn_q", "attn_k", "attn_v", "attn_output"]) imatrix.set(`blk.${l}.${t}.weight`, vec(64));
    imatrix.set("blk.0.ffn_gate_inp.weight", vec(64));
    for (const t of ["gate", "up", "down"]) imatrix.set(`blk.0.ffn_${t}_exps.weight`, vec(4 * 64));
    for (const t of ["gate", "up"]) imatrix.set(`blk.1.ffn_${t}.weight`, vec(64));
    imatrix.set("blk.1.ffn_down.weight", vec(128));
    await exportMLX({ model: join(dir, "src"), output: join(dir, "plain"), method: "4bit" });
    await exportMLX({ model: join(dir, "src"), output: join(dir, "weighted"), method: "4bit", imatrix, imatrixLabel: "imatrix.gguf" });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes what mlx-lm loads unchanged: same config, index, tensor names, shapes, dtypes and offsets", async () => {
    for (const f of ["config.json", "model.safetensors.index.json", "tokenizer.json", "README.md"]) {
      expect(await readFile(join(dir, "weighted", f), "utf8"), f).toBe(await readFile(join(dir, "plain", f), "utf8"));
    }
    const plain = await readShards(join(dir, "plain"), ["model.safetensors"]);
    const weighted = await readShards(join(dir, "weighted"), ["model.safetensors"]);
    const header = (m: typeof plain) => [...m.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, start: t.start, end: t.end }));
    expect(header(weighted)).toEqual(header(plain));
  });

  it("weights every module the imatrix covers, per expert for switch_mlp; the rest are MLX's bytes", async () => {
    const plain = await readShards(join(dir, "plain"), ["model.safetensors"]);
    const weighted = await readShards(join(dir, "weighted"), ["model.safetensors"]);
    for (const name of ["model.embed_tokens.weight", "lm_head.weight", "model.embed_tokens.scales", "model.norm.weight", "model.layers.0.self_attn.q_norm.weight"]) {
      expect(Array.from(await u16(weighted.get(name)!)), name).toEqual(Array.from(await u16(plain.get(name)!))); // raw bytes
    }
    // expert 2 of layer 0's switch_mlp.down_proj: its rows quantized with the imatrix's slice 2
    const src = weights(64 * 64, 302); // qwen3MoeTensors: down_proj of expert e has seed 300 + e
    const slice = imatrix.get("blk.0.ffn_down_exps.weight")!.subarray(2 * 64, 3 * 64);
    const want = affineQuantizeWeighted({ data: src, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16", importance: slice });
    const base = "model.layers.0.mlp.switch_mlp.down_proj";
    expect(Array.from((await u32(weighted.get(`${base}.weight`)!)).subarray(2 * 64 * 8, 3 * 64 * 8))).toEqual(Array.from(want.weight));
    expect(Array.from((await u16(weighted.get(`${base}.scales`)!)).subarray(2 * 64, 3 * 64))).toEqual(Array.from(want.scales));
    expect(Array.from((await u16(weighted.get(`${base}.biases`)!)).subarray(2 * 64, 3 * 64))).toEqual(Array.from(want.biases));
    expect(Array.from(await u16(weighted.get(`${base}.scales`)!))).not.toEqual(Array.from(await u16(plain.get(`${base}.scales`)!)));
  });

  it("metadata.json says so and names the imatrix; without one there is no trace of it", async () => {
    const meta = JSON.parse(await readFile(join(dir, "weighted", "metadata.json"), "utf8"));
    expect(meta.quantization.importance_weighted).toBe(true);
    // 8 attention + router + 3 switch_mlp + 3 dense MLP; embed_tokens and lm_head have no entry
    expect(meta.quantization.importance).toMatchObject({ imatrix: "imatrix.gguf", entries: imatrix.size, modules: 15 });
    expect(meta.quantization.importance.weighted_error_reduction_pct).toBeGreaterThan(5);
    const plain = JSON.parse(await readFile(join(dir, "plain", "metadata.json"), "utf8"));
    expect(plain.quantization.importance_weighted).toBeUndefined();
    expect(plain.quantization.importance).toBeUndefined();
  });
});
