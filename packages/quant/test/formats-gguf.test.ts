import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, OutputError } from "@llama-pajamas/artifact";
import { f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
import { ggmlTypeByName, ggmlTypeName, rowBytes, tensorBytes } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { encodeKVValue } from "@llama-pajamas/gguf/formats/gguf-kv-encode.js";
import { readGGUF, toGGUFKV } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { diffSummaries, loadSummary, readLargeArrays, summarizeGGUF, type GGUFSummary } from "@llama-pajamas/gguf/formats/gguf-summary.js";
import { GGMLType as T, GGUFValueType as V, type GGUFKV } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { REFERENCE } from "./helpers.js";

/*
 * Made with gguf-py (llama.cpp/gguf-py, this commit) as:
 *   w = gguf.GGUFWriter(path, arch="test")          # adds general.architecture
 *   [w.add_custom_alignment(64)]                    # the 64-byte variant only
 *   w.add_uint8("t.u8", 200); w.add_int8("t.i8", -5); w.add_uint16("t.u16", 65535)
 *   w.add_int16("t.i16", -300); w.add_uint32("t.u32", 4000000000); w.add_int32("t.i32", -7)
 *   w.add_float32("t.f32", 0.1); w.add_uint64("t.u64", 2**63+5); w.add_int64("t.i64", -2**40)
 *   w.add_float64("t.f64", 1/3); w.add_bool("t.bool", True); w.add_string("t.str", "héllo ✓ 😀")
 *   w.add_array("t.arr_str", ["a", "", "ü", "token"]); INT32 [1,-2,3]; FLOAT32 [0.5,-1.25,3e-8];
 *   BOOL [True,False,True]; UINT32 range(100)
 *   w.add_tensor("a.weight", (np.arange(15, dtype=np.float32).reshape(3, 5) - 7) / 3)
 *   w.add_tensor("b.weight", (np.arange(7, dtype=np.float32) / 7).astype(np.float16))
 *   w.add_tensor("c.weight", np.arange(68, dtype=np.uint8).reshape(2, 34), raw_dtype=Q8_0)
 *   w.add_tensor("d.weight", np.arange(3, dtype=np.uint16).view(np.uint8).reshape(1, 6), raw_dtype=BF16)
 * sha256 of the whole file, as `sha256sum` printed it:
 */
const PY_FILE_SHA256 = {
  32: "5708a189bc67b478cdb8410d968252a5c4a983b098dc4ac6bd179362385ebf14",
  64: "6a51d17fb01476e9f1718eba69c58cd1d763b44594ff78d427af6e1022586482",
} as const;
const PY_FILE_BYTES = { 32: 1376, 64: 1536 } as const;

function sampleKVs(alignment?: number): GGUFKV[] {
  const kvs: GGUFKV[] = [{ key: "general.architecture", type: V.STRING, value: "test" }];
  if (alignment !== undefined) kvs.push({ key: "general.alignment", type: V.UINT32, value: alignment });
  kvs.push(
    { key: "t.u8", type: V.UINT8, value: 200 },
    { key: "t.i8", type: V.INT8, value: -5 },
    { key: "t.u16", type: V.UINT16, value: 65535 },
    { key: "t.i16", type: V.INT16, value: -300 },
    { key: "t.u32", type: V.UINT32, value: 4000000000 },
    { key: "t.i32", type: V.INT32, value: -7 },
    { key: "t.f32", type: V.FLOAT32, value: 0.1 },
    { key: "t.u64", type: V.UINT64, value: 2n ** 63n + 5n },
    { key: "t.i64", type: V.INT64, value: -(2 ** 40) },
    { key: "t.f64", type: V.FLOAT64, value: 1 / 3 },
    { key: "t.bool", type: V.BOOL, value: true },
    { key: "t.str", type: V.STRING, value: "héllo ✓ 😀" },
    { key: "t.arr_str", type: V.ARRAY, itemType: V.STRING, value: ["a", "", "ü", "token"] },
    { key: "t.arr_i32", type: V.ARRAY, itemType: V.INT32, value: Int32Array.of(1, -2, 3) },
    { key: "t.arr_f32", type: V.ARRAY, itemType: V.FLOAT32, value: [0.5, -1.25, 3.0e-8] },
    { key: "t.arr_bool", type: V.ARRAY, itemType: V.BOOL, value: [true, false, true] },
    { key: "t.big", type: V.ARRAY, itemType: V.UINT32, value: Array.from({ length: 100 }, (_, i) => i) },
  );
  return kvs;
}

function sampleTensors(): { name: string; shape: number[]; type: T; data: Uint8Array }[] {
  const a = Float32Array.from({ length: 15 }, (_, i) => (i - 7) / 3);
  const b = f32ToF16(Float32Array.from({ length: 7 }, (_, i) => i / 7));
  return [
    { name: "a.weight", shape: [3, 5], type: T.F32, data: new Uint8Array(a.buffer) },
    { name: "b.weight", shape: [7], type: T.F16, data: new Uint8Array(b.buffer) },
    { name: "c.weight", shape: [2, 32], type: T.Q8_0, data: Uint8Array.from({ length: 68 }, (_, i) => i) },
    { name: "d.weight", shape: [1, 3], type: T.BF16, data: new Uint8Array(Uint16Array.of(0, 1, 2).buffer) },
  ];
}

/** Writes the sample file with our writer. */
async function writeSample(path: string, alignment?: number): Promise<GGUFWriter> {
  const w = new GGUFWriter();
  for (const kv of sampleKVs(alignment)) w.addKV(kv);
  const tensors = sampleTensors();
  for (const t of tensors) w.addTensorInfo({ name: t.name, shape: t.shape, type: t.type, byteLength: t.data.length });
  await w.open(path);
  await w.writeHeader();
  for (const t of tensors) await w.writeTensorData(t.name, t.data);
  await w.finish();
  return w;
}
/** dump_gguf.py's summary of the 32-byte-aligned reference file (json.dumps of its output). */
const PY_SUMMARY_32 = String.raw`{"version": 3, "fileBytes": 1376, "kv": {"general.architecture": {"type": 8, "sha256": "4e5b70c6c4231e5ec370f3d9a90fd93cc6d936d49da369acf5a9b51010674a95", "value": "test"}, "t.u8": {"type": 0, "sha256": "7c5bd2d144fdde498406edcb9fe60ce65b0dfa5f2dd7a7617f505e3d46d68bdb", "value": 200}, "t.i8": {"type": 1, "sha256": "04b8d34e20e604cadb04b9db8f6778c35f45a2d2a3335ea517dafe8c9cd9b06e", "value": -5}, "t.u16": {"type": 2, "sha256": "ca2fd00fa001190744c15c317643ab092e7048ce086a243e2be9437c898de1bb", "value": 65535}, "t.i16": {"type": 3, "sha256": "9acf192171155cd046b443466579c5dcb63f534353a2cf0dce59c73295f32799", "value": -300}, "t.u32": {"type": 4, "sha256": "19da1e084ec48ca0afcf8c36e97eb08ed3e1253e0f5bfab2a5ffa50d02a87642", "value": 4000000000}, "t.i32": {"type": 5, "sha256": "dd834710f8167e94146e2693ed379df621ad2932a30a76bcedeab6bffe84f1a6", "value": -7}, "t.f32": {"type": 6, "sha256": "fb360f7241a770dc32cade9a1d1273c92b13bd4959b1c130931312b7fe95e63f", "value": 0.10000000149011612}, "t.u64": {"type": 10, "sha256": "3533a639926376a36a2f9f8980a95bd65c0b2aa3456cfafa09098cfdb16b64a5", "value": 9223372036854775813}, "t.i64": {"type": 11, "sha256": "87361904a32defc1e118677018362480867284269635d5104ea1996f75fa3d11", "value": -1099511627776}, "t.f64": {"type": 12, "sha256": "9327e29fb26cdc73f5247fe463c0a619d7da9fa1a20ad5dbd8f555090f1a21d6", "value": 0.3333333333333333}, "t.bool": {"type": 7, "sha256": "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a", "value": true}, "t.str": {"type": 8, "sha256": "19d1e1999150813080b227cb83f006bb0c96dcd7cbdce6408256b7643ba86fe6", "value": "h\u00e9llo \u2713 \ud83d\ude00"}, "t.arr_str": {"type": 9, "sha256": "e11bfa87da8cb0e19bd8d277296921ffb057b97dd371d8865a0ff2fa5e96061d", "itemType": 8, "length": 4, "value": ["a", "", "\u00fc", "token"]}, "t.arr_i32": {"type": 9, "sha256": "0281d44aa9df3bec30efdd7b9f1e92513de9fac25307f29bada9368a9754d350", "itemType": 5, "length": 3, "value": [1, -2, 3]}, "t.arr_f32": {"type": 9, "sha256": "3518c3c57f271ddd04f8ea7a223836194ae46be08e300f0544a4b37626975762", "itemType": 6, "length": 3, "value": [0.5, -1.25, 2.999999892949745e-08]}, "t.arr_bool": {"type": 9, "sha256": "9137903c47452d55b5bcd20253e1363fc5592330fcb7f3e38460577e6e5903aa", "itemType": 7, "length": 3, "value": [true, false, true]}, "t.big": {"type": 9, "sha256": "82f0944cc00588abe469cec679b4d60add62d2c9cd95a813fc139755cf7865ff", "itemType": 4, "length": 100}}, "tensors": [{"name": "a.weight", "shape": [5, 3], "type": 0, "nbytes": 60, "sha256": "f3df71b59642e66e49866a029601c67e3bfe92debaba55671205eab20f811fd0"}, {"name": "b.weight", "shape": [7], "type": 1, "nbytes": 14, "sha256": "5292bcf6ed3520250e51667d2adc4c25da1c40d8b61e91bb08cc1f85d289ce64"}, {"name": "c.weight", "shape": [32, 2], "type": 8, "nbytes": 68, "sha256": "7ded979c0153ebb9ef28a15a314d0b27b41c4f8eed700b54974b48eb3ecaf91c"}, {"name": "d.weight", "shape": [3, 1], "type": 30, "nbytes": 6, "sha256": "90c2698921ca9fd02950be353f721888760e33ab5095a21e50f1e4360b6de1a0"}]}`;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "formats-gguf-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

describe("ggml type traits (gguf-py GGML_QUANT_SIZES)", () => {
  it("row and tensor sizes", () => {
    expect(rowBytes(T.F32, 10)).toBe(40);
    expect(rowBytes(T.BF16, 10)).toBe(20);
    expect(rowBytes(T.Q8_0, 4096)).toBe(128 * 34);
    expect(rowBytes(T.Q4_0, 32)).toBe(18);
    expect([T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS].map((t) => rowBytes(t, 256))).toEqual([84, 110, 144, 176, 210, 136]);
    expect(tensorBytes(T.Q8_0, [4096, 32000])).toBe(128 * 34 * 32000);
    expect(tensorBytes(T.F16, [])).toBe(2);
    expect(() => rowBytes(T.Q4_K, 100)).toThrow(/not a multiple of the Q4_K block size 256/);
    expect(ggmlTypeName(T.Q5_K)).toBe("Q5_K");
    expect(ggmlTypeName(99)).toBe("type 99");
    expect(ggmlTypeByName("IQ2_XXS")).toBe(T.IQ2_XXS);
  });
});

describe("GGUFWriter", () => {
  it.each([32, 64] as const)("writes the bytes gguf-py writes (alignment %i)", async (alignment) => {
    const path = join(tmp, `sample-${alignment}.gguf`);
    const w = await writeSample(path, alignment === 32 ? undefined : alignment);
    const bytes = await readFile(path);
    expect(bytes.length).toBe(PY_FILE_BYTES[alignment]);
    expect(w.fileBytes).toBe(PY_FILE_BYTES[alignment]);
    expect(sha256(bytes)).toBe(PY_FILE_SHA256[alignment]);
  });

  it("round-trips through the reader, with zero padding after each tensor", async () => {
    const path = join(tmp, "rt.gguf");
    await writeSample(path);
    const g = await readGGUF(path);
    const bytes = await readFile(path);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.dataOffset).toBe(1152);
    expect(g.fileBytes).toBe(1376);
    expect(g.tensors.map((t) => [t.name, t.ne, t.type, t.offset, t.byteLength])).toEqual([
      ["a.weight", [5, 3], T.F32, 1152, 60],
      ["b.weight", [7], T.F16, 1216, 14],
      ["c.weight", [32, 2], T.Q8_0, 1248, 68],
      ["d.weight", [3, 1], T.BF16, 1344, 6],
    ]);
    for (const [from, to] of [[1152 + 60, 1216], [1216 + 14, 1248], [1248 + 68, 1344], [1344 + 6, 1376]] as const) {
      expect(bytes.subarray(from, to).every((b) => b === 0)).toBe(true);
    }
    const a = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 1152, bytes.byteOffset + 1152 + 60));
    expect(a[0]).toBe(Math.fround(-7 / 3));
    const kv = g.kv;
    expect([...kv.keys()]).toEqual(sampleKVs().map((k) => k.key));
    expect(kv.get("t.u64")!.value).toBe(2n ** 63n + 5n);
    expect(kv.get("t.i64")!.value).toBe(-(2n ** 40n));
    expect(kv.get("t.f32")!.value).toBe(Math.fround(0.1));
    expect(kv.get("t.bool")!.value).toBe(true);
    expect(kv.get("t.str")!.value).toBe("héllo ✓ 😀");
    expect(kv.get("t.arr_str")).toMatchObject({ type: V.ARRAY, itemType: V.STRING, value: ["a", "", "ü", "token"] });
    expect(kv.get("t.arr_i32")!.value).toEqual(Int32Array.of(1, -2, 3));
    expect(kv.get("t.arr_bool")!.value).toEqual([true, false, true]);
    expect(Array.from(kv.get("t.big")!.value as Uint32Array)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    // rawStart/rawEnd cover exactly what dump_gguf.py hashes, and what encodeKVValue produces.
    const py = JSON.parse(PY_SUMMARY_32) as GGUFSummary;
    for (const k of sampleKVs()) {
      const e = kv.get(k.key)!;
      expect(sha256(bytes.subarray(e.rawStart, e.rawEnd)), k.key).toBe(py.kv[k.key]!.sha256);
      expect(sha256(encodeKVValue(k)), k.key).toBe(py.kv[k.key]!.sha256);
      expect(sha256(encodeKVValue(toGGUFKV(k.key, e))), k.key).toBe(py.kv[k.key]!.sha256);
    }
  });

  it("reads a 150k-entry vocabulary quickly", async () => {
    const n = 150_000;
    const tokens = Array.from({ length: n }, (_, i) => `tok${i}`);
    const w = new GGUFWriter();
    w.addKV({ key: "tokenizer.ggml.tokens", type: V.ARRAY, itemType: V.STRING, value: tokens });
    w.addKV({ key: "tokenizer.ggml.scores", type: V.ARRAY, itemType: V.FLOAT32, value: Float32Array.from({ length: n }, (_, i) => -i) });
    w.addKV({ key: "tokenizer.ggml.token_type", type: V.ARRAY, itemType: V.INT32, value: new Int32Array(n).fill(1) });
    const path = join(tmp, "vocab.gguf");
    await w.open(path);
    await w.writeHeader();
    await w.finish();
    const started = performance.now();
    const g = await readGGUF(path);
    const ms = performance.now() - started;
    const read = g.kv.get("tokenizer.ggml.tokens")!.value as string[];
    expect(read.length).toBe(n);
    expect(read[149_999]).toBe("tok149999");
    expect((g.kv.get("tokenizer.ggml.scores")!.value as Float32Array)[1000]).toBe(-1000);
    expect(ms).toBeLessThan(2000);
  });

  it("refuses duplicates, bad sizes and calls out of order", async () => {
    const w = new GGUFWriter();
    w.addKV({ key: "a", type: V.UINT32, value: 1 });
    expect(() => w.addKV({ key: "a", type: V.UINT32, value: 2 })).toThrow(/duplicate GGUF key "a"/);
    w.addTensorInfo({ name: "x", shape: [2, 3], type: T.F32, byteLength: 24 });
    expect(() => w.addTensorInfo({ name: "x", shape: [1], type: T.F32, byteLength: 4 })).toThrow(/duplicate GGUF tensor name "x"/);
    expect(() => w.addTensorInfo({ name: "y", shape: [2, 3], type: T.F16, byteLength: 24 })).toThrow(/byteLength 24 != 12/);
    expect(() => w.addTensorInfo({ name: "q", shape: [2, 30], type: T.Q8_0, byteLength: 60 })).toThrow(/cannot be stored as Q8_0/);
    expect(() => w.addTensorInfo({ name: "5d", shape: [1, 1, 1, 1, 1], type: T.F32, byteLength: 4 })).toThrow(/at most 4/);
    expect(() => w.addTensorInfo({ name: "n".repeat(64), shape: [1], type: T.F32, byteLength: 4 })).toThrow(/64 bytes/);
    w.addTensorInfo({ name: "z", shape: [4], type: T.F32, byteLength: 16 });
    await expect(w.writeTensorData("x", new Uint8Array(24))).rejects.toThrow(/call writeHeader\(\) first/);
    const path = join(tmp, "order.gguf");
    await w.open(path);
    expect(() => w.addTensorInfo({ name: "late", shape: [1], type: T.F32, byteLength: 4 })).toThrow(/after open\(\)/);
    await w.writeHeader();
    expect(() => w.addKV({ key: "late", type: V.UINT32, value: 1 })).toThrow(/after the header was written/);
    await expect(w.writeHeader()).rejects.toBeInstanceOf(OutputError);
    await expect(w.writeTensorData("z", new Uint8Array(16))).rejects.toThrow(/out of order: the next tensor is "x"/);
    await expect(w.writeTensorData("x", new Uint8Array(20))).rejects.toThrow(/got 20 bytes of data, declared 24/);
    const first = w.writeTensorData("x", new Uint8Array(24));
    await expect(w.writeTensorData("z", new Uint8Array(16))).rejects.toThrow(/still running/);
    await first;
    await expect(w.finish()).rejects.toThrow(/1 tensor\(s\) not written, starting at "z"/);
    await w.abort();
    expect(existsSync(path)).toBe(false);
  });

  it("refuses values gguf_writer.py cannot pack", () => {
    const bad: [GGUFKV, RegExp][] = [
      [{ key: "k", type: V.UINT8, value: 256 }, /not a UINT8/],
      [{ key: "k", type: V.INT32, value: 1.5 }, /not a INT32/],
      [{ key: "k", type: V.UINT64, value: -1n }, /out of range for UINT64/],
      [{ key: "k", type: V.FLOAT32, value: 1e39 }, /overflows FLOAT32/],
      [{ key: "k", type: V.STRING, value: "a\ud800" }, /lone UTF-16 surrogate/],
      [{ key: "k", type: V.BOOL, value: 1 }, /not a boolean/],
      [{ key: "k", type: V.ARRAY, itemType: V.UINT32, value: [] }, /empty array/],
    ];
    for (const [kv, message] of bad) expect(() => encodeKVValue(kv), String(kv.value)).toThrow(message);
    const w = new GGUFWriter();
    expect(() => w.addKV({ key: "general.alignment", type: V.UINT32, value: 48 })).toThrow(/power of two/);
    w.addKV({ key: "general.alignment", type: V.UINT32, value: 128 });
    expect(w.alignment).toBe(128);
  });

  it("abort() deletes the partial file; after finish() it is a no-op", async () => {
    const partial = join(tmp, "partial.gguf");
    const w = new GGUFWriter();
    w.addTensorInfo({ name: "t", shape: [8], type: T.F16, byteLength: 16 });
    await w.open(partial);
    await w.writeHeader();
    expect(existsSync(partial)).toBe(true);
    await w.abort();
    expect(existsSync(partial)).toBe(false);
    const done = join(tmp, "done.gguf");
    const w2 = await writeSample(done);
    await w2.abort();
    expect((await stat(done)).size).toBe(1376);
  });
});

describe("readGGUF on damaged files", () => {
  let good: Buffer;
  beforeAll(async () => {
    await writeSample(join(tmp, "good.gguf"));
    good = await readFile(join(tmp, "good.gguf"));
  });

  const patched = (edit: (b: Buffer) => Buffer): Buffer => edit(Buffer.from(good));
  const cases: [string, () => Buffer, RegExp][] = [
    ["not a GGUF file", () => Buffer.from("PK\x03\x04 this is a zip"), /not a GGUF file: magic is 0x04034b50/],
    ["too short for the magic", () => Buffer.from("GG"), /2 bytes, too short/],
    ["truncated header", () => good.subarray(0, 100), /truncated: .* needs bytes \d+\.\.\d+ but the file has 100/],
    ["unknown value type", () => patched((b) => (b.writeUInt32LE(99, 24 + 8 + 20), b)), /"general.architecture" has unknown value type 99/],
    ["KV count over the limit", () => patched((b) => (b.writeBigUInt64LE(2n ** 40n, 16), b)), /KV count is 1099511627776, over the limit of 65536/],
    ["string length over the limit", () => patched((b) => (b.writeBigUInt64LE(2n ** 62n, 24), b)), /key of KV #0 length is 4611686018427387904, over the limit/],
    ["unsupported version", () => patched((b) => (b.writeUInt32LE(1, 4), b)), /GGUF version 1 is not supported/],
    ["big-endian file", () => patched((b) => (b.writeUInt32BE(3, 4), b)), /big-endian GGUF/],
    ["tensor data past EOF", () => good.subarray(0, 1330), /tensor "d.weight" data \[1344, 1350\) runs past the end of the 1330-byte file/],
  ];
  for (const [what, make, message] of cases) {
    it(what, async () => {
      const path = join(tmp, "bad.gguf");
      await writeFile(path, make());
      const err = await readGGUF(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(path);
    });
  }
});

describe("summarizeGGUF / diffSummaries", () => {
  it("produces exactly dump_gguf.py's JSON for the same file", async () => {
    const path = join(tmp, "sum.gguf");
    await writeSample(path);
    const mine = await summarizeGGUF(path);
    const py = JSON.parse(PY_SUMMARY_32) as GGUFSummary;
    expect(mine).toEqual(py);
    expect(JSON.stringify(mine)).toBe(JSON.stringify(py)); // same key order too
    expect(diffSummaries(py, mine)).toEqual([]);
    const full = await readLargeArrays(path);
    expect(Object.keys(full)).toEqual(["t.big"]);
    expect(full["t.big"]!.length).toBe(100);
  });

  it("lists missing, extra and different keys and tensors", () => {
    const py = JSON.parse(PY_SUMMARY_32) as GGUFSummary;
    const other = JSON.parse(PY_SUMMARY_32) as GGUFSummary;
    delete other.kv["t.u8"];
    other.kv["t.new"] = { type: V.UINT32, sha256: "00", value: 1 };
    other.kv["t.i32"] = { type: V.INT32, sha256: "ff", value: -8 };
    other.kv["t.u16"]!.type = V.UINT32;
    other.kv["t.big"]!.sha256 = "abc";
    other.tensors[0]!.shape = [3, 5];
    other.tensors[1]!.type = T.BF16;
    other.tensors[2]!.sha256 = "beef";
    other.tensors.pop();
    other.fileBytes += 1;
    expect(diffSummaries(py, other)).toEqual([
      'missing key "t.u8" (expected UINT8 200)',
      'key "t.u16": expected UINT16 65535, got UINT32 65535',
      'key "t.i32" (INT32): expected -7, got -8',
      'key "t.big" (ARRAY<UINT32>[100]): contents differ (sha256 82f0944cc005 vs abc)',
      'extra key "t.new" (UINT32 1)',
      'tensor "a.weight": shape [5, 3] -> [3, 5]',
      'tensor "b.weight": type F16 -> BF16',
      'tensor "c.weight": data differs (sha256 7ded979c0153 vs beef)',
      'missing tensor "d.weight" (BF16 [3, 1])',
      "fileBytes: expected 1376, got 1377",
    ]);
    // Ignored prefixes hide their keys, and then a size difference is expected, not reported.
    expect(diffSummaries(py, other, { ignoreKeyPrefixes: ["t."], compareTensorData: false })).toEqual([
      'tensor "a.weight": shape [5, 3] -> [3, 5]',
      'tensor "b.weight": type F16 -> BF16',
      'missing tensor "d.weight" (BF16 [3, 1])',
    ]);
    const reordered = JSON.parse(PY_SUMMARY_32) as GGUFSummary;
    reordered.tensors.reverse();
    expect(diffSummaries(py, reordered)).toEqual(['tensor order differs at position 0 (of the common ones): expected "a.weight", got "d.weight"']);
  });

  it.skipIf(!existsSync(join(REFERENCE, "qwen3-tiny-f16.json")))("reads the llama.cpp reference summaries", async () => {
    const f16 = await loadSummary(join(REFERENCE, "qwen3-tiny-f16.json"));
    const bf16 = await loadSummary(join(REFERENCE, "qwen3-tiny-bf16.json"));
    expect(diffSummaries(f16, f16)).toEqual([]);
    const d = diffSummaries(f16, bf16, { compareTensorData: false });
    expect(d[0]).toBe('key "general.file_type" (UINT32): expected 1, got 32');
    expect(d).toContain('tensor "token_embd.weight": type F16 -> BF16');
  });
});
