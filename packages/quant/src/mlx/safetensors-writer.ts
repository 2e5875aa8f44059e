// A safetensors file as mx.save_safetensors writes it (mlx/io/safetensors.cpp): u64 LE header
// length, the header as compact JSON with keys sorted bytewise (nlohmann::json keeps objects in
// a std::map), "__metadata__" included, no padding, then the data. MLX writes the data in its
// unordered_map's order, which no other program can reproduce; we write it in header order.
//
// Every tensor's place is fixed by the header, so data may be written in any order and in parts
// (positional writes): a large tensor is quantized row chunk by row chunk without holding it.
import { open, type FileHandle } from "node:fs/promises";
import { OutputError } from "@llama-pajamas/artifact";

export interface TensorEntry {
  name: string;
  dtype: "U32" | "F16" | "BF16" | "F32";
  shape: number[];
}

const ITEM_BYTES = { U32: 4, F16: 2, BF16: 2, F32: 4 } as const;

export function entryBytes(e: TensorEntry): number {
  return e.shape.reduce((a, b) => a * b, ITEM_BYTES[e.dtype]);
}

/** Bytewise (UTF-8) order, std::string's operator<. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The header JSON and each tensor's absolute offset, for entries in any order. */
export function layoutSafetensors(entries: readonly TensorEntry[], metadata: Record<string, string>): { header: Buffer; offsets: Map<string, { start: number; bytes: number }>; fileBytes: number } {
  const sorted = [...entries].sort((a, b) => compareBytes(a.name, b.name));
  const parts: [string, unknown][] = [["__metadata__", Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => compareBytes(a, b)))]];
  const rel = new Map<string, { start: number; bytes: number }>();
  let offset = 0;
  for (const e of sorted) {
    if (rel.has(e.name)) throw new OutputError(`tensor "${e.name}" is listed twice`);
    const bytes = entryBytes(e);
    // nlohmann orders a child's keys too: data_offsets, dtype, shape.
    parts.push([e.name, { data_offsets: [offset, offset + bytes], dtype: e.dtype, shape: e.shape }]);
    rel.set(e.name, { start: offset, bytes });
    offset += bytes;
  }
  parts.sort(([a], [b]) => compareBytes(a, b));
  const json = "{" + parts.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",") + "}";
  const header = Buffer.from(json, "utf8");
  const dataStart = 8 + header.length;
  const offsets = new Map([...rel].map(([k, v]) => [k, { start: dataStart + v.start, bytes: v.bytes }]));
  return { header, offsets, fileBytes: dataStart + offset };
}

export class SafetensorsFileWriter {
  private fh: FileHandle | undefined;
  private readonly written = new Map<string, number>();
  private layout: ReturnType<typeof layoutSafetensors>;

  constructor(
    readonly path: string,
    entries: readonly TensorEntry[],
    metadata: Record<string, string> = { format: "mlx" },
  ) {
    this.layout = layoutSafetensors(entries, metadata);
  }

  get fileBytes(): number {
    return this.layout.fileBytes;
  }

  has(name: string): boolean {
    return this.layout.offsets.has(name);
  }

  async open(): Promise<void> {
    this.fh = await open(this.path, "wx");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(this.layout.header.length));
    await this.writeAt(Buffer.concat([len, this.layout.header]), 0);
  }

  /** Writes `bytes` at byte `offsetBytes` of tensor `name`. */
  async write(name: string, offsetBytes: number, bytes: Uint8Array): Promise<void> {
    const at = this.layout.offsets.get(name);
    if (!at) throw new OutputError(`tensor "${name}" is not in ${this.path}`);
    if (offsetBytes < 0 || offsetBytes + bytes.length > at.bytes) {
      throw new OutputError(`write of ${bytes.length} bytes at ${offsetBytes} runs outside tensor "${name}" (${at.bytes} bytes)`);
    }
    await this.writeAt(bytes, at.start + offsetBytes);
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.length);
  }

  private async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.fh!.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
  }

  /** Closes the file after checking every tensor got exactly its bytes. */
  async finish(): Promise<void> {
    for (const [name, at] of this.layout.offsets) {
      const got = this.written.get(name) ?? 0;
      if (got !== at.bytes) throw new OutputError(`tensor "${name}" in ${this.path}: ${got} of ${at.bytes} bytes written`);
    }
    await this.fh?.close();
    this.fh = undefined;
  }

  async abort(): Promise<void> {
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }
}
