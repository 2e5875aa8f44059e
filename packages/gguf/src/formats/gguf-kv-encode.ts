// Serialization of GGUF metadata values, byte for byte as gguf-py gguf_writer.py _pack_val
// writes them (little-endian):
//   string: u64 byte length | UTF-8 bytes
//   bool:   u8 (0 or 1)
//   array:  u32 item type | u64 count | items (each as its scalar encoding)
import { GGUFValueType, type GGUFKV, type GGUFScalar } from "./gguf-types.js";

/** A growable little-endian byte buffer. */
export class ByteSink {
  private buf: Buffer;
  length = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u8(v: number): void { this.reserve(1); this.buf.writeUInt8(v, this.length); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.buf.writeInt8(v, this.length); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.buf.writeUInt16LE(v, this.length); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.buf.writeInt16LE(v, this.length); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.buf.writeInt32LE(v, this.length); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.buf.writeFloatLE(v, this.length); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.buf.writeDoubleLE(v, this.length); this.length += 8; }
  u64(v: bigint): void { this.reserve(8); this.buf.writeBigUInt64LE(v, this.length); this.length += 8; }
  i64(v: bigint): void { this.reserve(8); this.buf.writeBigInt64LE(v, this.length); this.length += 8; }
  bytes(b: Uint8Array): void { this.reserve(b.length); this.buf.set(b, this.length); this.length += b.length; }
  zeros(n: number): void { this.reserve(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }

  /** u64 length + UTF-8 bytes. */
  string(s: string): void {
    this.reserve(8 + s.length * 3);
    const n = this.buf.write(s, this.length + 8, "utf8");
    // n < 2^32 always (reserve would have failed first), so the high word is 0.
    this.buf.writeUInt32LE(n, this.length);
    this.buf.writeUInt32LE(0, this.length + 4);
    this.length += 8 + n;
  }

  /** The bytes written so far (a view, valid until the next write). */
  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

const F32_MAX = 3.4028234663852886e38;

function fail(key: string, message: string): never {
  throw new TypeError(`GGUF key "${key}": ${message}`);
}

function toInt(key: string, v: GGUFScalar, lo: number, hi: number, typeName: string): number {
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < lo || n > hi) {
    fail(key, `value ${String(v)} is not a ${typeName} (integer in [${lo}, ${hi}])`);
  }
  return n;
}

function toBig(key: string, v: GGUFScalar, signed: boolean): bigint {
  let b: bigint;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
  else fail(key, `value ${String(v)} is not a ${signed ? "INT64" : "UINT64"} (bigint or safe integer)`);
  const ok = signed ? b >= -(1n << 63n) && b < 1n << 63n : b >= 0n && b < 1n << 64n;
  if (!ok) fail(key, `value ${b} is out of range for ${signed ? "INT64" : "UINT64"}`);
  return b;
}

/** Writes one scalar of `type` (no type tag). */
export function writeScalar(sink: ByteSink, key: string, type: GGUFValueType, v: GGUFScalar): void {
  switch (type) {
    case GGUFValueType.UINT8: sink.u8(toInt(key, v, 0, 0xff, "UINT8")); return;
    case GGUFValueType.INT8: sink.i8(toInt(key, v, -0x80, 0x7f, "INT8")); return;
    case GGUFValueType.UINT16: sink.u16(toInt(key, v, 0, 0xffff, "UINT16")); return;
    case GGUFValueType.INT16: sink.i16(toInt(key, v, -0x8000, 0x7fff, "INT16")); return;
    case GGUFValueType.UINT32: sink.u32(toInt(key, v, 0, 0xffffffff, "UINT32")); return;
    case GGUFValueType.INT32: sink.i32(toInt(key, v, -0x80000000, 0x7fffffff, "INT32")); return;
    case GGUFValueType.UINT64: sink.u64(toBig(key, v, false)); return;
    case GGUFValueType.INT64: sink.i64(toBig(key, v, true)); return;
    case GGUFValueType.FLOAT32:
      if (typeof v !== "number") fail(key, `value ${String(v)} is not a number for FLOAT32`);
      // struct.pack("<f") refuses finite values that round past the f32 range.
      if (Number.isFinite(v) && !Number.isFinite(Math.fround(v))) fail(key, `value ${v} overflows FLOAT32 (max ${F32_MAX})`);
      sink.f32(v);
      return;
    case GGUFValueType.FLOAT64:
      if (typeof v !== "number") fail(key, `value ${String(v)} is not a number for FLOAT64`);
      sink.f64(v);
      return;
    case GGUFValueType.BOOL:
      if (typeof v !== "boolean") fail(key, `value ${String(v)} is not a boolean`);
      sink.u8(v ? 1 : 0);
      return;
    case GGUFValueType.STRING:
      if (typeof v !== "string") fail(key, `value ${String(v)} is not a string`);
      // Python's str.encode("utf-8") refuses lone surrogates; Buffer would write U+FFFD.
      if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed()) fail(key, `string has a lone UTF-16 surrogate`);
      sink.string(v);
      return;
    default:
      fail(key, `unknown value type ${String(type)}`);
  }
}

/**
 * Writes a KV's value as it follows the type tag: the scalar, or for arrays
 * item type + count + items. These are the bytes dump_gguf.py hashes.
 */
export function writeKVValue(sink: ByteSink, kv: GGUFKV): void {
  if (kv.type !== GGUFValueType.ARRAY) {
    writeScalar(sink, kv.key, kv.type, kv.value);
    return;
  }
  const { key, itemType, value } = kv;
  if ((itemType as GGUFValueType) === GGUFValueType.ARRAY || GGUFValueType[itemType] === undefined) {
    fail(key, `unsupported array item type ${String(itemType)}`);
  }
  // gguf_writer.py raises on empty arrays (add_array skips them): leave the key out instead.
  if (value.length === 0) fail(key, "empty array; gguf_writer.py refuses these, leave the key out");
  sink.u32(itemType);
  sink.u64(BigInt(value.length));
  const direct =
    (value instanceof Float32Array && itemType === GGUFValueType.FLOAT32) ||
    (value instanceof Int32Array && itemType === GGUFValueType.INT32) ||
    (value instanceof Uint32Array && itemType === GGUFValueType.UINT32);
  if (direct) {
    // Same bits as packing item by item: node-llama-cpp's platforms are all little-endian.
    sink.bytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    return;
  }
  for (let i = 0; i < value.length; i++) writeScalar(sink, key, itemType, value[i] as GGUFScalar);
}

/** The value bytes of one KV (see writeKVValue), as a fresh buffer. */
export function encodeKVValue(kv: GGUFKV): Buffer {
  const sink = new ByteSink(1024);
  writeKVValue(sink, kv);
  return Buffer.from(sink.view());
}
