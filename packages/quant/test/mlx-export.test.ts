// The MLX export of the three fixture models at 4 and 8 bits and 4bit_mixed, checked against what
// mlx-lm's model files and mlx_lm.convert produce: tensor names, shapes, dtypes, config.json,
// the shard index, copied files, and the dequantized weights against the originals.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SafetensorsTensor, openCheckpointTensors, readSafetensorsHeader, readTensorBytes, readTensorF32 } from "@llama-pajamas/gguf/formats/safetensors.js";
import { affineDequantize, affineGroupParams, affineQuantize, castToDtype } from "@llama-pajamas/gguf/mlx/affine.js";
import { type MLXExportResult, exportMLX } from "../src/mlx/export.js";
import { filesDigest } from "../src/mlx/metadata.js";
import { FIXTURES, MODELS } from "./helpers.js";
import { u16, u32 } from "./mlx-helpers.js";

interface Dims {
  layers: number;
  hidden: number;
  inter: number;
  heads: number;
  kv: number;
  headDim: number;
  vocab: number;
  experts?: number;
  qkNorm?: boolean;
}
const DIMS: Record<(typeof MODELS)[number], Dims> = {
  "qwen3-tiny": { layers: 4, hidden: 256, inter: 768, heads: 4, kv: 2, headDim: 64, vocab: 151936, qkNorm: true },
  "llama-tiny": { layers: 4, hidden: 256, inter: 768, heads: 4, kv: 2, headDim: 64, vocab: 32000 },
  "mixtral-tiny": { layers: 2, hidden: 256, inter: 512, heads: 4, kv: 2, headDim: 64, vocab: 32000, experts: 8 },
};

/** mlx-lm's module tree for the fixture (all three tie their embeddings: no lm_head). */
function expectedModules(d: Dims): { path: string; shape: number[]; quantizable: boolean }[] {
  const out = [{ path: "model.embed_tokens", shape: [d.vocab, d.hidden], quantizable: true }];
  for (let l = 0; l < d.layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { path: `${p}.self_attn.q_proj`, shape: [d.heads * d.headDim, d.hidden], quantizable: true },
      { path: `${p}.self_attn.k_proj`, shape: [d.kv * d.headDim, d.hidden], quantizable: true },
      { path: `${p}.self_attn.v_proj`, shape: [d.kv * d.headDim, d.hidden], quantizable: true },
      { path: `${p}.self_attn.o_proj`, shape: [d.hidden, d.heads * d.headDim], quantizable: true },
    );
    if (d.qkNorm) out.push({ path: `${p}.self_attn.q_norm`, shape: [d.headDim], quantizable: false }, { path: `${p}.self_attn.k_norm`, shape: [d.headDim], quantizable: false });
    if (d.experts) {
      const e = d.experts;
      out.push(
        { path: `${p}.block_sparse_moe.gate`, shape: [e, d.hidden], quantizable: true },
        { path: `${p}.block_sparse_moe.switch_mlp.gate_proj`, shape: [e, d.inter, d.hidden], quantizable: true },
        { path: `${p}.block_sparse_moe.switch_mlp.up_proj`, shape: [e, d.inter, d.hidden], quantizable: true },
        { path: `${p}.block_sparse_moe.switch_mlp.down_proj`, shape: [e, d.hidden, d.inter], quantizable: true },
      );
    } else {
      out.push(
        { path: `${p}.mlp.gate_proj`, shape: [d.inter, d.hidden], quantizable: true },
        { path: `${p}.mlp.down_proj`, shape: [d.hidden, d.inter], quantizable: true },
        { path: `${p}.mlp.up_proj`, shape: [d.inter, d.hidden], quantizable: true },
      );
    }
    out.push({ path: `${p}.input_layernorm`, shape: [d.hidden], quantizable: false }, { path: `${p}.post_attention_layernorm`, shape: [d.hidden], quantizable: false });
  }
  out.push({ path: "model.norm", shape: [d.hidden], quantizable: false });
  return out;
}

/** The HF tensors a module's weight is made of (mixtral's sanitize stacks w1/w2/w3 per expert). */
function sourceNames(path: string, d: Dims): string[] {
  const m = /^(model\.layers\.\d+)\.block_sparse_moe\.switch_mlp\.(\w+)$/.exec(path);
  if (!m) return [`${path}.weight`];
  const hf = { gate_proj: "w1", down_proj: "w2", up_proj: "w3" }[m[2]!]!;
  return Array.from({ length: d.experts! }, (_, e) => `${m[1]}.block_sparse_moe.experts.${e}.${hf}.weight`);
}

async function sourceF32(sources: Map<string, SafetensorsTensor>, names: string[]): Promise<Float32Array> {
  const parts = await Promise.all(names.map((n) => readTensorF32(sources.get(n)!)));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

const METHODS: { method: string; bits: (path: string) => number }[] = [
  { method: "4bit", bits: () => 4 },
  { method: "8bit", bits: () => 8 },
  { method: "4bit_mixed", bits: (path) => (path === "model.embed_tokens" ? 6 : 4) },
];

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "lp-mlx-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

for (const model of MODELS) {
  const d = DIMS[model];
  describe(`${model}`, () => {
    let sources: Map<string, SafetensorsTensor>;
    beforeAll(async () => {
      sources = await openCheckpointTensors(join(FIXTURES, model));
    });

    for (const { method, bits } of METHODS) {
      describe(method, () => {
        let result: MLXExportResult;
        let dir: string;
        let out: Map<string, SafetensorsTensor>;
        beforeAll(async () => {
          dir = join(tmp, `${model}-${method}`);
          result = await exportMLX({ model: join(FIXTURES, model), output: dir, method });
          out = new Map((await readSafetensorsHeader(join(dir, "model.safetensors"))).tensors.map((t) => [t.name, t]));
        });

        it("writes the files mlx_lm.convert writes, plus metadata.json", async () => {
          const files = (await readdir(dir)).sort();
          expect(files).toEqual(
            ["README.md", "config.json", "generation_config.json", "metadata.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"].sort(),
          );
          for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
            expect((await readFile(join(dir, f))).equals(await readFile(join(FIXTURES, model, f))), f).toBe(true);
          }
          const header = await readFile(join(dir, "model.safetensors"));
          const len = Number(header.readBigUInt64LE(0));
          expect(header.subarray(8, 8 + len).toString().startsWith('{"__metadata__":{"format":"mlx"},')).toBe(true);
        });

        it("names, shapes and dtypes are mlx-lm's model's, with weight/scales/biases per quantized module", () => {
          const expected = new Map<string, { dtype: string; shape: number[] }>();
          for (const m of expectedModules(d)) {
            if (!m.quantizable) {
              expected.set(`${m.path}.weight`, { dtype: "BF16", shape: m.shape });
              continue;
            }
            const b = bits(m.path);
            const lead = m.shape.slice(0, -1);
            const cols = m.shape.at(-1)!;
            expected.set(`${m.path}.weight`, { dtype: "U32", shape: [...lead, (cols * b) / 32] });
            expected.set(`${m.path}.scales`, { dtype: "BF16", shape: [...lead, cols / 64] });
            expected.set(`${m.path}.biases`, { dtype: "BF16", shape: [...lead, cols / 64] });
          }
          expect([...out.keys()].sort()).toEqual([...expected.keys()].sort());
          for (const [name, t] of out) expect({ dtype: t.dtype, shape: t.shape }, name).toEqual(expected.get(name));
        });

        it("config.json is the HF config plus eos from generation_config and quantization, sorted and in Python's JSON", async () => {
          const text = await readFile(join(dir, "config.json"), "utf8");
          const config = JSON.parse(text) as Record<string, unknown>;
          const hf = JSON.parse(await readFile(join(FIXTURES, model, "config.json"), "utf8")) as Record<string, unknown>;
          const gen = JSON.parse(await readFile(join(FIXTURES, model, "generation_config.json"), "utf8")) as Record<string, unknown>;
          const quantization: Record<string, unknown> = { group_size: 64, bits: method === "8bit" ? 8 : 4, mode: "affine" };
          if (method === "4bit_mixed") quantization["model.embed_tokens"] = { group_size: 64, bits: 6, mode: "affine" };
          expect(config).toEqual({ ...hf, eos_token_id: gen.eos_token_id, quantization, quantization_config: quantization });
          expect(Object.keys(config)).toEqual(Object.keys(config).sort());
          expect(text).toContain('\n    "rms_norm_eps": 1e-06,\n');
          expect(text).toContain('    "quantization": {\n        "group_size": 64,\n        "bits": ');
          expect(text).toContain(model === "llama-tiny" ? '"rope_theta": 500000.0' : '"rope_theta": 1000000.0');
          expect(text).toContain('"attention_dropout": 0.0');
          expect(text.endsWith("}")).toBe(true); // json.dump writes no final newline
        });

        it("model.safetensors.index.json: sorted weight_map, total_size, total_parameters", async () => {
          const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as {
            metadata: { total_size: number; total_parameters: number };
            weight_map: Record<string, string>;
          };
          const names = Object.keys(index.weight_map);
          expect(names).toEqual([...out.keys()].sort());
          expect(new Set(Object.values(index.weight_map))).toEqual(new Set(["model.safetensors"]));
          expect(index.metadata.total_size).toBe([...out.values()].reduce((s, t) => s + t.end - t.start, 0));
          // get_total_parameters: the unquantized element count (the tied lm_head.weight is not one).
          const params = [...sources.values()].filter((t) => t.name !== "lm_head.weight").reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
          expect(index.metadata.total_parameters).toBe(params);
          expect(result.totalParameters).toBe(params);
        });

        it("quantized tensors are MLX's quantization of the sanitized source, and dequantize to it within the step bound", async () => {
          let checked = 0;
          for (const m of expectedModules(d).filter((x) => x.quantizable)) {
            const b = bits(m.path);
            const cols = m.shape.at(-1)!;
            const src = castToDtype(await sourceF32(sources, sourceNames(m.path, d)), "bfloat16");
            const want = affineQuantize({ data: src, cols, groupSize: 64, bits: b, dtype: "bfloat16" });
            const got = { weight: await u32(out.get(`${m.path}.weight`)!), scales: await u16(out.get(`${m.path}.scales`)!), biases: await u16(out.get(`${m.path}.biases`)!) };
            expect(Buffer.from(got.weight.buffer, got.weight.byteOffset, got.weight.byteLength).equals(Buffer.from(want.weight.buffer)), m.path).toBe(true);
            expect(Buffer.from(got.scales.buffer, got.scales.byteOffset, got.scales.byteLength).equals(Buffer.from(want.scales.buffer)), m.path).toBe(true);
            expect(Buffer.from(got.biases.buffer, got.biases.byteOffset, got.biases.byteLength).equals(Buffer.from(want.biases.buffer)), m.path).toBe(true);
            // Dequantize and compare with the original: within half a step (the stored scale) plus
            // the bf16 rounding of scale, bias and result; values clipped at the far edge within one step.
            if (m.path === "model.embed_tokens" && model === "qwen3-tiny" && method !== "4bit") continue; // 39M values: once is enough
            const back = affineDequantize({ ...got, cols, groupSize: 64, bits: b, dtype: "bfloat16" });
            let worst = 0;
            const n = 2 ** b - 1;
            for (let g = 0; g < src.length / 64; g++) {
              const p = affineGroupParams(src, g * 64, { groupSize: 64, bits: b });
              const sT = Math.abs(castToDtype(new Float32Array([p.scale]), "bfloat16")[0]!);
              const slack = n * Math.abs(Math.abs(p.scale) - sT) + Math.abs(p.bias) * 2 ** -8;
              for (let j = 0; j < 64; j++) {
                const i = g * 64 + j;
                const clipped = (src[i]! - p.bias) / p.scale > n + 0.5;
                const bound = (clipped ? 1 : 0.5) * Math.abs(p.scale) * (1 + 1e-5) + slack + Math.abs(back[i]!) * 2 ** -8;
                const err = Math.abs(back[i]! - src[i]!);
                if (err > bound) expect.fail(`${m.path}[${i}]: |${back[i]} - ${src[i]}| = ${err} > ${bound}`);
                worst = Math.max(worst, err / (0.5 * Math.abs(p.scale)));
              }
            }
            if (process.env.MLX_REPORT) console.log(`${model} ${method} ${m.path}: worst error ${worst.toFixed(3)} half-steps`);
            checked++;
          }
          expect(checked).toBeGreaterThan(0);
        });

        it("norms are copied bit for bit in bf16", async () => {
          for (const m of expectedModules(d).filter((x) => !x.quantizable)) {
            const a = await readTensorBytes(out.get(`${m.path}.weight`)!);
            const b = await readTensorBytes(sources.get(`${m.path}.weight`)!);
            expect(a.equals(b), m.path).toBe(true);
          }
        });

        it("metadata.json records bits, group size and every file's sha256", async () => {
          const meta = JSON.parse(await readFile(join(dir, "metadata.json"), "utf8"));
          expect(meta).toMatchObject({
            format: "mlx",
            format_version: "1",
            dtype: "bfloat16",
            compatible_backends: ["mlx"],
            quantization: {
              method,
              mode: "affine",
              group_size: 64,
              body_bits: method === "8bit" ? 8 : 4,
              embedding_bits: method === "8bit" ? 8 : method === "4bit_mixed" ? 6 : 4,
              not_divisible: [],
              kernel: "metal",
            },
          });
          expect(meta.quantization.lm_head_bits).toBeUndefined();
          const files = (await readdir(dir)).filter((f) => f !== "metadata.json").sort();
          expect(meta.files.map((f: { name: string }) => f.name)).toEqual(files);
          for (const f of meta.files as { name: string; size_bytes: number; sha256: string }[]) {
            const bytes = await readFile(join(dir, f.name));
            expect(f.size_bytes).toBe(bytes.length);
            expect(f.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
          }
          expect(meta.files_sha256).toBe(filesDigest(meta.files));
          expect(result.sha256).toBe(meta.files_sha256);
          expect(result.sizeBytes).toBe(meta.files.reduce((s: number, f: { size_bytes: number }) => s + f.size_bytes, 0));
        });
      });
    }
  });
}
