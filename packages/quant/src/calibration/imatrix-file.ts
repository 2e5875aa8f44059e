// llama.cpp's imatrix GGUF format, written as tools/imatrix/imatrix.cpp save_imatrix writes it
// (and read back raw, sums and counts, as common/imatrix-loader.cpp reads it):
//
//   KV   general.type = "imatrix", imatrix.datasets (string[]), imatrix.chunk_count (u32),
//        imatrix.chunk_size (u32)
//   per weight W, sorted by name:
//        "<W>.in_sum2"  F32 ne [n, nMat]  sums of squared activations (ne [n] when nMat = 1)
//        "<W>.counts"   F32 ne [1, nMat]  rows seen per slice          (ne [1] when nMat = 1)
//
// quantize/imatrix.ts readImatrix turns such a file into the importance vectors llama-quantize
// uses; readImatrixStats below keeps the raw statistics.

import { readFile } from "node:fs/promises";
import { InputError } from "@llama-pajamas/artifact";
import { readGGUF } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { GGMLType, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import type { ImatrixEntry, ImatrixResult } from "./imatrix.js";

export type ImatrixStats = Pick<ImatrixResult, "entries" | "datasets" | "chunkCount" | "chunkSize">;

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes `stats` as an imatrix GGUF that llama-quantize --imatrix reads. */
export async function writeImatrixGGUF(path: string, stats: ImatrixStats): Promise<void> {
  const w = new GGUFWriter();
  w.addKV({ key: "general.type", type: GGUFValueType.STRING, value: "imatrix" });
  w.addKV({ key: "imatrix.datasets", type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: stats.datasets });
  w.addKV({ key: "imatrix.chunk_count", type: GGUFValueType.UINT32, value: stats.chunkCount });
  w.addKV({ key: "imatrix.chunk_size", type: GGUFValueType.UINT32, value: stats.chunkSize });
  const names = [...stats.entries.keys()].sort();
  const data: [string, Float32Array][] = [];
  for (const name of names) {
    const e = stats.entries.get(name)!;
    const nMat = e.counts.length;
    if (e.sums.length % nMat !== 0) {
      throw new InputError(`imatrix entry ${name}: ${e.sums.length} sums do not split into ${nMat} slices`);
    }
    const n = e.sums.length / nMat;
    const sums = e.sums;
    const counts = Float32Array.from(e.counts);
    // PyTorch order (outermost first); ggml drops trailing 1s, so one slice is 1-D
    w.addTensorInfo({ name: `${name}.in_sum2`, shape: nMat === 1 ? [n] : [nMat, n], type: GGMLType.F32, byteLength: sums.byteLength });
    w.addTensorInfo({ name: `${name}.counts`, shape: nMat === 1 ? [1] : [nMat, 1], type: GGMLType.F32, byteLength: counts.byteLength });
    data.push([`${name}.in_sum2`, sums], [`${name}.counts`, counts]);
  }
  await w.open(path);
  try {
    await w.writeHeader();
    for (const [name, values] of data) await w.writeTensorData(name, bytesOf(values));
    await w.finish();
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  }
}

/** Reads an imatrix GGUF's raw statistics (sums and counts per weight). */
export async function readImatrixStats(path: string): Promise<ImatrixStats> {
  const file = await readGGUF(path);
  const bytes = await readFile(path);
  const kv = (k: string) => file.kv.get(k)?.value;
  const datasets = kv("imatrix.datasets");
  const f32 = (offset: number, byteLength: number) => {
    const copy = new Uint8Array(byteLength);
    copy.set(bytes.subarray(offset, offset + byteLength));
    return new Float32Array(copy.buffer);
  };
  const entries = new Map<string, ImatrixEntry>();
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  for (const t of file.tensors) {
    if (!t.name.endsWith(".in_sum2")) continue;
    const name = t.name.slice(0, -".in_sum2".length);
    const c = byName.get(`${name}.counts`);
    if (!c || t.type !== GGMLType.F32 || c.type !== GGMLType.F32) throw new InputError(`${path}: ${name} lacks F32 sums and counts`, { path });
    const sums = f32(t.offset, t.byteLength);
    const counts = Array.from(f32(c.offset, c.byteLength));
    entries.set(name, { sums, counts, columns: sums.length / counts.length });
  }
  return {
    entries,
    datasets: Array.isArray(datasets) ? datasets.map(String) : [],
    chunkCount: typeof kv("imatrix.chunk_count") === "number" ? (kv("imatrix.chunk_count") as number) : 0,
    chunkSize: typeof kv("imatrix.chunk_size") === "number" ? (kv("imatrix.chunk_size") as number) : 0,
  };
}
