// Each fixture against llama.cpp's own converter output: the <arch>.* KVs (keys, order, types,
// values, and where general.file_type / general.quantization_version fall) and the tensor list
// (names, order, shapes, and the storage type each outtype gives).
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { getArchitecture } from "@llama-pajamas/gguf/architectures/index.js";
import type { TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { converterTensorType } from "@llama-pajamas/gguf/float-policy.js";
import { GGMLType, type GGUFKV, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { FIXTURES, loadConfig, loadRef, readSourceMap } from "./arch-helpers.js";

const MODELS = ["qwen3-tiny", "llama-tiny", "mixtral-tiny"] as const;
const OUT_TYPES = { f32: GGMLType.F32, f16: GGMLType.F16, bf16: GGMLType.BF16, q8_0: GGMLType.Q8_0 } as const;

function norm(kv: GGUFKV): { key: string; type: number; value: unknown } {
  const value = kv.type === GGUFValueType.FLOAT32 ? Math.fround(kv.value as number) : kv.value;
  return { key: kv.key, type: kv.type, value };
}

describe.each(MODELS)("%s", (model) => {
  const dir = join(FIXTURES, model);
  const config = loadConfig(dir);
  const arch = getArchitecture(config);
  const source = readSourceMap(dir);

  it.each(Object.keys(OUT_TYPES))("metadata matches the converter's <arch>.* keys and order (%s)", (outType) => {
    const ref = loadRef(model, outType);
    const meta = arch.metadata(config);
    const refKeys = Object.keys(ref.kv);
    // The agreed layout: general.architecture, afterArchitecture, general.*, beforeFileType,
    // general.file_type, afterFileType, general.quantization_version.
    const archKeys = refKeys.filter((k) => k.startsWith(`${arch.ggufArch}.`) || k === "general.file_type");
    const ours = [...meta.afterArchitecture, ...meta.beforeFileType, null, ...meta.afterFileType].map((kv) => (kv ? kv.key : "general.file_type"));
    expect(ours).toEqual(archKeys);
    expect(refKeys[0]).toBe("general.architecture");
    expect(refKeys.slice(1, 1 + meta.afterArchitecture.length)).toEqual(meta.afterArchitecture.map((k) => k.key));
    const firstOfOurs = meta.beforeFileType[0]!.key;
    expect(refKeys.slice(refKeys.indexOf("general.architecture") + 1 + meta.afterArchitecture.length, refKeys.indexOf(firstOfOurs)).every((k) => k.startsWith("general."))).toBe(true);
    const afterIdx = refKeys.indexOf("general.file_type") + meta.afterFileType.length + 1;
    expect(refKeys[afterIdx]).toBe("general.quantization_version");
    for (const kv of [...meta.afterArchitecture, ...meta.beforeFileType, ...meta.afterFileType]) {
      const r = ref.kv[kv.key]!;
      expect(norm(kv), kv.key).toEqual({ key: kv.key, type: r.type, value: r.value });
    }
    expect(arch.ggufArch).toBe(ref.kv["general.architecture"]!.value);
  });

  it("tensors() gives the converter's names, order and shapes", () => {
    const ref = loadRef(model, "f32");
    const plans = arch.tensors(config, source);
    expect(plans.map((p) => p.name)).toEqual(ref.tensors.map((t) => t.name));
    for (const [i, p] of plans.entries()) expect([...p.shape].reverse(), p.name).toEqual(ref.tensors[i]!.shape);
  });

  it.each(Object.entries(OUT_TYPES))("storage types per tensor agree for --outtype %s (keepF32)", (outType, ggml) => {
    const ref = loadRef(model, outType);
    const plans: TensorPlan[] = arch.tensors(config, source);
    const got = plans.map((p) => `${p.name}:${converterTensorType(p, ggml)}`);
    expect(got).toEqual(ref.tensors.map((t) => `${t.name}:${t.type}`));
  });

  it("every plan names existing sources and block ids", () => {
    for (const p of arch.tensors(config, source)) {
      for (const s of p.sources) expect(source.has(s), s).toBe(true);
      const m = /^blk\.(\d+)\./.exec(p.name);
      expect(p.bid).toBe(m ? Number(m[1]) : undefined);
      expect(p.sources.length > 0 || p.generate !== undefined).toBe(true);
    }
  });
});
