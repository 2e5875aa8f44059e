// Summaries of GGUF files in the exact JSON shape of .ref/job/dump_gguf.py (the reference
// summaries in packages/quant/test/reference/*.json), and a readable diff of two summaries.
import { createHash } from "node:crypto";
import { open, readFile, type FileHandle } from "node:fs/promises";
import { InputError } from "@llama-pajamas/artifact";
import { GGUFValueType } from "./gguf-types.js";
import { readGGUF, type GGUFKVEntry } from "./gguf-reader.js";
import { ggmlTypeName } from "./ggml-type-traits.js";

/** dump_gguf.py inlines arrays of at most this many items. */
export const SUMMARY_MAX_INLINE_ITEMS = 64;
const HASH_CHUNK_BYTES = 16 * 1024 * 1024;

export type SummaryValue = number | boolean | string | SummaryValue[];

/** One KV: `value` for scalars and arrays of <= 64 items; itemType/length for arrays. */
export interface GGUFKVSummary {
  type: number;
  /** sha256 of the serialized value (after the type tag; arrays from the item type on). */
  sha256: string;
  itemType?: number;
  length?: number;
  value?: SummaryValue;
}

export interface GGUFTensorSummary {
  name: string;
  /** ggml ne order. */
  shape: number[];
  type: number;
  nbytes: number;
  sha256: string;
}

export interface GGUFSummary {
  version: number;
  fileBytes: number;
  kv: Record<string, GGUFKVSummary>;
  tensors: GGUFTensorSummary[];
}

export interface SummarizeOptions {
  /** Hash tensor data (default true); when false every tensor sha256 is "". */
  hashTensorData?: boolean;
}

/** JSON-able form of a read value, as Python's json.dump writes it (64-bit ints as numbers). */
function plain(value: GGUFKVEntry["value"]): SummaryValue {
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "string") return value;
  return Array.from(value as ArrayLike<unknown>, (v) => (typeof v === "bigint" ? Number(v) : (v as number | boolean | string)));
}

async function readRange(fh: FileHandle, path: string, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new InputError(`${path}: unexpected end of file at byte ${position + done}`, { path });
    done += bytesRead;
  }
  return buf;
}

/** The summary dump_gguf.py writes for `path`. */
export async function summarizeGGUF(path: string, options: SummarizeOptions = {}): Promise<GGUFSummary> {
  const g = await readGGUF(path);
  const fh = await open(path, "r");
  try {
    let metaEnd = 0;
    for (const e of g.kv.values()) metaEnd = Math.max(metaEnd, e.rawEnd);
    const header = await readRange(fh, path, 0, metaEnd);
    const kv: Record<string, GGUFKVSummary> = {};
    for (const [key, e] of g.kv) {
      const sha256 = createHash("sha256").update(header.subarray(e.rawStart, e.rawEnd)).digest("hex");
      if (e.type === GGUFValueType.ARRAY) {
        const length = (e.value as ArrayLike<unknown>).length;
        const entry: GGUFKVSummary = { type: e.type, sha256, itemType: e.itemType as number, length };
        if (length <= SUMMARY_MAX_INLINE_ITEMS) entry.value = plain(e.value);
        kv[key] = entry;
      } else {
        kv[key] = { type: e.type, sha256, value: plain(e.value) };
      }
    }
    const tensors: GGUFTensorSummary[] = [];
    for (const t of g.tensors) {
      let sha256 = "";
      if (options.hashTensorData !== false) {
        const hash = createHash("sha256");
        for (let done = 0; done < t.byteLength; done += HASH_CHUNK_BYTES) {
          hash.update(await readRange(fh, path, t.offset + done, Math.min(HASH_CHUNK_BYTES, t.byteLength - done)));
        }
        sha256 = hash.digest("hex");
      }
      tensors.push({ name: t.name, shape: [...t.ne], type: t.type, nbytes: t.byteLength, sha256 });
    }
    return { version: g.version, fileBytes: g.fileBytes, kv, tensors };
  } finally {
    await fh.close();
  }
}

/** The arrays longer than 64 items, as dump_gguf.py's optional third output ("full") holds them. */
export async function readLargeArrays(path: string): Promise<Record<string, SummaryValue[]>> {
  const g = await readGGUF(path);
  const full: Record<string, SummaryValue[]> = {};
  for (const [key, e] of g.kv) {
    if (e.type === GGUFValueType.ARRAY && (e.value as ArrayLike<unknown>).length > SUMMARY_MAX_INLINE_ITEMS) {
      full[key] = plain(e.value) as SummaryValue[];
    }
  }
  return full;
}

/** Loads a summary JSON written by dump_gguf.py (or JSON.stringify of a GGUFSummary). */
export async function loadSummary(path: string): Promise<GGUFSummary> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as GGUFSummary;
  } catch (cause) {
    throw new InputError(`cannot read GGUF summary ${path}: ${(cause as Error).message}`, { path, cause });
  }
}

export interface DiffOptions {
  /** KV keys starting with any of these are not compared (e.g. "general.name"). */
  ignoreKeyPrefixes?: readonly string[];
  /** Skip the fileBytes check. Default: skipped only when an ignored KV differs. */
  ignoreFileBytes?: boolean;
  /** Compare tensor data hashes (default true). */
  compareTensorData?: boolean;
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function typeLabel(k: GGUFKVSummary): string {
  const t = GGUFValueType[k.type] ?? String(k.type);
  return k.type === GGUFValueType.ARRAY ? `ARRAY<${GGUFValueType[k.itemType ?? -1] ?? k.itemType}>[${k.length}]` : t;
}

function describeKV(k: GGUFKVSummary): string {
  return `${typeLabel(k)}${k.value !== undefined ? ` ${show(k.value)}` : ""}`;
}

/** First position where two name sequences (restricted to common names) differ, as a line. */
function orderDiff(what: string, expected: string[], actual: string[]): string | undefined {
  const inActual = new Set(actual);
  const inExpected = new Set(expected);
  const e = expected.filter((n) => inActual.has(n));
  const a = actual.filter((n) => inExpected.has(n));
  const i = e.findIndex((n, j) => n !== a[j]);
  if (i < 0) return undefined;
  return `${what} order differs at position ${i} (of the common ones): expected "${e[i]}", got "${a[i]}"`;
}

/** Differences between an expected (reference) and an actual summary, one readable line each. */
export function diffSummaries(expected: GGUFSummary, actual: GGUFSummary, options: DiffOptions = {}): string[] {
  const prefixes = options.ignoreKeyPrefixes ?? [];
  const ignored = (key: string): boolean => prefixes.some((p) => key.startsWith(p));
  const out: string[] = [];
  if (expected.version !== actual.version) out.push(`version: expected ${expected.version}, got ${actual.version}`);

  let ignoredDiffers = false;
  const eKeys = Object.keys(expected.kv);
  const aKeys = Object.keys(actual.kv);
  for (const key of eKeys) {
    const e = expected.kv[key] as GGUFKVSummary;
    const a = actual.kv[key];
    if (ignored(key)) {
      if (a === undefined || a.sha256 !== e.sha256 || a.type !== e.type) ignoredDiffers = true;
      continue;
    }
    if (a === undefined) {
      out.push(`missing key "${key}" (expected ${describeKV(e)})`);
      continue;
    }
    if (a.type !== e.type || a.itemType !== e.itemType || a.length !== e.length) {
      out.push(`key "${key}": expected ${describeKV(e)}, got ${describeKV(a)}`);
    } else if (a.sha256 !== e.sha256) {
      const detail = e.value !== undefined || a.value !== undefined ? `expected ${show(e.value)}, got ${show(a.value)}` : `contents differ (sha256 ${e.sha256.slice(0, 12)} vs ${a.sha256.slice(0, 12)})`;
      out.push(`key "${key}" (${typeLabel(e)}): ${detail}`);
    }
  }
  for (const key of aKeys) {
    if (expected.kv[key] !== undefined) continue;
    if (ignored(key)) {
      ignoredDiffers = true;
      continue;
    }
    out.push(`extra key "${key}" (${describeKV(actual.kv[key] as GGUFKVSummary)})`);
  }
  const kvOrder = orderDiff("KV", eKeys.filter((k) => !ignored(k)), aKeys.filter((k) => !ignored(k)));
  if (kvOrder !== undefined) out.push(kvOrder);

  const aTensors = new Map(actual.tensors.map((t) => [t.name, t]));
  const eNames = new Set(expected.tensors.map((t) => t.name));
  for (const e of expected.tensors) {
    const a = aTensors.get(e.name);
    if (a === undefined) {
      out.push(`missing tensor "${e.name}" (${ggmlTypeName(e.type)} [${e.shape.join(", ")}])`);
      continue;
    }
    const diffs: string[] = [];
    if (a.shape.join() !== e.shape.join()) diffs.push(`shape [${e.shape.join(", ")}] -> [${a.shape.join(", ")}]`);
    if (a.type !== e.type) diffs.push(`type ${ggmlTypeName(e.type)} -> ${ggmlTypeName(a.type)}`);
    if (a.nbytes !== e.nbytes) diffs.push(`nbytes ${e.nbytes} -> ${a.nbytes}`);
    if (diffs.length === 0 && options.compareTensorData !== false && a.sha256 !== e.sha256 && a.sha256 !== "" && e.sha256 !== "") {
      diffs.push(`data differs (sha256 ${e.sha256.slice(0, 12)} vs ${a.sha256.slice(0, 12)})`);
    }
    if (diffs.length > 0) out.push(`tensor "${e.name}": ${diffs.join("; ")}`);
  }
  for (const a of actual.tensors) {
    if (!eNames.has(a.name)) out.push(`extra tensor "${a.name}" (${ggmlTypeName(a.type)} [${a.shape.join(", ")}])`);
  }
  const tOrder = orderDiff("tensor", expected.tensors.map((t) => t.name), actual.tensors.map((t) => t.name));
  if (tOrder !== undefined) out.push(tOrder);

  const skipBytes = options.ignoreFileBytes ?? ignoredDiffers;
  if (!skipBytes && expected.fileBytes !== actual.fileBytes) out.push(`fileBytes: expected ${expected.fileBytes}, got ${actual.fileBytes}`);
  return out;
}
