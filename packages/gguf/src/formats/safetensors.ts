// Hardened safetensors reader: validates the header of every file, lists a checkpoint's tensors
// in the order llama.cpp's converter visits them, and reads tensor data positionally so memory
// stays bounded by one tensor.
//
// File layout: u64 LE header length N | N bytes of JSON header | data section.
// Header: { "__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]} }
// with offsets relative to the start of the data section.
import { open, readdir, readFile, stat, type FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { join } from "node:path";
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import type { SourceTensorInfo } from "../architectures/types.js";
import { bf16ToF32, f16ToF32 } from "./float.js";

/** Largest JSON header accepted (the safetensors library's own limit is 100 MB). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** Most tensors one file may declare. */
export const SAFETENSORS_MAX_TENSORS = 1_000_000;
/** Most dimensions one tensor may have. */
export const SAFETENSORS_MAX_DIMS = 8;
/** Largest model.safetensors.index.json accepted. */
export const SAFETENSORS_MAX_INDEX_BYTES = 64 * 1024 * 1024;
/** Open file handles kept between reads. */
const MAX_OPEN_FILES = 8;

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

export interface SafetensorsTensor extends SourceTensorInfo {
  /** Path of the file holding the data. */
  file: string;
  /** Absolute byte offsets of the data in `file`, end exclusive. */
  start: number;
  end: number;
}

export interface SafetensorsHeader {
  /** In header (JSON) order. */
  tensors: SafetensorsTensor[];
  metadata: Record<string, string>;
}

function bad(path: string, message: string): InputError {
  return new InputError(`${path}: ${message}`, { path, code: "E_SAFETENSORS" });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads exactly `length` bytes at `position` (into `into` when given), looping over short reads. */
async function readExactly<T extends Uint8Array = Buffer>(fh: FileHandle, path: string, position: number, length: number, into?: T): Promise<T> {
  // allocUnsafeSlow: an own ArrayBuffer at offset 0, so 2- and 4-byte views need no copy.
  const buf = into ?? (Buffer.allocUnsafeSlow(length) as Uint8Array as T);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw bad(path, `unexpected end of file at byte ${position + done}, wanted ${length} bytes from ${position}`);
    done += bytesRead;
  }
  return buf;
}

/** Parses and validates the header of one safetensors file. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (cause) {
    throw new InputError(`cannot open safetensors file ${path}: ${(cause as Error).message}`, { path, cause });
  }
  try {
    const fileBytes = (await fh.stat()).size;
    if (fileBytes < 8) throw bad(path, `file is ${fileBytes} bytes, shorter than the 8-byte header length field`);
    const headerBytesBig = (await readExactly(fh, path, 0, 8)).readBigUInt64LE(0);
    if (headerBytesBig > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
      throw bad(path, `header length ${headerBytesBig} exceeds the limit of ${SAFETENSORS_MAX_HEADER_BYTES} bytes`);
    }
    const headerBytes = Number(headerBytesBig);
    if (8 + headerBytes > fileBytes) {
      throw bad(path, `header length ${headerBytes} runs past the end of the ${fileBytes}-byte file`);
    }
    const text = (await readExactly(fh, path, 8, headerBytes)).toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw new InputError(`${path}: header is not valid JSON (${(cause as Error).message})`, { path, cause, code: "E_SAFETENSORS" });
    }
    return parseHeader(path, json, 8 + headerBytes, fileBytes);
  } finally {
    await fh.close();
  }
}

function parseHeader(path: string, json: unknown, dataStart: number, fileBytes: number): SafetensorsHeader {
  if (!isRecord(json)) throw bad(path, "header JSON is not an object");
  const dataBytes = fileBytes - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensor[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isRecord(entry)) throw bad(path, `__metadata__ is not an object of strings`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") throw bad(path, `__metadata__.${k} is ${typeof v}, expected a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (tensors.length >= SAFETENSORS_MAX_TENSORS) throw bad(path, `more than ${SAFETENSORS_MAX_TENSORS} tensors`);
    if (!isRecord(entry)) throw bad(path, `tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    const itemBytes = typeof dtype === "string" ? SAFETENSORS_DTYPE_BYTES[dtype] : undefined;
    if (itemBytes === undefined) {
      throw bad(path, `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}; known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")}`);
    }
    if (!Array.isArray(shape) || shape.length > SAFETENSORS_MAX_DIMS || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(path, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of at most ${SAFETENSORS_MAX_DIMS} non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(path, `tensor "${name}": data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataBytes) {
      throw bad(path, `tensor "${name}": data_offsets [${begin}, ${end}] lie outside the ${dataBytes}-byte data section`);
    }
    const expected = (shape as number[]).reduce((a, d) => a * d, itemBytes);
    if (expected !== end - begin) {
      throw bad(path, `tensor "${name}": shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    tensors.push({ name, dtype: dtype as string, shape: shape as number[], file: path, start: dataStart + begin, end: dataStart + end });
  }
  const byStart = [...tensors].sort((a, b) => a.start - b.start || a.end - b.end);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1] as SafetensorsTensor;
    const cur = byStart[i] as SafetensorsTensor;
    if (cur.start < prev.end) {
      throw bad(path, `tensors "${prev.name}" [${prev.start}, ${prev.end}) and "${cur.name}" [${cur.start}, ${cur.end}) overlap`);
    }
  }
  return { tensors, metadata };
}

/** Python's str ordering (code points), which differs from JS's UTF-16 `<` for astral characters. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Surrogates (astral code points) sort above U+E000..U+FFFF.
    if (ca >= 0xd800 && cb >= 0xd800) {
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

/**
 * All tensors of a checkpoint directory, keyed by HF name.
 *
 * Iteration order = the order llama.cpp's converter visits them (conversion/base.py
 * ModelBase.index_tensors, then get_tensors iterates that dict), which fixes the GGUF tensor
 * order:
 *  1. Files: with model.safetensors.index.json, the distinct shard names of its weight_map,
 *     sorted; otherwise every file named model*.safetensors, sorted (get_model_part_names).
 *     Sorting is by code point, like Python's sorted().
 *  2. Within a file: tensors sorted by name (gguf.utility.SafetensorsLocal sorts them, as the
 *     safetensors library does), NOT header order.
 *  3. A name seen again in a later file keeps its first position but takes the later data
 *     (Python dict assignment; JS Map.set behaves the same).
 * Names are raw HF names: the converter's filter_tensors renames ("language_model." removed,
 * "e_score_correction_bias" -> "e_score_correction.bias") are the architecture's business.
 * Beyond the converter: without index and without model*.safetensors, every *.safetensors file
 * is used, sorted the same way.
 */
export async function openCheckpointTensors(dir: string): Promise<Map<string, SafetensorsTensor>> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (cause) {
    throw new InputError(`cannot list checkpoint directory ${dir}: ${(cause as Error).message}`, { path: dir, cause });
  }
  const indexName = "model.safetensors.index.json";
  const weightMap = entries.includes(indexName) ? await readIndex(join(dir, indexName)) : undefined;
  let parts: string[];
  if (weightMap !== undefined) {
    parts = [...new Set(weightMap.values())].sort(compareCodePoints);
    const missing = parts.filter((p) => !entries.includes(p));
    if (missing.length > 0) {
      throw new InputError(`${join(dir, indexName)} names shard files that are not in ${dir}: ${missing.join(", ")}; download them again`, { path: dir });
    }
  } else {
    const all = entries.filter((f) => f.endsWith(".safetensors")).sort(compareCodePoints);
    parts = all.filter((f) => f.startsWith("model"));
    if (parts.length === 0) parts = all;
    if (parts.length === 0) {
      throw new InputError(`no *.safetensors files in ${dir}; only safetensors checkpoints are supported`, { path: dir });
    }
  }
  const tensors = new Map<string, SafetensorsTensor>();
  const foundIn = new Map<string, Set<string>>();
  for (const part of parts) {
    const { tensors: partTensors } = await readSafetensorsHeader(join(dir, part));
    const names = new Set<string>();
    for (const t of [...partTensors].sort((a, b) => compareCodePoints(a.name, b.name))) {
      tensors.set(t.name, t);
      names.add(t.name);
    }
    foundIn.set(part, names);
  }
  if (weightMap !== undefined) checkIndex(dir, weightMap, foundIn, tensors);
  return tensors;
}

async function readIndex(path: string): Promise<Map<string, string>> {
  const size = (await stat(path)).size;
  if (size > SAFETENSORS_MAX_INDEX_BYTES) {
    throw new InputError(`${path}: ${size} bytes exceeds the limit of ${SAFETENSORS_MAX_INDEX_BYTES} bytes for an index`, { path });
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (cause) {
    throw new InputError(`${path}: not valid JSON (${(cause as Error).message})`, { path, cause });
  }
  const weightMap = isRecord(json) ? json.weight_map : undefined;
  if (!isRecord(weightMap)) throw new InputError(`${path}: "weight_map" is missing or not an object`, { path });
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || !file.endsWith(".safetensors") || /[\\/]/.test(file) || file.startsWith(".")) {
      throw new InputError(`${path}: weight_map["${name}"] is ${JSON.stringify(file)}, expected a *.safetensors file name in the same directory`, { path });
    }
    map.set(name, file);
  }
  return map;
}

function listSome(names: string[], max = 10): string {
  return names.slice(0, max).join(", ") + (names.length > max ? ` ... (${names.length} in all)` : "");
}

/** Every indexed tensor must be in the shard the index names; no shard may hold unindexed ones. */
function checkIndex(dir: string, weightMap: Map<string, string>, foundIn: Map<string, Set<string>>, all: Map<string, SafetensorsTensor>): void {
  const missing: string[] = [];
  for (const [name, part] of weightMap) if (!foundIn.get(part)?.has(name)) missing.push(`${name} (in ${part})`);
  if (missing.length > 0) {
    throw new InputError(`${dir}: ${missing.length} tensor(s) listed in model.safetensors.index.json are missing from their shard: ${listSome(missing)}; the download may be incomplete`, { path: dir });
  }
  const extra = [...all.keys()].filter((n) => !weightMap.has(n));
  if (extra.length > 0) {
    throw new InputError(`${dir}: shard files hold ${extra.length} tensor(s) that model.safetensors.index.json does not list: ${listSome(extra)}`, { path: dir });
  }
}

// --- positional reads through a small cache of open handles ---

interface CachedHandle {
  handle: Promise<FileHandle>;
  users: number;
  evicted: boolean;
}
const handles = new Map<string, CachedHandle>();

function closeEntry(entry: CachedHandle): Promise<void> {
  return entry.handle.then((fh) => fh.close()).catch(() => undefined);
}

async function withHandle<T>(path: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
  let entry = handles.get(path);
  if (entry === undefined) {
    const created: CachedHandle = { handle: open(path, "r"), users: 0, evicted: false };
    // A failed open is not cached: the next read tries again.
    created.handle.catch(() => handles.get(path) === created && handles.delete(path));
    entry = created;
    // Least recently used first: evict idle handles beyond the limit.
    for (const [p, e] of handles) {
      if (handles.size < MAX_OPEN_FILES) break;
      if (e.users === 0) {
        handles.delete(p);
        void closeEntry(e);
      }
    }
  } else {
    handles.delete(path);
  }
  handles.set(path, entry);
  entry.users++;
  try {
    let fh: FileHandle;
    try {
      fh = await entry.handle;
    } catch (cause) {
      throw new InputError(`cannot open safetensors file ${path}: ${(cause as Error).message}`, { path, cause });
    }
    return await fn(fh);
  } finally {
    entry.users--;
    if (entry.evicted && entry.users === 0) void closeEntry(entry);
  }
}

/** Closes every cached file handle; later reads reopen files as needed. */
export async function closeCheckpointFiles(): Promise<void> {
  const all = [...handles.values()];
  handles.clear();
  await Promise.all(all.map((e) => (e.users === 0 ? closeEntry(e) : ((e.evicted = true), Promise.resolve()))));
}

/** Range of a tensor in bytes from its start; default the whole tensor. */
export interface ByteRange {
  offsetBytes?: number;
  lengthBytes?: number;
}

/** The raw little-endian bytes of a tensor (or a byte range of it), read at their offset. */
export async function readTensorBytes(t: SafetensorsTensor, range: ByteRange = {}): Promise<Buffer> {
  const total = t.end - t.start;
  const offset = range.offsetBytes ?? 0;
  const length = range.lengthBytes ?? total - offset;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > total) {
    throw new RangeError(`byte range [${offset}, +${length}) is outside tensor "${t.name}" of ${total} bytes`);
  }
  return withHandle(t.file, (fh) => readExactly(fh, t.file, t.start + offset, length));
}

/**
 * Like readTensorBytes, into `into` (whose length is the byte count): the pipeline reads
 * straight into shared memory that its quantize workers see without a copy.
 */
export async function readTensorBytesInto<T extends Uint8Array>(t: SafetensorsTensor, offsetBytes: number, into: T): Promise<T> {
  const total = t.end - t.start;
  const length = into.byteLength;
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes + length > total) {
    throw new RangeError(`byte range [${offsetBytes}, +${length}) is outside tensor "${t.name}" of ${total} bytes`);
  }
  return withHandle(t.file, (fh) => readExactly(fh, t.file, t.start + offsetBytes, length, into));
}

/** Range of a tensor in elements (flat, row-major); default the whole tensor. */
export interface ElementRange {
  startElement?: number;
  elementCount?: number;
}

/** A tensor (or a range of its elements) widened exactly to F32. Supports F32, F16 and BF16. */
export async function readTensorF32(t: SafetensorsTensor, range: ElementRange = {}): Promise<Float32Array> {
  const itemBytes = t.dtype === "F32" ? 4 : t.dtype === "F16" || t.dtype === "BF16" ? 2 : undefined;
  if (itemBytes === undefined) {
    throw new ConversionError(`tensor "${t.name}" in ${t.file} has dtype ${t.dtype}; only F32, F16 and BF16 can be read as floats`);
  }
  if (endianness() !== "LE") throw new ConversionError("reading safetensors needs a little-endian host");
  const total = (t.end - t.start) / itemBytes;
  const start = range.startElement ?? 0;
  const count = range.elementCount ?? total - start;
  const bytes = await readTensorBytes(t, { offsetBytes: start * itemBytes, lengthBytes: count * itemBytes });
  if (itemBytes === 4) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  return t.dtype === "F16" ? f16ToF32(halves) : bf16ToF32(halves);
}
