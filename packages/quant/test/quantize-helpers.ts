// Helpers shared by the quantize differential tests.
import { open } from "node:fs/promises";
import type { GGUFFile, GGUFTensorEntry } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { GGMLType, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";

export /** Seeded normal-ish values (mulberry32 + sum of uniforms), column scales varying like real weights. */
function randomMatrix(seed: number, ne: number[]): Float32Array {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = ne.reduce((a, b) => a * b, 1);
  const ne0 = ne[0]!;
  const colScale = Float32Array.from({ length: ne0 }, () => 0.01 + 0.05 * rnd() ** 3);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rnd() + rnd() + rnd() - 1.5) * colScale[i % ne0]!;
  return out;
}

export /** A crafted GGUF imatrix (imatrix.cpp layout) with random positive sums for every weight of `file`. */
async function writeSyntheticImatrix(path: string, file: GGUFFile): Promise<void> {
  const w = new GGUFWriter();
  w.addKV({ key: "general.type", type: GGUFValueType.STRING, value: "imatrix" });
  w.addKV({ key: "imatrix.datasets", type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: ["synthetic"] });
  w.addKV({ key: "imatrix.chunk_count", type: GGUFValueType.UINT32, value: 10 });
  w.addKV({ key: "imatrix.chunk_size", type: GGUFValueType.UINT32, value: 512 });
  const data: [string, Float32Array][] = [];
  let seed = 1000;
  for (const t of file.tensors) {
    if (t.ne.length < 2 || t.name === "token_embd.weight" || t.name === "output.weight") continue;
    const nMat = t.ne[2] ?? 1;
    const sums = randomMatrix(seed++, [t.ne[0]!, nMat]).map((v) => v * v * 1e6 * 5120);
    const counts = Float32Array.from({ length: nMat }, (_, j) => 5120 - 512 * j);
    data.push([`${t.name}.in_sum2`, sums], [`${t.name}.counts`, counts]);
    w.addTensorInfo({ name: `${t.name}.in_sum2`, shape: [nMat, t.ne[0]!], type: GGMLType.F32, byteLength: sums.byteLength });
    w.addTensorInfo({ name: `${t.name}.counts`, shape: [nMat, 1], type: GGMLType.F32, byteLength: counts.byteLength });
  }
  await w.open(path);
  await w.writeHeader();
  for (const [name, d] of data) await w.writeTensorData(name, new Uint8Array(d.buffer));
  await w.finish();
}

/** The stored bytes of one tensor of a GGUF. */
export async function tensorBytes(file: GGUFFile, t: GGUFTensorEntry): Promise<Uint8Array> {
  const fh = await open(file.path, "r");
  try {
    const buf = new Uint8Array(t.byteLength);
    await fh.read(buf, 0, t.byteLength, t.offset);
    return buf;
  } finally {
    await fh.close();
  }
}

