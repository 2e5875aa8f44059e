// The random-checkpoint presets against llama.cpp's converter. arch-presets-ref.json was made by
// scripts/preset-references.py (convert_hf_to_gguf.py --outtype f32/f16/q8_0 on each preset at a
// fixed seed); this test regenerates the same checkpoints, so it also checks that
// make-random-checkpoint.mjs reproduces its bytes exactly from (preset, seed).
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getArchitecture } from "@llama-pajamas/gguf/architectures/index.js";
import type { ArchitectureMetadata, HFConfig, TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { converterTensorType } from "@llama-pajamas/gguf/float-policy.js";
import { GGMLType, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
// @ts-expect-error plain-JS script without type declarations
import { makeRandomCheckpoint } from "../../../scripts/make-random-checkpoint.mjs";
import { FIXTURES, type LocatedTensor, loadConfig, readF32, readSourceMap, sha256F32 } from "./arch-helpers.js";

interface PresetRef {
  kv: [string, number, unknown?][];
  tensors: { name: string; shape: number[]; sha256: string; types: Record<"f32" | "f16" | "q8_0", number> }[];
}
const REF = JSON.parse(readFileSync(new URL("./arch-presets-ref.json", import.meta.url), "utf8")) as {
  seed: number;
  presets: Record<string, PresetRef>;
  variants: Record<string, { config: HFConfig; kv: [string, number, unknown?][] }>;
};
const OUT_TYPES = { f32: GGMLType.F32, f16: GGMLType.F16, q8_0: GGMLType.Q8_0 } as const;

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "arch-presets-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The preset's checkpoint at the reference seed, made once per test run. */
function presetDir(preset: string): string {
  const dir = join(root, preset);
  if (!existsSync(join(dir, "config.json"))) {
    makeRandomCheckpoint({ preset, out: dir, seed: REF.seed, maxShardBytes: 5e9, fixtures: FIXTURES });
  }
  return dir;
}

function allKVs(meta: ArchitectureMetadata) {
  return [...meta.afterArchitecture, ...meta.beforeFileType, ...meta.afterFileType];
}

/** The agreed layout, against the converter's full KV list (tokenizer.* left out). */
function checkMetadata(config: HFConfig, refKv: [string, number, unknown?][]): void {
  const arch = getArchitecture(config);
  const meta = arch.metadata(config);
  const keys = refKv.map((e) => e[0]);
  expect(keys[0]).toBe("general.architecture");
  expect(keys.slice(1, 1 + meta.afterArchitecture.length)).toEqual(meta.afterArchitecture.map((k) => k.key));
  const rest = keys.slice(1 + meta.afterArchitecture.length);
  const generalRun = rest.findIndex((k) => !k.startsWith("general."));
  expect(rest.slice(generalRun, generalRun + meta.beforeFileType.length)).toEqual(meta.beforeFileType.map((k) => k.key));
  const ft = keys.indexOf("general.file_type");
  expect(ft).toBe(1 + meta.afterArchitecture.length + generalRun + meta.beforeFileType.length);
  expect(keys.slice(ft + 1, ft + 1 + meta.afterFileType.length)).toEqual(meta.afterFileType.map((k) => k.key));
  expect(keys[ft + 1 + meta.afterFileType.length]).toBe("general.quantization_version");
  expect(keys.filter((k) => !k.startsWith("general.")).length).toBe(allKVs(meta).length);
  const byKey = new Map(refKv.map((e) => [e[0], e]));
  for (const kv of allKVs(meta)) {
    const [, type, value] = byKey.get(kv.key)!;
    expect(kv.type, kv.key).toBe(type);
    expect(kv.type === GGUFValueType.FLOAT32 ? Math.fround(kv.value as number) : kv.value, kv.key).toBe(value);
  }
  expect(arch.ggufArch).toBe(byKey.get("general.architecture")![2]);
}

describe.each(Object.keys(REF.presets))("preset %s", (preset) => {
  const ref = REF.presets[preset]!;
  let dir: string;
  let config: HFConfig;
  let source: Map<string, LocatedTensor>;
  let plans: TensorPlan[];

  beforeAll(() => {
    dir = presetDir(preset);
    config = loadConfig(dir);
    source = readSourceMap(dir);
    plans = getArchitecture(config).tensors(config, source);
  });

  it("metadata: keys, order, types and values around general.*", () => {
    checkMetadata(config, ref.kv);
  });

  it("tensors: names, order, shapes and storage type per outtype", () => {
    expect(plans.map((p) => p.name)).toEqual(ref.tensors.map((t) => t.name));
    plans.forEach((p, i) => {
      const t = ref.tensors[i]!;
      expect([...p.shape].reverse(), p.name).toEqual(t.shape);
      for (const [ot, ggml] of Object.entries(OUT_TYPES)) {
        expect(converterTensorType(p, ggml), `${p.name} ${ot}`).toBe(t.types[ot as keyof typeof OUT_TYPES]);
      }
    });
  });

  it("every tensor's data hashes like the converter's f32 output", () => {
    plans.forEach((p, i) => {
      const data = p.generate ? p.generate() : p.build ? p.build(p.sources.map((s) => readF32(source.get(s)!))) : readF32(source.get(p.sources[0]!)!);
      expect(sha256F32(data), p.name).toBe(ref.tensors[i]!.sha256);
    });
  });
});

describe("config variants (defaults from transformers, rope scaling, Gemma 3 multimodal)", () => {
  it.each(Object.keys(REF.variants))("%s", (name) => {
    const v = REF.variants[name]!;
    checkMetadata(v.config, v.kv);
  });
});

describe("other checkpoint layouts of the same weights", () => {
  it("gemma3 multimodal: language_model.* (transformers 4) and model.language_model.* (5) names, towers dropped", () => {
    const dir = presetDir("gemma3");
    const plain = readSourceMap(dir);
    const config = REF.variants["gemma3_multimodal"]!.config;
    const ref = REF.presets["gemma3"]!.tensors;
    for (const rename of [(n: string) => `language_model.${n}`, (n: string) => n.replace(/^model\./, "model.language_model.")]) {
      const source = new Map<string, LocatedTensor>();
      source.set("multi_modal_projector.mm_input_projection_weight", { name: "", dtype: "BF16", shape: [64, 256], file: "", begin: 0, end: 0 });
      for (const [n, t] of plain) source.set(rename(n), t);
      source.set("vision_tower.vision_model.post_layernorm.weight", { name: "", dtype: "BF16", shape: [64], file: "", begin: 0, end: 0 });
      const plans = getArchitecture(config).tensors(config, source);
      expect(plans.map((p) => p.name)).toEqual(ref.map((t) => t.name));
      plans.forEach((p, i) => {
        const data = p.build ? p.build(p.sources.map((s) => readF32(source.get(s)!))) : readF32(source.get(p.sources[0]!)!);
        expect(sha256F32(data), p.name).toBe(ref[i]!.sha256);
      });
    }
  });

  it("qwen3_moe: transformers 5 fused experts (gate_up_proj, down_proj) give the same GGUF tensors", () => {
    const dir = presetDir("qwen3_moe");
    const plain = readSourceMap(dir);
    const config = loadConfig(dir);
    const data = new Map<string, Float32Array>();
    const source = new Map<string, LocatedTensor>();
    const fake = (shape: number[]): LocatedTensor => ({ name: "", dtype: "BF16", shape, file: "", begin: 0, end: 0 });
    for (const [n, t] of plain) if (!n.includes(".experts.")) source.set(n, t);
    for (const b of [0, 1]) {
      const p = `model.layers.${b}.mlp.experts`;
      const part = (w: string) => [...Array(8).keys()].map((e) => readF32(plain.get(`${p}.${e}.${w}.weight`)!));
      const gate = part("gate_proj");
      const up = part("up_proj");
      const fused = new Float32Array(8 * 512 * 256);
      for (let e = 0; e < 8; e++) {
        fused.set(gate[e]!, e * 512 * 256);
        fused.set(up[e]!, e * 512 * 256 + 256 * 256);
      }
      data.set(`${p}.gate_up_proj`, fused);
      source.set(`${p}.gate_up_proj`, fake([8, 512, 256]));
      data.set(`${p}.down_proj`, Float32Array.from(part("down_proj").flatMap((a) => [...a])));
      source.set(`${p}.down_proj`, fake([8, 256, 256]));
    }
    const sorted = new Map([...source].sort(([a], [b]) => (a < b ? -1 : 1)));
    const plans = getArchitecture(config).tensors(config, sorted);
    const ref = new Map(REF.presets["qwen3_moe"]!.tensors.map((t) => [t.name, t]));
    expect(new Set(plans.map((p) => p.name))).toEqual(new Set(ref.keys()));
    for (const p of plans) {
      const inputs = p.sources.map((s) => data.get(s) ?? readF32(sorted.get(s)!));
      const out = p.build ? p.build(inputs) : inputs[0]!;
      expect([...p.shape].reverse(), p.name).toEqual(ref.get(p.name)!.shape);
      expect(sha256F32(out), p.name).toBe(ref.get(p.name)!.sha256);
    }
  });
});

describe("make-random-checkpoint", () => {
  it("shards past --max-shard-size with an index, and the converter order still holds", () => {
    const dir = join(root, "sharded");
    const r = makeRandomCheckpoint({ preset: "mistral", out: dir, seed: REF.seed, maxShardBytes: 8e6, fixtures: FIXTURES }) as { files: string[] };
    expect(r.files.length).toBeGreaterThan(2);
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(r.files));
    const config = loadConfig(dir);
    const source = readSourceMap(dir);
    const plans = getArchitecture(config).tensors(config, source);
    // Same tensors as the single-file checkpoint, same bytes, but in the sharded file order.
    const ref = new Map(REF.presets["mistral"]!.tensors.map((t) => [t.name, t.sha256]));
    expect(new Set(plans.map((p) => p.name))).toEqual(new Set(ref.keys()));
    const q = plans.find((p) => p.name === "blk.1.attn_q.weight")!;
    expect(sha256F32(q.build!(q.sources.map((s) => readF32(source.get(s)!))))).toBe(ref.get(q.name));
  });

  it("is byte-for-byte reproducible and changes with the seed", () => {
    const a = join(root, "repro-a");
    const b = join(root, "repro-b");
    makeRandomCheckpoint({ preset: "gemma3", out: a, seed: 1, maxShardBytes: 5e9, fixtures: FIXTURES });
    makeRandomCheckpoint({ preset: "gemma3", out: b, seed: 1, maxShardBytes: 5e9, fixtures: FIXTURES });
    for (const f of ["model.safetensors", "config.json", "tokenizer.model"]) {
      expect(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), f).toBe(true);
    }
    const c = join(root, "repro-c");
    makeRandomCheckpoint({ preset: "gemma3", out: c, seed: 2, maxShardBytes: 5e9, fixtures: FIXTURES });
    expect(readFileSync(join(a, "model.safetensors")).equals(readFileSync(join(c, "model.safetensors")))).toBe(false);
  });
});
