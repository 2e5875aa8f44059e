// Test helpers for the architecture tests: the converter's view of a checkpoint's tensor list and
// the reference summaries in test/reference (made by scripts/reference/dump_gguf.py from llama.cpp's own
// convert_hf_to_gguf.py output).
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { HFConfig, SourceTensorInfo } from "@llama-pajamas/gguf/architectures/types.js";

export { FIXTURES } from "./helpers.js";
import { REFERENCE } from "./helpers.js";
export const REF_DIR = REFERENCE;

export interface RefKV {
  type: number;
  itemType?: number;
  value?: unknown;
}
export interface RefTensor {
  name: string;
  shape: number[];
  type: number;
  nbytes: number;
  sha256: string;
}
export interface RefSummary {
  kv: Record<string, RefKV>;
  tensors: RefTensor[];
}

export function loadRef(model: string, outType: string): RefSummary {
  return JSON.parse(readFileSync(join(REF_DIR, `${model}-${outType}.json`), "utf8")) as RefSummary;
}

export function loadConfig(dir: string): HFConfig {
  return JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as HFConfig;
}

export interface LocatedTensor extends SourceTensorInfo {
  file: string;
  begin: number; // absolute byte offsets in `file`
  end: number;
}

/**
 * The tensor list in the converter's order (ModelBase.index_tensors): shard files sorted by name
 * (those the index names, else model*.safetensors), and within a shard the names sorted.
 */
export function readSourceMap(dir: string): Map<string, LocatedTensor> {
  const indexPath = join(dir, "model.safetensors.index.json");
  const parts = existsSync(indexPath)
    ? [...new Set(Object.values((JSON.parse(readFileSync(indexPath, "utf8")) as { weight_map: Record<string, string> }).weight_map))].sort()
    : readdirSync(dir).filter((f) => f.startsWith("model") && f.endsWith(".safetensors")).sort();
  const out = new Map<string, LocatedTensor>();
  for (const part of parts) {
    const file = join(dir, part);
    const fd = openSync(file, "r");
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    const buf = Buffer.alloc(headerLen);
    readSync(fd, buf, 0, headerLen, 8);
    closeSync(fd);
    const header = JSON.parse(buf.toString("utf8")) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    for (const name of Object.keys(header).filter((n) => n !== "__metadata__").sort()) {
      const h = header[name]!;
      out.set(name, { name, dtype: h.dtype, shape: h.shape, file, begin: 8 + headerLen + h.data_offsets[0], end: 8 + headerLen + h.data_offsets[1] });
    }
  }
  return out;
}

/** A tensor's data as float32 (bf16 widens exactly: its bits are the top half of an f32). */
export function readF32(t: LocatedTensor): Float32Array {
  const bytes = Buffer.alloc(t.end - t.begin);
  const fd = openSync(t.file, "r");
  try {
    readSync(fd, bytes, 0, bytes.length, t.begin);
  } finally {
    closeSync(fd);
  }
  if (t.dtype === "F32") return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  if (t.dtype !== "BF16") throw new Error(`test helper reads F32/BF16 only, not ${t.dtype}`);
  const n = bytes.length / 2;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes.readUInt16LE(i * 2) << 16;
  return new Float32Array(out.buffer);
}

export function sha256F32(data: Float32Array): string {
  return createHash("sha256").update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest("hex");
}
