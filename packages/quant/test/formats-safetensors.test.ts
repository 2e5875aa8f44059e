import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, ConversionError } from "@llama-pajamas/artifact";
import { FIXTURES } from "./helpers.js";
import {
  closeCheckpointFiles,
  compareCodePoints,
  openCheckpointTensors,
  readSafetensorsHeader,
  readTensorBytes,
  readTensorF32,
} from "@llama-pajamas/gguf/formats/safetensors.js";

const MODELS = FIXTURES;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "formats-st-"));
});
afterAll(async () => {
  await closeCheckpointFiles();
  await rm(tmp, { recursive: true, force: true });
});

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Writes a safetensors file with entries in the given (header) order, data packed in order. */
async function writeSt(path: string, entries: Entry[], extra: Record<string, unknown> = {}): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" }, ...extra };
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.data.length] };
    off += e.data.length;
  }
  await writeRaw(path, JSON.stringify(header), Buffer.concat(entries.map((e) => e.data)));
}

async function writeRaw(path: string, json: string, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Promise<void> {
  const h = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(h.length));
  await writeFile(path, Buffer.concat([len, h, data]));
}

const bytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe("fixture checkpoints", () => {
  it("qwen3-tiny: 46 tensors, sorted by name, BF16", async () => {
    const m = await openCheckpointTensors(join(MODELS, "qwen3-tiny"));
    expect(m.size).toBe(46);
    const names = [...m.keys()];
    expect(names[0]).toBe("model.embed_tokens.weight");
    expect(names).toEqual([...names].sort(compareCodePoints));
    const emb = m.get("model.embed_tokens.weight")!;
    expect(emb.dtype).toBe("BF16");
    expect(emb.shape).toEqual([151936, 256]);
    const qn = m.get("model.layers.0.self_attn.q_norm.weight")!;
    expect(qn.shape).toEqual([64]);
    expect([qn.start, qn.end]).toEqual([79173656, 79173784]);
    const f = await readTensorF32(qn);
    expect(Array.from(f.subarray(0, 4))).toEqual([1.3125, 1.484375, 1.328125, 1.453125]);
    expect(f.reduce((a, b) => a + b, 0)).toBeCloseTo(87.265625, 4);
  });

  it("llama-tiny (sharded, with index): shards in sorted order, names sorted within each", async () => {
    const m = await openCheckpointTensors(join(MODELS, "llama-tiny"));
    expect(m.size).toBe(38);
    const names = [...m.keys()];
    expect(names[0]).toBe("model.embed_tokens.weight");
    expect(m.get("model.embed_tokens.weight")!.file).toMatch(/model-00001-of-00003\.safetensors$/);
    // Layer 2 is split over shards 2 and 3; the reference GGUF (ref/sum/llama-tiny-f16.json)
    // lists blk.2 as ffn_gate, attn_k, attn_output, attn_q, attn_v, attn_norm, ffn_down,
    // ffn_up, ffn_norm: exactly this visiting order.
    const layer2 = names.filter((n) => n.startsWith("model.layers.2."));
    expect(layer2).toEqual([
      "model.layers.2.mlp.gate_proj.weight",
      "model.layers.2.self_attn.k_proj.weight",
      "model.layers.2.self_attn.o_proj.weight",
      "model.layers.2.self_attn.q_proj.weight",
      "model.layers.2.self_attn.v_proj.weight",
      "model.layers.2.input_layernorm.weight",
      "model.layers.2.mlp.down_proj.weight",
      "model.layers.2.mlp.up_proj.weight",
      "model.layers.2.post_attention_layernorm.weight",
    ]);
    expect(names[names.length - 1]).toBe("model.norm.weight");
    const norm = await readTensorF32(m.get("model.norm.weight")!);
    expect(norm.length).toBe(256);
    expect(Array.from(norm.subarray(0, 4))).toEqual([3.09375, 2.8125, 3.296875, 3.0]);
    expect(norm.reduce((a, b) => a + b, 0)).toBeCloseTo(744.875, 3);
  });

  it("mixtral-tiny: 64 tensors including 48 expert weights; ranges read positionally", async () => {
    const m = await openCheckpointTensors(join(MODELS, "mixtral-tiny"));
    expect(m.size).toBe(64);
    expect([...m.keys()].filter((n) => n.includes(".experts.")).length).toBe(48);
    expect([...m.keys()].slice(1, 3)).toEqual([
      "model.layers.0.block_sparse_moe.experts.0.w1.weight",
      "model.layers.0.block_sparse_moe.experts.0.w2.weight",
    ]);
    const gate = m.get("model.layers.0.block_sparse_moe.gate.weight")!;
    expect(gate.shape).toEqual([8, 256]);
    const f = await readTensorF32(gate);
    expect(Array.from(f.subarray(0, 4))).toEqual([0.02294921875, 0.013916015625, 0.1826171875, 0.0003108978271484375]);
    const part = await readTensorF32(gate, { startElement: 2, elementCount: 2 });
    expect(Array.from(part)).toEqual([0.1826171875, 0.0003108978271484375]);
    expect((await readTensorBytes(gate, { offsetBytes: 4, lengthBytes: 4 })).length).toBe(4);
  });

  it("readSafetensorsHeader keeps header order and __metadata__", async () => {
    const h = await readSafetensorsHeader(join(MODELS, "qwen3-tiny", "model.safetensors"));
    expect(h.metadata).toEqual({ format: "pt" });
    expect(h.tensors.length).toBe(46);
  });
});

describe("visiting order and checkpoint layouts", () => {
  it("sorts each file's tensors by name (code points), not header order", async () => {
    const dir = join(tmp, "unsorted");
    await mkdir(dir);
    const one = (name: string): Entry => ({ name, dtype: "F32", shape: [1], data: bytes(Float32Array.of(1)) });
    // U+FF5E sorts before U+1F600 by code point but after it in UTF-16 units.
    await writeSt(join(dir, "model.safetensors"), [one("zeta"), one("b\u{1F600}"), one("alpha"), one("b\uFF5E")]);
    const m = await openCheckpointTensors(dir);
    expect([...m.keys()]).toEqual(["alpha", "b\uFF5E", "b\u{1F600}", "zeta"]);
    const h = await readSafetensorsHeader(join(dir, "model.safetensors"));
    expect(h.tensors.map((t) => t.name)).toEqual(["zeta", "b\u{1F600}", "alpha", "b\uFF5E"]);
  });

  it("without index: model*.safetensors files in sorted order; a repeated name keeps its first slot", async () => {
    const dir = join(tmp, "multi");
    await mkdir(dir);
    const t = (name: string, v: number): Entry => ({ name, dtype: "F32", shape: [1], data: bytes(Float32Array.of(v)) });
    await writeSt(join(dir, "model-b.safetensors"), [t("y", 2), t("shared", 20)]);
    await writeSt(join(dir, "model-a.safetensors"), [t("x", 1), t("shared", 10)]);
    await writeSt(join(dir, "other.safetensors"), [t("ignored", 3)]);
    const m = await openCheckpointTensors(dir);
    expect([...m.keys()]).toEqual(["shared", "x", "y"]);
    expect(Array.from(await readTensorF32(m.get("shared")!))).toEqual([20]);
  });

  it("reads concurrently from more files than the handle cache keeps open", async () => {
    const dir = join(tmp, "many");
    await mkdir(dir);
    for (let i = 0; i < 12; i++) {
      await writeSt(join(dir, `model-${String(i).padStart(2, "0")}.safetensors`), [{ name: `t${i}`, dtype: "F32", shape: [2], data: bytes(Float32Array.of(i, -i)) }]);
    }
    const m = await openCheckpointTensors(dir);
    const all = await Promise.all([...m.values(), ...m.values()].map((t) => readTensorF32(t)));
    expect(all.map((f) => f[0])).toEqual([...Array.from({ length: 12 }, (_, i) => i), ...Array.from({ length: 12 }, (_, i) => i)]);
    await closeCheckpointFiles();
    expect(Array.from(await readTensorF32(m.get("t11")!))).toEqual([11, -11]);
  });

  it("index naming a tensor its shard lacks: InputError naming the tensor", async () => {
    const dir = join(tmp, "badindex");
    await mkdir(dir);
    const t = (name: string): Entry => ({ name, dtype: "F32", shape: [1], data: bytes(Float32Array.of(1)) });
    await writeSt(join(dir, "model-00001-of-00002.safetensors"), [t("a")]);
    await writeSt(join(dir, "model-00002-of-00002.safetensors"), [t("b")]);
    const index = { weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } };
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    const err = await openCheckpointTensors(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/missing from their shard: c \(in model-00002-of-00002\.safetensors\)/);
  });

  it("index naming a shard file that is absent: InputError naming the file", async () => {
    const dir = join(tmp, "noshard");
    await mkdir(dir);
    await copyFile(join(MODELS, "llama-tiny", "model.safetensors.index.json"), join(dir, "model.safetensors.index.json"));
    await copyFile(join(MODELS, "llama-tiny", "model-00001-of-00003.safetensors"), join(dir, "model-00001-of-00003.safetensors"));
    const err = await openCheckpointTensors(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/model-00002-of-00003\.safetensors, model-00003-of-00003\.safetensors/);
  });

  it("directory without safetensors: InputError", async () => {
    await expect(openCheckpointTensors(tmp + "/does-not-exist")).rejects.toBeInstanceOf(InputError);
    const dir = join(tmp, "empty");
    await mkdir(dir);
    await expect(openCheckpointTensors(dir)).rejects.toThrow(/no \*\.safetensors files/);
  });
});

describe("corrupt files", () => {
  const f32 = (n: number): Uint8Array => bytes(new Float32Array(n));
  const cases: [string, () => Promise<void>, RegExp][] = [
    ["shorter than 8 bytes", () => writeFile(join(tmp, "c.st"), Buffer.from([1, 2, 3])), /3 bytes, shorter than the 8-byte header length/],
    ["header length past EOF", () => writeRaw(join(tmp, "c.st"), "{}", new Uint8Array(0), 1000n), /header length 1000 runs past the end of the 10-byte file/],
    ["header length over the limit", () => writeRaw(join(tmp, "c.st"), "{}", new Uint8Array(0), 2n ** 40n), /header length 1099511627776 exceeds the limit of 100000000/],
    ["bad JSON", () => writeRaw(join(tmp, "c.st"), "{not json"), /header is not valid JSON/],
    ["unknown dtype", () => writeSt(join(tmp, "c.st"), [{ name: "w", dtype: "F7", shape: [1], data: f32(1) }]), /tensor "w": unknown dtype "F7"/],
    ["shape not matching bytes", () => writeSt(join(tmp, "c.st"), [{ name: "w", dtype: "F32", shape: [3], data: f32(2) }]), /shape \[3\] of F32 needs 12 bytes, data_offsets \[0, 8\] hold 8/],
    ["offsets outside the data", () => writeRaw(join(tmp, "c.st"), JSON.stringify({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }), f32(2)), /data_offsets \[0, 16\] lie outside the 8-byte data section/],
    [
      "overlapping tensors",
      () => writeRaw(join(tmp, "c.st"), JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }), f32(3)),
      /tensors "a" \[\d+, \d+\) and "b" \[\d+, \d+\) overlap/,
    ],
    ["bad shape", () => writeRaw(join(tmp, "c.st"), JSON.stringify({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } })), /shape \[-1\] is not a list/],
  ];
  for (const [what, make, message] of cases) {
    it(what, async () => {
      await make();
      const err = await readSafetensorsHeader(join(tmp, "c.st")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(join(tmp, "c.st"));
    });
  }

  it("readTensorF32 refuses non-float dtypes with a ConversionError", async () => {
    await writeSt(join(tmp, "i.st"), [{ name: "ids", dtype: "I64", shape: [2], data: bytes(BigInt64Array.of(1n, 2n)) }]);
    const [t] = (await readSafetensorsHeader(join(tmp, "i.st"))).tensors;
    await expect(readTensorF32(t!)).rejects.toBeInstanceOf(ConversionError);
  });

  it("reads F32 and F16 exactly", async () => {
    const half = Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7bff); // 1, -2, 2^-24, 65504
    await writeSt(join(tmp, "f.st"), [
      { name: "h", dtype: "F16", shape: [2, 2], data: bytes(half) },
      { name: "s", dtype: "F32", shape: [3], data: bytes(Float32Array.of(0.1, -0, 1e30)) },
    ]);
    const [h, s] = (await readSafetensorsHeader(join(tmp, "f.st"))).tensors;
    expect(Array.from(await readTensorF32(h!))).toEqual([1, -2, 2 ** -24, 65504]);
    expect(Array.from(await readTensorF32(s!))).toEqual([Math.fround(0.1), -0, Math.fround(1e30)]);
  });
});
