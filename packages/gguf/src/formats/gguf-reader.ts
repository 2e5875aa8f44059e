// Hardened GGUF reader: header, metadata and tensor infos (no tensor data). Every count and
// length from the file is checked against a named limit before anything is allocated.
// Layout: see gguf-writer.ts. Follows gguf-py gguf_reader.py and ggml/src/gguf.cpp checks.
import { open, type FileHandle } from "node:fs/promises";
import { InputError } from "@llama-pajamas/artifact";
import { GGML_MAX_DIMS, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFValueType, type GGMLType, type GGUFKV, type GGUFScalar } from "./gguf-types.js";
import { findGGMLTypeTraits, tensorBytes } from "./ggml-type-traits.js";

/** Most bytes of header + metadata + tensor infos read into memory. */
export const GGUF_MAX_HEADER_BYTES = 512 * 1024 * 1024;
/** Most metadata entries. */
export const GGUF_MAX_KV_COUNT = 65_536;
/** Most tensors. */
export const GGUF_MAX_TENSOR_COUNT = 1_048_576;
/** Longest key or tensor name in bytes. */
export const GGUF_MAX_KEY_BYTES = 65_535;
/** Longest string value in bytes (chat templates are the long ones). */
export const GGUF_MAX_STRING_BYTES = 64 * 1024 * 1024;
/** Most items in one array (vocabularies have ~150k-260k, merges up to ~500k). */
export const GGUF_MAX_ARRAY_ITEMS = 64 * 1024 * 1024;
/** Versions read: 2 and 3 share the layout (3 adds big-endian files, which are refused). */
export const GGUF_SUPPORTED_VERSIONS: readonly number[] = [2, 3];

export type GGUFReadArray =
  | string[]
  | boolean[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

export interface GGUFKVEntry {
  type: GGUFValueType;
  itemType?: GGUFValueType;
  /** UINT64/INT64 scalars are bigints; numeric arrays are typed arrays, BOOL/STRING arrays plain. */
  value: GGUFScalar | GGUFReadArray;
  /** Absolute byte range of the value (after the type tag; for arrays from the item type on). */
  rawStart: number;
  rawEnd: number;
}

export interface GGUFTensorEntry {
  name: string;
  /** ggml order (ne[0] is the contiguous row length): the PyTorch shape reversed. */
  ne: number[];
  type: GGMLType;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
}

export interface GGUFFile {
  path: string;
  version: number;
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  fileBytes: number;
  kv: Map<string, GGUFKVEntry>;
  tensors: GGUFTensorEntry[];
}

const SCALAR_BYTES: Partial<Record<GGUFValueType, number>> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};

type TypedCtor = { new (n: number): GGUFReadArray & { buffer: ArrayBufferLike } };
const ARRAY_CTORS: Partial<Record<GGUFValueType, TypedCtor>> = {
  [GGUFValueType.UINT8]: Uint8Array, [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array, [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array, [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array, [GGUFValueType.FLOAT64]: Float64Array,
  [GGUFValueType.UINT64]: BigUint64Array, [GGUFValueType.INT64]: BigInt64Array,
};

/** Reads the start of a file on demand, keeping [0, loaded) in one buffer. */
class Cursor {
  pos = 0;
  buf = Buffer.alloc(0);

  constructor(private readonly fh: FileHandle, readonly path: string, readonly fileBytes: number) {}

  fail(message: string): InputError {
    return new InputError(`${this.path}: ${message}`, { path: this.path, code: "E_GGUF" });
  }

  /** Ensures `n` bytes at pos are loaded; `field` names what is being read for errors. */
  async need(n: number, field: string): Promise<void> {
    const end = this.pos + n;
    if (end <= this.buf.length) return;
    if (end > this.fileBytes) {
      throw this.fail(`truncated: ${field} needs bytes ${this.pos}..${end} but the file has ${this.fileBytes}`);
    }
    if (end > GGUF_MAX_HEADER_BYTES) throw this.fail(`metadata runs past ${GGUF_MAX_HEADER_BYTES} bytes at ${field}`);
    const size = Math.min(this.fileBytes, GGUF_MAX_HEADER_BYTES, Math.max(end, this.buf.length * 2, 1 << 20));
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next);
    let done = this.buf.length;
    while (done < size) {
      const { bytesRead } = await this.fh.read(next, done, size - done, done);
      if (bytesRead === 0) throw this.fail(`file shrank while reading ${field}`);
      done += bytesRead;
    }
    this.buf = next;
  }

  async u32(field: string): Promise<number> {
    await this.need(4, field);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A u64 that must fit in a safe integer and be <= limit. */
  async u64(field: string, limit: number): Promise<number> {
    await this.need(8, field);
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    const v = hi * 2 ** 32 + lo;
    if (hi >= 2 ** 21 || v > limit) throw this.fail(`${field} is ${hi >= 2 ** 21 ? BigInt(hi) * 2n ** 32n + BigInt(lo) : v}, over the limit of ${limit}`);
    return v;
  }

  async string(field: string, limit: number): Promise<string> {
    const n = await this.u64(`${field} length`, limit);
    await this.need(n, field);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

async function readScalar(c: Cursor, type: GGUFValueType, field: string): Promise<GGUFScalar> {
  if (type === GGUFValueType.STRING) return c.string(field, GGUF_MAX_STRING_BYTES);
  const size = SCALAR_BYTES[type];
  if (size === undefined) throw c.fail(`${field} has unknown value type ${type}`);
  await c.need(size, field);
  const b = c.buf;
  const p = c.pos;
  c.pos += size;
  switch (type) {
    case GGUFValueType.UINT8: return b.readUInt8(p);
    case GGUFValueType.INT8: return b.readInt8(p);
    case GGUFValueType.BOOL: return b.readUInt8(p) !== 0;
    case GGUFValueType.UINT16: return b.readUInt16LE(p);
    case GGUFValueType.INT16: return b.readInt16LE(p);
    case GGUFValueType.UINT32: return b.readUInt32LE(p);
    case GGUFValueType.INT32: return b.readInt32LE(p);
    case GGUFValueType.FLOAT32: return b.readFloatLE(p);
    case GGUFValueType.UINT64: return b.readBigUInt64LE(p);
    case GGUFValueType.INT64: return b.readBigInt64LE(p);
    default: return b.readDoubleLE(p); // FLOAT64
  }
}

async function readArray(c: Cursor, field: string): Promise<{ itemType: GGUFValueType; value: GGUFReadArray }> {
  const itemType = (await c.u32(`${field} item type`)) as GGUFValueType;
  const count = await c.u64(`${field} item count`, GGUF_MAX_ARRAY_ITEMS);
  if (itemType === GGUFValueType.STRING) {
    // Each string takes at least its 8-byte length: refuse counts the file cannot hold.
    if (c.pos + count * 8 > c.fileBytes) throw c.fail(`truncated: ${field} declares ${count} strings, more than the file can hold`);
    const out: string[] = new Array<string>(count);
    for (let i = 0; i < count; i++) {
      // Fast path without awaiting when the string is already loaded (vocabularies: 150k+).
      const b = c.buf;
      const p = c.pos;
      if (p + 8 <= b.length && b.readUInt32LE(p + 4) === 0) {
        const n = b.readUInt32LE(p);
        if (n <= GGUF_MAX_STRING_BYTES && p + 8 + n <= b.length) {
          out[i] = b.toString("utf8", p + 8, p + 8 + n);
          c.pos = p + 8 + n;
          continue;
        }
      }
      out[i] = await c.string(`${field}[${i}]`, GGUF_MAX_STRING_BYTES);
    }
    return { itemType, value: out };
  }
  const size = SCALAR_BYTES[itemType];
  if (size === undefined) throw c.fail(`${field} has unknown array item type ${itemType}`);
  await c.need(count * size, field);
  const bytes = c.buf.subarray(c.pos, c.pos + count * size);
  c.pos += count * size;
  if (itemType === GGUFValueType.BOOL) return { itemType, value: Array.from(bytes, (b) => b !== 0) };
  const Ctor = ARRAY_CTORS[itemType] as TypedCtor;
  const arr = new Ctor(count);
  // Copy into a fresh, aligned buffer (the file offset need not be aligned to the item size).
  new Uint8Array(arr.buffer).set(bytes);
  return { itemType, value: arr };
}

/** Reads the header, metadata and tensor infos of a GGUF file. */
export async function readGGUF(path: string): Promise<GGUFFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (cause) {
    throw new InputError(`cannot open GGUF file ${path}: ${(cause as Error).message}`, { path, cause });
  }
  try {
    const c = new Cursor(fh, path, (await fh.stat()).size);
    if (c.fileBytes < 4) throw c.fail(`not a GGUF file: ${c.fileBytes} bytes, too short for the magic`);
    const magic = await c.u32("magic");
    if (magic !== GGUF_MAGIC) {
      throw c.fail(`not a GGUF file: magic is 0x${magic.toString(16).padStart(8, "0")}, expected 0x${GGUF_MAGIC.toString(16)} ("GGUF")`);
    }
    const version = await c.u32("version");
    if ((version & 0xffff) === 0 && version !== 0) throw c.fail(`big-endian GGUF (version field 0x${version.toString(16)}) is not supported`);
    if (!GGUF_SUPPORTED_VERSIONS.includes(version)) throw c.fail(`GGUF version ${version} is not supported; supported: ${GGUF_SUPPORTED_VERSIONS.join(", ")}`);
    const tensorCount = await c.u64("tensor count", GGUF_MAX_TENSOR_COUNT);
    const kvCount = await c.u64("KV count", GGUF_MAX_KV_COUNT);

    const kv = new Map<string, GGUFKVEntry>();
    for (let i = 0; i < kvCount; i++) {
      const key = await c.string(`key of KV #${i}`, GGUF_MAX_KEY_BYTES);
      if (kv.has(key)) throw c.fail(`duplicate key "${key}" (KV #${i})`);
      const type = (await c.u32(`type of "${key}"`)) as GGUFValueType;
      const rawStart = c.pos;
      if (type === GGUFValueType.ARRAY) {
        const { itemType, value } = await readArray(c, `"${key}"`);
        kv.set(key, { type, itemType, value, rawStart, rawEnd: c.pos });
      } else {
        const value = await readScalar(c, type, `"${key}"`);
        kv.set(key, { type, value, rawStart, rawEnd: c.pos });
      }
    }

    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const alignKV = kv.get("general.alignment");
    if (alignKV !== undefined) {
      const a = alignKV.value;
      if (alignKV.type !== GGUFValueType.UINT32 || typeof a !== "number" || a === 0 || (a & (a - 1)) !== 0) {
        throw c.fail(`general.alignment must be a UINT32 power of two, got type ${alignKV.type} value ${String(a)}`);
      }
      alignment = a;
    }

    const infos: { name: string; ne: number[]; type: number; rel: number }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const name = await c.string(`name of tensor #${i}`, GGUF_MAX_KEY_BYTES);
      if (names.has(name)) throw c.fail(`duplicate tensor name "${name}" (tensor #${i})`);
      names.add(name);
      const nDims = await c.u32(`dimension count of "${name}"`);
      if (nDims > GGML_MAX_DIMS) throw c.fail(`tensor "${name}" has ${nDims} dimensions, over the limit of ${GGML_MAX_DIMS}`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(await c.u64(`ne[${d}] of "${name}"`, Number.MAX_SAFE_INTEGER));
      const type = await c.u32(`type of "${name}"`);
      const rel = await c.u64(`offset of "${name}"`, Number.MAX_SAFE_INTEGER);
      infos.push({ name, ne, type, rel });
    }
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;

    const tensors: GGUFTensorEntry[] = infos.map(({ name, ne, type, rel }) => {
      if (findGGMLTypeTraits(type) === undefined) throw c.fail(`tensor "${name}" has unknown ggml type ${type}`);
      let byteLength: number;
      try {
        byteLength = tensorBytes(type, ne);
      } catch (cause) {
        throw c.fail(`tensor "${name}" with ne [${ne.join(", ")}]: ${(cause as Error).message}`);
      }
      if (rel % alignment !== 0) throw c.fail(`tensor "${name}" offset ${rel} is not a multiple of the alignment ${alignment}`);
      const offset = dataOffset + rel;
      if (offset + byteLength > c.fileBytes) {
        throw c.fail(`tensor "${name}" data [${offset}, ${offset + byteLength}) runs past the end of the ${c.fileBytes}-byte file`);
      }
      return { name, ne, type: type as GGMLType, offset, byteLength };
    });
    return { path, version, alignment, dataOffset, fileBytes: c.fileBytes, kv, tensors };
  } finally {
    await fh.close();
  }
}

/** A read entry as a GGUFKV that GGUFWriter.addKV accepts (to copy metadata between files). */
export function toGGUFKV(key: string, entry: GGUFKVEntry): GGUFKV {
  if (entry.type !== GGUFValueType.ARRAY) {
    return { key, type: entry.type, value: entry.value as GGUFScalar };
  }
  const v = entry.value;
  const value = v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint32Array || Array.isArray(v) ? v : Array.from(v as ArrayLike<GGUFScalar>);
  return { key, type: GGUFValueType.ARRAY, itemType: entry.itemType as Exclude<GGUFValueType, GGUFValueType.ARRAY>, value };
}
