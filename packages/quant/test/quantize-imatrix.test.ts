// The imatrix reader on crafted files in both formats, with values worked out by hand from
// tools/quantize/quantize.cpp load_imatrix and common/imatrix-loader.cpp.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import { GGMLType, type GGUFKV, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { imatrixForTensor, parseLegacyImatrix, readImatrix } from "../src/quantize/imatrix.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-imatrix-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const META: GGUFKV[] = [
  { key: "general.type", type: GGUFValueType.STRING, value: "imatrix" },
  { key: "imatrix.datasets", type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: ["calib.txt"] },
  { key: "imatrix.chunk_count", type: GGUFValueType.UINT32, value: 7 },
  { key: "imatrix.chunk_size", type: GGUFValueType.UINT32, value: 512 },
];

interface T {
  name: string;
  shape: number[]; // PyTorch order
  data: Float32Array;
  type?: GGMLType;
}

async function gguf(file: string, tensors: T[], kv: GGUFKV[] = META): Promise<string> {
  const path = join(dir, file);
  const w = new GGUFWriter();
  for (const e of kv) w.addKV(e);
  for (const t of tensors) {
    const bytes = t.type === GGMLType.F16 ? t.data.byteLength / 2 : t.data.byteLength;
    w.addTensorInfo({ name: t.name, shape: t.shape, type: t.type ?? GGMLType.F32, byteLength: bytes });
  }
  await w.open(path);
  await w.writeHeader();
  for (const t of tensors) {
    const u8 = new Uint8Array(t.data.buffer);
    await w.writeTensorData(t.name, t.type === GGMLType.F16 ? u8.subarray(0, u8.length / 2) : u8);
  }
  await w.finish();
  return path;
}

const f32 = (...v: number[]) => Float32Array.from(v);

describe("GGUF imatrix", () => {
  it("divides sums by per-expert counts (lround, 1 for experts without tokens)", async () => {
    const path = await gguf("ok.gguf", [
      { name: "blk.0.attn_q.weight.in_sum2", shape: [1, 4], data: f32(10, 20, 30, 0.5) },
      { name: "blk.0.attn_q.weight.counts", shape: [1, 1], data: f32(10) },
      // 3 experts of 2 columns; counts 4, 0, 2.5 -> lround -> 3
      { name: "blk.0.ffn_down_exps.weight.in_sum2", shape: [3, 2], data: f32(8, 4, 9, 9, 3, 1.5) },
      { name: "blk.0.ffn_down_exps.weight.counts", shape: [3, 1], data: f32(4, 0, 2.5) },
      { name: "unrelated.tensor", shape: [2], data: f32(1, 2) },
    ]);
    const m = await readImatrix(path);
    expect(m.format).toBe("gguf");
    expect(m.datasets).toEqual(["calib.txt"]);
    expect(m.chunkCount).toBe(7);
    expect(m.chunkSize).toBe(512);
    expect([...m.keys()]).toEqual(["blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"]);
    expect([...m.get("blk.0.attn_q.weight")!]).toEqual([1, 2, 3, Math.fround(0.05)]);
    expect([...m.get("blk.0.ffn_down_exps.weight")!]).toEqual([2, 1, 1, 1, 1, 0.5]);
    // per-expert layout: the vector for ne [2, rows, 3] is 3 slices of 2
    expect(imatrixForTensor(m, "blk.0.ffn_down_exps.weight", [2, 5, 3])).toHaveLength(6);
    expect(imatrixForTensor(m, "blk.0.attn_q.weight", [4, 8])).toHaveLength(4);
    expect(imatrixForTensor(m, "blk.9.attn_q.weight", [4, 8])).toBeUndefined();
    expect(() => imatrixForTensor(m, "blk.0.attn_q.weight", [8, 8])).toThrow(ConversionError);
  });

  it("ignores a token_embd entry of the wrong size, as llama_model_quantize does", () => {
    const m = new Map([["token_embd.weight", f32(1, 2, 3)]]);
    expect(imatrixForTensor(m, "token_embd.weight", [4, 10])).toBeUndefined();
  });

  it.each([
    ["no .counts", [{ name: "a.weight.in_sum2", shape: [1, 2], data: f32(1, 2) }], /mismatched sums and counts for a.weight/],
    ["no .in_sum2", [{ name: "a.weight.counts", shape: [1, 1], data: f32(1) }], /mismatched sums and counts/],
    [
      "F16 sums",
      [{ name: "a.weight.in_sum2", shape: [1, 2], data: f32(1, 2), type: GGMLType.F16 }, { name: "a.weight.counts", shape: [1, 1], data: f32(1) }],
      /must be F32/,
    ],
    [
      "sums not a multiple of counts",
      [{ name: "a.weight.in_sum2", shape: [1, 3], data: f32(1, 2, 3) }, { name: "a.weight.counts", shape: [2, 1], data: f32(1, 1) }],
      /not a multiple/,
    ],
    [
      "non-finite value",
      [{ name: "a.weight.in_sum2", shape: [1, 2], data: f32(1, Infinity) }, { name: "a.weight.counts", shape: [1, 1], data: f32(1) }],
      /non-finite/,
    ],
    ["no tensors", [], /no tensors/],
  ] as [string, T[], RegExp][])("rejects a file with %s", async (label, tensors, re) => {
    const path = await gguf(`bad-${label.replace(/\W/g, "_")}.gguf`, tensors);
    await expect(readImatrix(path)).rejects.toThrow(re);
    await expect(readImatrix(path)).rejects.toBeInstanceOf(InputError);
  });

  it("rejects a GGUF without the imatrix metadata llama-quantize requires", async () => {
    const path = await gguf("nometa.gguf", [{ name: "a.weight.in_sum2", shape: [1, 1], data: f32(1) }, { name: "a.weight.counts", shape: [1, 1], data: f32(1) }], META.slice(0, 2));
    await expect(readImatrix(path)).rejects.toThrow(/missing imatrix metadata \(imatrix.chunk_count, imatrix.chunk_size\)/);
  });

  it("reports a truncated GGUF", async () => {
    const path = await gguf("trunc.gguf", [{ name: "a.weight.in_sum2", shape: [1, 64], data: new Float32Array(64) }, { name: "a.weight.counts", shape: [1, 1], data: f32(1) }]);
    const { readFile } = await import("node:fs/promises");
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 100));
    await expect(readImatrix(path)).rejects.toBeInstanceOf(InputError);
  });
});

/** Legacy layout: i32 n, { i32 len, name, i32 ncall, i32 nval, f32[nval] }*, [i32 chunks, i32 len, dataset]. */
function legacy(entries: { name: string; ncall: number; values: number[] }[], trailer?: { chunks: number; dataset: string }): Uint8Array {
  const parts: Buffer[] = [];
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  i32(entries.length);
  for (const e of entries) {
    const name = Buffer.from(e.name);
    i32(name.length);
    parts.push(name);
    i32(e.ncall);
    i32(e.values.length);
    parts.push(Buffer.from(Float32Array.from(e.values).buffer));
  }
  if (trailer) {
    i32(trailer.chunks);
    i32(trailer.dataset.length);
    parts.push(Buffer.from(trailer.dataset));
  }
  return new Uint8Array(Buffer.concat(parts));
}

describe("legacy .dat imatrix", () => {
  it("divides by ncall when it is positive and reads the optional trailer", async () => {
    const bytes = legacy(
      [
        { name: "blk.0.attn_k.weight", ncall: 4, values: [2, 6, 1] },
        { name: "blk.0.attn_v.weight", ncall: 0, values: [5, 7] },
      ],
      { chunks: 42, dataset: "wiki.train.raw" },
    );
    const path = join(dir, "legacy.dat");
    await writeFile(path, bytes);
    const m = await readImatrix(path);
    expect(m.format).toBe("legacy");
    expect([...m.get("blk.0.attn_k.weight")!]).toEqual([0.5, 1.5, 0.25]);
    expect([...m.get("blk.0.attn_v.weight")!]).toEqual([5, 7]);
    expect(m.chunkCount).toBe(42);
    expect(m.datasets).toEqual(["wiki.train.raw"]);
    const bare = parseLegacyImatrix(legacy([{ name: "x", ncall: 3, values: [3] }]));
    expect([...bare.get("x")!]).toEqual([1]);
    expect(bare.datasets).toEqual([]);
  });

  it.each([
    ["an empty file", new Uint8Array(0), /truncated at byte 0/],
    ["zero entries", legacy([]), /no data: entry count is 0/],
    ["a truncated value array", legacy([{ name: "a", ncall: 1, values: [1, 2, 3] }]).subarray(0, 20), /truncated in the 3 values of a/],
    ["zero values", legacy([{ name: "a", ncall: 1, values: [] }]), /has 0 values/],
    ["a negative name length", Uint8Array.from([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), /name length -1/],
    ["a NaN", legacy([{ name: "a", ncall: 1, values: [NaN] }]), /non-finite/],
  ] as [string, Uint8Array, RegExp][])("rejects %s", (_label, bytes, re) => {
    expect(() => parseLegacyImatrix(bytes, "x.dat")).toThrow(re);
    expect(() => parseLegacyImatrix(bytes, "x.dat")).toThrow(InputError);
  });

  it("names the file when it cannot be read", async () => {
    await expect(readImatrix(join(dir, "missing.dat"))).rejects.toThrow(/missing\.dat/);
  });
});
