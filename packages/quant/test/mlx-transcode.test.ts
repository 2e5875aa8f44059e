// The runtime's MLX -> GGUF transcode (llama-pajamas-run mlx/), on MLX exports of the fixtures
// made by the pipeline. The reference is independent of the transcoder: the test dequantizes
// the MLX weights itself (unpack, q * scale + bias in float32), writes them as a float32
// Hugging Face checkpoint, and converts that with the pipeline to an F32 GGUF. A 4-bit
// transcode must hold exactly those values (Q4_1 blocks), tensor for tensor, and generate the
// same greedy tokens; other widths are measured.
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGGUF, type GGUFFile } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { openCheckpointTensors, readTensorBytes, readTensorF32 } from "@llama-pajamas/gguf/formats/safetensors.js";
import { dequantizeRows } from "@llama-pajamas/gguf/ggml.js";
import { CACHE_DIR_ENV, Runtime, ensureTranscoded, transcodeMLX, type TranscodeReport } from "llama-pajamas-run";
import { convert } from "../src/pipeline.js";
import { validate } from "../src/validation/validate.js";
import { SafetensorsFileWriter } from "../src/mlx/safetensors-writer.js";
import { FIXTURES } from "./helpers.js";
import { tensorBytes } from "./quantize-helpers.js";
import { firstDifference, mlxDequantize } from "../../run/test/mlx-reference.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "lp-mlx-transcode-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});


/** HF names of mlx-lm's stacked expert parts, per model_type. */
const EXPERT_PARTS: Record<string, Record<string, string>> = { mixtral: { gate_proj: "w1", down_proj: "w2", up_proj: "w3" } };

/**
 * The MLX directory's weights dequantized by the test, unstacked to the checkpoint's expert
 * names, as a float32 Hugging Face checkpoint beside its tokenizer files.
 */
async function dequantizedCheckpoint(mlxDir: string, out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  const config = JSON.parse(await readFile(join(mlxDir, "config.json"), "utf8")) as Record<string, unknown>;
  const q = config["quantization"] as Record<string, unknown>;
  delete config["quantization"];
  delete config["quantization_config"];
  config["torch_dtype"] = "float32";
  await writeFile(join(out, "config.json"), JSON.stringify(config, null, 2));
  for (const f of await readdir(mlxDir)) {
    if (f.startsWith("tokenizer") || f === "generation_config.json" || f === "special_tokens_map.json") await copyFile(join(mlxDir, f), join(out, f));
  }
  const tensors = await openCheckpointTensors(mlxDir);
  const values = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of tensors) {
    if (name.endsWith(".scales") || name.endsWith(".biases")) continue;
    const path = name.replace(/\.weight$/, "");
    const scalesT = tensors.get(`${path}.scales`);
    let shape = [...t.shape];
    let data: Float32Array;
    if (scalesT) {
      const p = (q[path] as { bits: number; group_size: number } | undefined) ?? { bits: q["bits"] as number, group_size: q["group_size"] as number };
      const words = new Uint32Array(new Uint8Array(await readTensorBytes(t)).buffer);
      const scales = await readTensorF32(scalesT);
      const biases = await readTensorF32(tensors.get(`${path}.biases`)!);
      const cols = (shape[shape.length - 1]! * 32) / p.bits;
      shape = [...shape.slice(0, -1), cols];
      data = mlxDequantize(words, scales, biases, words.length / ((cols * p.bits) / 32), cols, p.bits, p.group_size);
    } else {
      data = await readTensorF32(t);
    }
    const sw = /^(.*)\.switch_mlp\.(\w+)\.weight$/.exec(name);
    if (sw) {
      const [experts, rows, cols] = shape as [number, number, number];
      const part = EXPERT_PARTS[String(config["model_type"])]?.[sw[2]!] ?? sw[2]!;
      for (let e = 0; e < experts; e++) values.set(`${sw[1]}.experts.${e}.${part}.weight`, { shape: [rows, cols], data: data.subarray(e * rows * cols, (e + 1) * rows * cols) });
    } else {
      values.set(name, { shape, data });
    }
  }
  const w = new SafetensorsFileWriter(join(out, "model.safetensors"), [...values].map(([name, v]) => ({ name, dtype: "F32" as const, shape: v.shape })), { format: "pt" });
  await w.open();
  for (const [name, v] of values) await w.write(name, 0, new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength));
  await w.finish();
}

async function tensorValues(file: GGUFFile, name: string): Promise<Float32Array> {
  const t = file.tensors.find((x) => x.name === name)!;
  const bytes = await tensorBytes(file, t);
  const cols = t.ne[0]!;
  return dequantizeRows(t.type, bytes, t.ne.slice(1).reduce((a, b) => a * b, 1), cols);
}

const IGNORED_KV = /^(general\.|llama_pajamas\.)/;

describe.each(["llama-tiny", "qwen3-tiny", "mixtral-tiny"] as const)("%s, 4-bit MLX export", (model) => {
  let mlxDir: string;
  let reference: GGUFFile;
  let transcoded: GGUFFile;
  let report: TranscodeReport;

  beforeAll(async () => {
    const dir = join(tmp, model);
    const exported = await convert({ model: join(FIXTURES, model), output: join(dir, "artifact"), formats: ["mlx"], precisions: ["4bit"], force: true });
    mlxDir = exported.mlx!.dir;
    await dequantizedCheckpoint(mlxDir, join(dir, "dequantized"));
    const f32 = await convert({ model: join(dir, "dequantized"), output: join(dir, "f32"), precisions: ["F32"], force: true });
    reference = await readGGUF(f32.files[0]!.path);
    report = await transcodeMLX({ dir: mlxDir, output: join(dir, "transcoded.gguf") });
    transcoded = await readGGUF(join(dir, "transcoded.gguf"));
  }, 300_000);

  it("has the reference's tensors, in its order, with its shapes and metadata", () => {
    expect(transcoded.tensors.map((t) => [t.name, t.ne.join("x")])).toEqual(reference.tensors.map((t) => [t.name, t.ne.join("x")]));
    const kvs = (f: GGUFFile) => [...f.kv].filter(([k]) => !IGNORED_KV.test(k)).map(([k, v]) => [k, v.type, JSON.stringify(v.value, (_, x) => (typeof x === "bigint" ? String(x) : x))]);
    expect(kvs(transcoded)).toEqual(kvs(reference));
    expect(transcoded.kv.get("general.file_type")?.value).toBe(3); // MOSTLY_Q4_1
  });

  it("stores every quantized weight as Q4_1 holding exactly the dequantized MLX values (layout transforms included)", async () => {
    let q41 = 0;
    for (const t of transcoded.tensors) {
      const ref = reference.tensors.find((x) => x.name === t.name)!;
      const got = await tensorValues(transcoded, t.name);
      const want = await tensorValues(reference, t.name);
      expect(firstDifference(got, want), t.name).toBeUndefined();
      if (t.type === GGMLType.Q4_1) q41++;
      else expect([GGMLType.F32], `${t.name} is ${GGMLType[t.type]}`).toContain(t.type);
      expect(ref.type).toBe(GGMLType.F32);
    }
    // One Q4_1 tensor per quantized MLX module (stacked experts included), except MoE routers,
    // which llama.cpp keeps in F32 and so are stored dequantized.
    const scales = [...(await openCheckpointTensors(mlxDir)).keys()].filter((n) => n.endsWith(".scales"));
    const routers = scales.filter((n) => n.endsWith("block_sparse_moe.gate.scales"));
    expect(q41).toBeGreaterThan(0);
    expect(q41).toBe(scales.length - routers.length);
    expect(routers.length).toBe(model === "mixtral-tiny" ? 2 : 0);
    expect(report.types.find((g) => g.type === "Q4_1")).toMatchObject({ exact: true, from: "mlx 4-bit g64", tensors: q41 });
    expect(report.types.every((g) => g.exact)).toBe(true);
  });

  it("generates the same greedy tokens as the F32 GGUF of the dequantized weights (up to a near tie)", async () => {
    const prompt = "def fibonacci(n):";
    const run = async (path: string) => {
      const rt = await Runtime.load({ modelPath: path, backend: "cpu", ctxSize: 256, threads: 2 });
      try {
        return await rt.generate(prompt, { maxTokens: 32, temperature: 0, logprobs: 2 });
      } finally {
        await rt.unload();
      }
    };
    const ours = await run(mlxDir); // through the runtime's transcode cache
    const ref = await run(reference.path);
    expect(ours.tokens.length).toBe(32);
    // The weights are equal (above), but llama.cpp multiplies Q4_1 weights with activations
    // rounded to 8 bits (Q8_1) and F32 weights with float activations, so logits differ in
    // the last digits. Greedy paths may then part only where the reference's two best tokens
    // are within 0.05 nats of each other, and only between those two.
    const parted = ours.tokens.findIndex((t, i) => t !== ref.tokens[i]);
    if (parted >= 0) {
      const [best, second] = ref.logprobs![parted]!.top;
      expect(best!.logprob - second!.logprob, `tokens part at ${parted}`).toBeLessThan(0.05);
      expect([best!.token, second!.token]).toContain(ours.tokens[parted]);
    }
    expect(parted === -1 ? 32 : parted).toBeGreaterThanOrEqual(model === "llama-tiny" ? 8 : 32);
  });

  it("validates through the transcode: perplexity and KLD against the F32 reference show only kernel noise", async () => {
    const r = await validate({ original: reference.path, quantized: mlxDir, metrics: ["perplexity", "kld"], ctx: 128, chunks: 6, threads: 2 });
    expect(r.tokens).toBeGreaterThan(300);
    expect(Math.abs(r.perplexity!.increasePct)).toBeLessThan(1);
    expect(r.kld!.mean).toBeGreaterThan(0);
    expect(r.kld!.mean).toBeLessThan(2e-3);
    expect(r.kld!.sameTopPct).toBeGreaterThan(97);
  }, 120_000);
});

describe("other widths and the cache", () => {
  let mlx8: string;
  let mlx5: string;
  let mixed: string;
  beforeAll(async () => {
    const model = join(FIXTURES, "qwen3-tiny");
    mlx8 = (await convert({ model, output: join(tmp, "q8"), formats: ["mlx"], precisions: ["8bit"], force: true })).mlx!.dir;
    mixed = (await convert({ model, output: join(tmp, "mixed"), formats: ["mlx"], precisions: ["4bit_mixed"], force: true })).mlx!.dir;
    mlx5 = (await convert({ model, output: join(tmp, "q5"), formats: ["mlx"], precisions: ["5bit"], mlxGroupSize: 32, force: true })).mlx!.dir;
  }, 300_000);

  it("8-bit goes to Q8_0 with its error measured and reported", async () => {
    const r = await transcodeMLX({ dir: mlx8, output: join(tmp, "q8.gguf") });
    expect(r.fileType).toBe("MOSTLY_Q8_0");
    const g = r.types.find((x) => x.type === "Q8_0")!;
    expect(g).toMatchObject({ exact: false, from: "mlx 8-bit g64", tensors: 29 });
    // Q8_0 re-rounds an 8-bit affine grid: well under 1% RMS, but not zero.
    expect(g.relativeRmsError).toBeGreaterThan(1e-4);
    expect(g.relativeRmsError).toBeLessThan(0.01);
    const file = await readGGUF(join(tmp, "q8.gguf"));
    expect(file.tensors.filter((t) => t.type === GGMLType.Q8_0).length).toBe(29);
  });

  it("validate reads an artifact's mlx/ entry by --method (its MLX method or mlx) like the MLX directory itself", async () => {
    const original = join(FIXTURES, "qwen3-tiny");
    const direct = await validate({ original, quantized: mlx8, metrics: ["perplexity"], chunks: 1, threads: 2, updateArtifact: false });
    for (const method of ["8bit", "mlx"]) {
      const viaArtifact = await validate({ original, quantized: join(tmp, "q8"), method, metrics: ["perplexity"], chunks: 1, threads: 2, updateArtifact: false });
      expect(viaArtifact.perplexity!.quantized).toBe(direct.perplexity!.quantized);
      expect(viaArtifact.quantized.method).toBe("8bit");
    }
    // 8 bits: within 1% of the original's perplexity (44.63 vs 44.66 on this chunk when written)
    expect(Math.abs(direct.perplexity!.increasePct)).toBeLessThan(1);
    expect(direct.perplexity!.quantized).not.toBe(direct.perplexity!.original);
  }, 120_000);

  it("5-bit (group 32) goes to Q5_1 exactly: every value equals MLX's dequantization", async () => {
    const r = await transcodeMLX({ dir: mlx5, output: join(tmp, "q5.gguf") });
    expect(r.fileType).toBe("MOSTLY_Q5_1");
    expect(r.types[0]).toMatchObject({ type: "Q5_1", from: "mlx 5-bit g32", exact: true, tensors: 29 });
    const file = await readGGUF(join(tmp, "q5.gguf"));
    const tensors = await openCheckpointTensors(mlx5);
    const q = JSON.parse(await readFile(join(mlx5, "config.json"), "utf8")).quantization as { bits: number; group_size: number };
    // qwen3 needs no row permutation, so each GGUF tensor is its MLX module row for row.
    const down = "model.layers.0.mlp.down_proj";
    const words = new Uint32Array(new Uint8Array(await readTensorBytes(tensors.get(`${down}.weight`)!)).buffer);
    const scales = await readTensorF32(tensors.get(`${down}.scales`)!);
    const biases = await readTensorF32(tensors.get(`${down}.biases`)!);
    const t = file.tensors.find((x) => x.name === "blk.0.ffn_down.weight")!;
    const want = mlxDequantize(words, scales, biases, t.ne[1]!, t.ne[0]!, q.bits, q.group_size);
    expect(firstDifference(await tensorValues(file, t.name), want)).toBeUndefined();
  });

  it("4bit_mixed keeps the 4-bit body exact and reports the 6-bit embedding's type and error", async () => {
    const r = await transcodeMLX({ dir: mixed, output: join(tmp, "mixed.gguf") });
    expect(r.fileType).toBe("MOSTLY_Q4_1");
    expect(r.types.find((x) => x.from === "mlx 4-bit g64")).toMatchObject({ type: "Q4_1", exact: true });
    const six = r.types.find((x) => x.from === "mlx 6-bit g64")!;
    expect(six.type).toBe("Q6_K");
    expect(six.exact).toBe(false);
    expect(six.relativeRmsError).toBeGreaterThan(0);
    expect(six.relativeRmsError).toBeLessThan(0.05);
  });

  it("transcodes once: a second load reuses the file, a changed model makes a new one", async () => {
    const first = await ensureTranscoded(mlx8);
    expect(first.path.startsWith(join(mlx8, ".llama-pajamas"))).toBe(true);
    const again = await ensureTranscoded(mlx8);
    expect(again.cached).toBe(true);
    expect(again.path).toBe(first.path);
    expect(again.report.sha256).toBe(first.report.sha256);
    const before = (await stat(first.path)).mtimeMs;
    expect((await stat(again.path)).mtimeMs).toBe(before);
    // Touching the weights changes the fingerprint: a new transcode replaces the old one.
    const later = new Date(Date.now() + 5000);
    await utimes(join(mlx8, "model.safetensors"), later, later);
    const changed = await ensureTranscoded(mlx8);
    expect(changed.cached).toBe(false);
    expect(changed.path).not.toBe(first.path);
    expect(changed.report.sha256).toBe(first.report.sha256); // same bytes in, same bytes out
    expect((await readdir(join(mlx8, ".llama-pajamas"))).sort()).toEqual([`${changed.path.split("/").pop()}`, `${changed.path.split("/").pop()}.json`].sort());
  });

  it("falls back to the user cache when it cannot write beside the MLX files", async () => {
    // A file where the cache folder would go makes the MLX directory unusable for the cache,
    // as a read-only directory does (which root, running CI, could still write).
    const blocked = join(tmp, "blocked");
    await cp(mlx5, blocked, { recursive: true, filter: (src) => !src.includes(".llama-pajamas") });
    await writeFile(join(blocked, ".llama-pajamas"), "not a folder");
    const cache = join(tmp, "user-cache");
    const saved = process.env[CACHE_DIR_ENV];
    process.env[CACHE_DIR_ENV] = cache;
    try {
      const t = await ensureTranscoded(blocked);
      expect(t.cached).toBe(false);
      expect(t.path.startsWith(join(cache, "transcoded"))).toBe(true);
      expect((await ensureTranscoded(blocked)).cached).toBe(true);
      expect(t.report.sha256).toBe((await transcodeMLX({ dir: blocked, output: join(tmp, "q5-again.gguf") })).sha256);
    } finally {
      if (saved === undefined) delete process.env[CACHE_DIR_ENV];
      else process.env[CACHE_DIR_ENV] = saved;
    }
  });
});
