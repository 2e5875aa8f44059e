// llama.cpp importance matrices, read the way llama-quantize reads them: common/imatrix-loader.cpp
// (common_imatrix_load, common_imatrix_load_legacy) followed by tools/quantize/quantize.cpp
// load_imatrix, which turns sums into the per-column means ggml_quantize_chunk takes.
//
// GGUF format (tools/imatrix/imatrix.cpp save_imatrix), per weight tensor W of ne [n, m, e]:
//   "<W>.in_sum2"  F32 ne [n, e]   sum over tokens of activation^2, per column, per expert
//   "<W>.counts"   F32 ne [1, e]   tokens seen, per expert
//   KV imatrix.datasets (string[]), imatrix.chunk_count (u32), imatrix.chunk_size (u32)
// Legacy .dat (save_imatrix_legacy), little-endian:
//   i32 n_entries, then per entry { i32 len, char name[len], i32 ncall, i32 nval, f32 values[nval] }
//   where values = (sum / count) * ncall, then optionally i32 chunk_count, i32 len, char dataset[len].
//
// The importance vector of W is e consecutive slices of n: expert j uses values[j*n .. j*n+n).

import { readFile } from "node:fs/promises";
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import { readGGUF } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { GGMLType, GGUF_MAGIC, type GGUFKV, GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";

/** Most entries in a legacy file (a 1T-parameter MoE has a few thousand weight tensors). */
export const IMATRIX_MAX_ENTRIES = 1_000_000;
/** Longest tensor name in a legacy file, in bytes. */
export const IMATRIX_MAX_NAME_BYTES = 65_535;

/** Importance vectors by weight tensor name, plus what the file says about how it was made. */
export class ImportanceMatrix extends Map<string, Float32Array> {
  format: "gguf" | "legacy" = "gguf";
  datasets: string[] = [];
  /** imatrix.chunk_count (GGUF) or the trailing chunk count (legacy); 0 when absent. */
  chunkCount = 0;
  /** imatrix.chunk_size; 0 for legacy files. */
  chunkSize = 0;
}

function corrupt(path: string, message: string): InputError {
  return new InputError(`${path}: corrupt importance matrix: ${message}`, { path, code: "E_IMATRIX" });
}

/** Reads a .gguf or legacy .dat imatrix (the format is told by the "GGUF" magic). */
export async function readImatrix(path: string): Promise<ImportanceMatrix> {
  let head: Buffer;
  try {
    head = await readFile(path);
  } catch (cause) {
    throw new InputError(`cannot read importance matrix ${path}: ${(cause as Error).message}`, { path, cause });
  }
  if (head.length >= 4 && head.readUInt32LE(0) === GGUF_MAGIC) return readGGUFImatrix(path, head);
  return parseLegacyImatrix(head, path);
}

async function readGGUFImatrix(path: string, bytes: Buffer): Promise<ImportanceMatrix> {
  const file = await readGGUF(path);
  if (file.tensors.length < 1) throw corrupt(path, "no tensors (no data)");
  const out = new ImportanceMatrix();
  out.format = "gguf";
  const datasets = file.kv.get("imatrix.datasets");
  const chunkCount = file.kv.get("imatrix.chunk_count");
  const chunkSize = file.kv.get("imatrix.chunk_size");
  // llama-quantize refuses a GGUF imatrix without all three keys ("missing imatrix metadata")
  if (!datasets || !chunkCount || !chunkSize) {
    const missing = [["imatrix.datasets", datasets], ["imatrix.chunk_count", chunkCount], ["imatrix.chunk_size", chunkSize]]
      .filter(([, v]) => !v).map(([k]) => k);
    throw new InputError(`${path}: missing imatrix metadata (${missing.join(", ")}); llama-quantize would refuse this file`, {
      path,
      code: "E_IMATRIX",
    });
  }
  if (datasets.type === GGUFValueType.ARRAY && datasets.itemType === GGUFValueType.STRING) {
    out.datasets = [...(datasets.value as string[])];
  }
  const u32 = (e: typeof chunkCount, key: string): number => {
    if (e.type !== GGUFValueType.UINT32 || typeof e.value !== "number") throw corrupt(path, `${key} is not a UINT32`);
    return e.value;
  };
  out.chunkCount = u32(chunkCount, "imatrix.chunk_count");
  out.chunkSize = u32(chunkSize, "imatrix.chunk_size");

  const pairs = new Map<string, { sums?: (typeof file.tensors)[number]; counts?: (typeof file.tensors)[number] }>();
  for (const t of file.tensors) {
    let base: string | undefined;
    let slot: "sums" | "counts" | undefined;
    if (t.name.endsWith(".in_sum2")) [base, slot] = [t.name.slice(0, -".in_sum2".length), "sums"];
    else if (t.name.endsWith(".counts")) [base, slot] = [t.name.slice(0, -".counts".length), "counts"];
    if (base === undefined || slot === undefined) continue; // other tensors are ignored upstream too
    const p = pairs.get(base) ?? {};
    p[slot] = t;
    pairs.set(base, p);
  }
  const f32 = (t: (typeof file.tensors)[number]) => {
    const copy = new Uint8Array(t.byteLength);
    copy.set(bytes.subarray(t.offset, t.offset + t.byteLength));
    return new Float32Array(copy.buffer);
  };
  for (const [name, { sums, counts }] of [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!sums || !counts) throw corrupt(path, `mismatched sums and counts for ${name} (${sums ? "no .counts" : "no .in_sum2"})`);
    if (sums.type !== GGMLType.F32 || counts.type !== GGMLType.F32) throw corrupt(path, `sums and counts for ${name} must be F32`);
    const s = f32(sums);
    const c = f32(counts);
    if (c.length === 0) throw corrupt(path, `${name}.counts is empty`);
    if (s.length % c.length !== 0) {
      throw corrupt(path, `${name}.in_sum2 has ${s.length} values, not a multiple of its ${c.length} counts`);
    }
    // quantize.cpp load_imatrix: per-expert mean, 1 where an expert saw no tokens. Counts are
    // stored as float and rounded with lround; the division happens in float.
    const ne0 = s.length / c.length;
    const e = new Float32Array(s.length);
    for (let j = 0; j < c.length; j++) {
      const count = Math.fround(lround(c[j]!));
      for (let i = 0; i < ne0; i++) e[j * ne0 + i] = count > 0 ? s[j * ne0 + i]! / count : 1;
    }
    out.set(name, checkFinite(path, name, e));
  }
  return out;
}

/** std::lround: half away from zero. */
function lround(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

/** llama_model_quantize rejects non-finite importance values ("imatrix contains non-finite value"). */
function checkFinite(path: string, name: string, v: Float32Array): Float32Array {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw corrupt(path, `${name}[${i}] is ${v[i]}; llama.cpp rejects non-finite importance values`);
  }
  return v;
}

/** Parses a legacy .dat imatrix from memory. */
export function parseLegacyImatrix(bytes: Uint8Array, path = "<imatrix>"): ImportanceMatrix {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const i32 = (field: string): number => {
    if (pos + 4 > bytes.length) throw corrupt(path, `truncated at byte ${pos} reading ${field}`);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const out = new ImportanceMatrix();
  out.format = "legacy";
  const nEntries = i32("the entry count");
  if (nEntries < 1) throw corrupt(path, `no data: entry count is ${nEntries} (not a GGUF file either: no "GGUF" magic)`);
  if (nEntries > IMATRIX_MAX_ENTRIES) throw corrupt(path, `entry count ${nEntries} is over the limit of ${IMATRIX_MAX_ENTRIES}`);
  for (let k = 0; k < nEntries; k++) {
    const len = i32(`the name length of entry ${k + 1}`);
    if (len < 0 || len > IMATRIX_MAX_NAME_BYTES) throw corrupt(path, `entry ${k + 1} name length ${len} is outside 0..${IMATRIX_MAX_NAME_BYTES}`);
    if (pos + len > bytes.length) throw corrupt(path, `truncated in the name of entry ${k + 1}`);
    // the name is read as a C string: it ends at the first NUL
    const raw = bytes.subarray(pos, pos + len);
    const nul = raw.indexOf(0);
    const name = Buffer.from(nul === -1 ? raw : raw.subarray(0, nul)).toString("utf8");
    pos += len;
    const ncall = i32(`ncall of ${name}`);
    const nval = i32(`the value count of ${name}`);
    if (nval < 1) throw corrupt(path, `entry ${k + 1} (${name}) has ${nval} values`);
    if (pos + nval * 4 > bytes.length) throw corrupt(path, `truncated in the ${nval} values of ${name}`);
    // quantize.cpp load_imatrix: values hold (sum/count)*ncall; divide by ncall when positive
    const e = new Float32Array(nval);
    const div = Math.fround(ncall);
    for (let i = 0; i < nval; i++) {
      const v = view.getFloat32(pos + i * 4, true);
      e[i] = ncall > 0 ? v / div : v;
    }
    pos += nval * 4;
    out.set(name, checkFinite(path, name, e)); // a repeated name replaces the earlier entry, as std::map does
  }
  // optional trailer: chunk count, then the dataset name
  if (pos < bytes.length) {
    if (pos + 4 <= bytes.length) {
      out.chunkCount = view.getInt32(pos, true);
      pos += 4;
      if (pos + 4 <= bytes.length) {
        const len = view.getInt32(pos, true);
        pos += 4;
        if (len > 0 && pos + len <= bytes.length) out.datasets.push(Buffer.from(bytes.subarray(pos, pos + len)).toString("utf8").split("\0")[0]!);
      }
    }
  }
  return out;
}

/**
 * The importance vector llama_model_quantize uses for one tensor (its main loop): none when the
 * file has no entry; the entry when it holds ne[0] * ne[2] values (one slice per expert);
 * otherwise an error, except for token_embd, whose mismatch upstream only logs.
 */
export function imatrixForTensor(
  imatrix: ReadonlyMap<string, Float32Array> | undefined,
  name: string,
  ne: readonly number[],
): Float32Array | undefined {
  const v = imatrix?.get(name);
  if (v === undefined) return undefined;
  const want = (ne[0] ?? 1) * (ne[2] ?? 1);
  if (v.length === want) return v;
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight") return undefined;
  throw new ConversionError(
    `imatrix size ${v.length} is different from tensor size ${want} for ${name}; ` +
      `the importance matrix was made for another model (or an older split-expert layout)`,
  );
}

/**
 * The metadata llama-quantize adds when it quantizes with an importance matrix
 * (tools/quantize/quantize.cpp: KV overrides, written by llama_model_quantize_impl, INT as
 * UINT32): the file name as given and the first dataset (each cut to 127 bytes), the entry
 * count, and the chunk count when positive.
 */
export function imatrixMetadata(path: string, imatrix: ImportanceMatrix): GGUFKV[] {
  const cut = (s: string) => Buffer.from(s, "utf8").subarray(0, 127).toString("utf8");
  const kv: GGUFKV[] = [{ key: "quantize.imatrix.file", type: GGUFValueType.STRING, value: cut(path) }];
  if (imatrix.datasets.length > 0) kv.push({ key: "quantize.imatrix.dataset", type: GGUFValueType.STRING, value: cut(imatrix.datasets[0]!) });
  kv.push({ key: "quantize.imatrix.entries_count", type: GGUFValueType.UINT32, value: imatrix.size });
  if (imatrix.chunkCount > 0) kv.push({ key: "quantize.imatrix.chunks_count", type: GGUFValueType.UINT32, value: imatrix.chunkCount });
  return kv;
}
