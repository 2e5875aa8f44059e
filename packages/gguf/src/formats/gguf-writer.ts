// Streaming GGUF writer whose bytes equal gguf-py gguf_writer.py's for the same KVs and tensors.
//
// File layout (little-endian), as GGUFWriter.write_header_to_file / write_kv_data_to_file /
// write_ti_data_to_file / write_tensors_to_file produce it:
//   "GGUF" | u32 version=3 | u64 n_tensors | u64 n_kv
//   n_kv x      [ key: u64 len + UTF-8 | u32 value type | value ]
//   n_tensors x [ name: u64 len + UTF-8 | u32 n_dims | n_dims x u64 ne (ggml order, i.e. the
//                 PyTorch shape reversed) | u32 ggml type | u64 offset in the data section ]
//   zeros up to a multiple of the alignment
//   per tensor: data | zeros up to a multiple of the alignment (after the last one too)
// Offsets advance by each tensor's byte size rounded up to the alignment (ggml_pad).
//
// Order is enforced like gguf_writer.py's WriterState: KVs and tensor infos are collected
// first (in any interleaving, as the converter adds general.* KVs after its tensors), then
// open(), writeHeader() writes header + KVs + infos once, then each tensor's data in
// declaration order, then finish(). Only one tensor's data is held at a time.
import { createHash } from "node:crypto";
import { open as openFile, unlink, type FileHandle } from "node:fs/promises";
import { OutputError } from "@llama-pajamas/artifact";
import { GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GGUFValueType, type GGMLType, type GGUFKV } from "./gguf-types.js";
import { ByteSink, writeKVValue } from "./gguf-kv-encode.js";
import { ggmlTypeName, tensorBytes } from "./ggml-type-traits.js";

/** Longest tensor name llama.cpp loads: GGML_MAX_NAME less the terminating NUL. */
export const GGUF_MAX_TENSOR_NAME_BYTES = GGML_MAX_NAME - 1;

export interface GGUFTensorInfo {
  /** GGUF tensor name, e.g. "blk.0.attn_q.weight". */
  name: string;
  /** PyTorch order, outermost first; written reversed as ggml ne[]. */
  shape: readonly number[];
  type: GGMLType;
  /** Bytes of data; must equal tensorBytes(type, shape reversed). */
  byteLength: number;
}

type WriterState = "collecting" | "open" | "header" | "finished" | "aborted";

function stateError(message: string): OutputError {
  return new OutputError(message, { code: "E_GGUF_WRITER_STATE" });
}

const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment;

/** Bytes written between background flushes to disk, so that finish()'s fsync has little left. */
const FLUSH_EVERY_BYTES = 256 << 20;

export class GGUFWriter {
  private readonly kvs = new Map<string, GGUFKV>();
  private readonly tensors: (GGUFTensorInfo & { offset: number })[] = [];
  private readonly tensorNames = new Set<string>();
  private state: WriterState = "collecting";
  private alignmentBytes = GGUF_DEFAULT_ALIGNMENT;
  private fh: FileHandle | undefined;
  private filePath: string | undefined;
  private position = 0;
  private nextTensor = 0;
  /** Bytes of the current tensor already written through writeTensorPart. */
  private partBytes = 0;
  private inFlight: Promise<unknown> | undefined;
  private zeroPad = Buffer.alloc(0);
  private plannedFileBytes: number | undefined;
  // Writes are sequential, so the file's SHA-256 is computed as it is written (no second read).
  private readonly hash = createHash("sha256");
  private digest: string | undefined;
  private unflushedBytes = 0;
  private flushing: Promise<void> | undefined;
  private flushError: unknown;

  /** Data alignment in bytes: 32, or the value of a general.alignment KV. */
  get alignment(): number {
    return this.alignmentBytes;
  }

  /** Path given to open(), if any. */
  get path(): string | undefined {
    return this.filePath;
  }

  /** SHA-256 (hex) of the file's bytes; known once finish() has run. */
  get sha256(): string | undefined {
    return this.digest;
  }

  /** Bytes the finished file will have; known once writeHeader() has run. */
  get fileBytes(): number | undefined {
    return this.plannedFileBytes;
  }

  /** Adds a metadata entry; entries are written in the order they are added. */
  addKV(kv: GGUFKV): void {
    if (this.state !== "collecting" && this.state !== "open") {
      throw stateError(`addKV("${kv.key}") after the header was written (state ${this.state}); add every KV before writeHeader()`);
    }
    if (typeof kv.key !== "string" || kv.key.length === 0) throw new OutputError(`GGUF key must be a non-empty string, got ${JSON.stringify(kv.key)}`);
    if (this.kvs.has(kv.key)) {
      throw new OutputError(`duplicate GGUF key "${kv.key}"; each key may be added once`, { code: "E_GGUF_DUPLICATE" });
    }
    if (kv.key === "general.alignment") {
      // gguf_reader.py and gguf.cpp accept only a UINT32 power of two here.
      const a = kv.value;
      if (kv.type !== GGUFValueType.UINT32 || typeof a !== "number" || !Number.isInteger(a) || a <= 0 || a > 0xffffffff || (a & (a - 1)) !== 0) {
        throw new OutputError(`general.alignment must be a UINT32 power of two, got type ${kv.type} value ${String(a)}`);
      }
      this.alignmentBytes = a;
    }
    this.kvs.set(kv.key, kv);
  }

  /** Declares a tensor; data must later come in declaration order. */
  addTensorInfo(info: GGUFTensorInfo): void {
    if (this.state !== "collecting") {
      throw stateError(`addTensorInfo("${info.name}") after open() (state ${this.state}); declare every tensor before opening the file`);
    }
    const { name, shape, type, byteLength } = info;
    if (this.tensorNames.has(name)) {
      throw new OutputError(`duplicate GGUF tensor name "${name}"`, { code: "E_GGUF_DUPLICATE" });
    }
    const nameBytes = Buffer.byteLength(name, "utf8");
    if (nameBytes === 0 || nameBytes > GGUF_MAX_TENSOR_NAME_BYTES) {
      throw new OutputError(`tensor name "${name}" is ${nameBytes} bytes; llama.cpp accepts 1 to ${GGUF_MAX_TENSOR_NAME_BYTES}`);
    }
    if (shape.length > GGML_MAX_DIMS) {
      throw new OutputError(`tensor "${name}" has ${shape.length} dimensions [${shape.join(", ")}]; ggml allows at most ${GGML_MAX_DIMS}`);
    }
    let expected: number;
    try {
      expected = tensorBytes(type, [...shape].reverse());
    } catch (cause) {
      throw new OutputError(`tensor "${name}" of shape [${shape.join(", ")}] cannot be stored as ${ggmlTypeName(type)}: ${(cause as Error).message}`, { cause });
    }
    if (byteLength !== expected) {
      throw new OutputError(`tensor "${name}": byteLength ${byteLength} != ${expected} for shape [${shape.join(", ")}] as ${ggmlTypeName(type)}`);
    }
    this.tensorNames.add(name);
    this.tensors.push({ name, shape: [...shape], type, byteLength, offset: 0 });
  }

  /** Opens (creates or truncates) the output file. */
  async open(path: string): Promise<void> {
    if (this.state !== "collecting") throw stateError(`open("${path}") in state ${this.state}; a writer writes one file once`);
    this.filePath = path;
    try {
      this.fh = await openFile(path, "w");
    } catch (cause) {
      throw new OutputError(`cannot create ${path}: ${(cause as Error).message}`, { path, cause });
    }
    this.state = "open";
  }

  /** Writes header, KVs and tensor infos (once), padded to the alignment. */
  async writeHeader(): Promise<void> {
    this.checkIdle();
    if (this.state !== "open") throw stateError(`writeHeader() in state ${this.state}; call open() first, and writeHeader() once`);
    const sink = new ByteSink(1 << 20);
    sink.u32(GGUF_MAGIC);
    sink.u32(GGUF_VERSION);
    sink.u64(BigInt(this.tensors.length));
    sink.u64(BigInt(this.kvs.size));
    for (const kv of this.kvs.values()) {
      sink.string(kv.key);
      sink.u32(kv.type);
      try {
        writeKVValue(sink, kv);
      } catch (cause) {
        throw new OutputError((cause as Error).message, { path: this.filePath, cause });
      }
    }
    let offset = 0;
    for (const t of this.tensors) {
      t.offset = offset;
      sink.string(t.name);
      sink.u32(t.shape.length);
      for (let j = t.shape.length - 1; j >= 0; j--) sink.u64(BigInt(t.shape[j] as number));
      sink.u32(t.type);
      sink.u64(BigInt(offset));
      offset += alignUp(t.byteLength, this.alignmentBytes);
    }
    sink.zeros(alignUp(sink.length, this.alignmentBytes) - sink.length);
    this.zeroPad = Buffer.alloc(this.alignmentBytes);
    this.plannedFileBytes = sink.length + offset;
    await this.guard(() => this.write(sink.view()));
    this.state = "header";
  }

  /** Writes the data of the next declared tensor, then zeros up to the alignment. */
  async writeTensorData(name: string, data: Uint8Array): Promise<void> {
    const t = this.nextDeclared(name);
    if (this.partBytes !== 0) throw stateError(`writeTensorData("${name}") after ${this.partBytes} bytes of it were written in parts`);
    if (data.byteLength !== t.byteLength) {
      throw new OutputError(`tensor "${name}": got ${data.byteLength} bytes of data, declared ${t.byteLength}`, { path: this.filePath });
    }
    await this.writeTensorPart(name, data);
  }

  /**
   * Appends one piece of the next declared tensor's data, so a large tensor can be streamed in
   * row chunks; after its last byte the tensor is padded and the next one becomes current.
   */
  async writeTensorPart(name: string, data: Uint8Array): Promise<void> {
    const t = this.nextDeclared(name);
    if (this.partBytes + data.byteLength > t.byteLength) {
      throw new OutputError(
        `tensor "${name}": ${this.partBytes + data.byteLength} bytes of data written, declared ${t.byteLength}`,
        { path: this.filePath },
      );
    }
    const complete = this.partBytes + data.byteLength === t.byteLength;
    await this.guard(async () => {
      await this.write(data);
      const pad = alignUp(t.byteLength, this.alignmentBytes) - t.byteLength;
      if (complete && pad > 0) await this.write(this.zeroPad.subarray(0, pad));
    });
    if (complete) {
      this.partBytes = 0;
      this.nextTensor++;
    } else {
      this.partBytes += data.byteLength;
    }
  }

  private nextDeclared(name: string): GGUFTensorInfo {
    this.checkIdle();
    if (this.state !== "header") throw stateError(`writing "${name}" in state ${this.state}; call writeHeader() first`);
    const t = this.tensors[this.nextTensor];
    if (t === undefined) throw stateError(`writing "${name}": all ${this.tensors.length} declared tensors are already written`);
    if (t.name !== name) {
      throw stateError(`writing "${name}" out of order: the next tensor is "${t.name}" (#${this.nextTensor} of ${this.tensors.length})`);
    }
    return t;
  }

  /** Checks every tensor was written, flushes to disk and closes the file. */
  async finish(): Promise<void> {
    this.checkIdle();
    if (this.state !== "header") throw stateError(`finish() in state ${this.state}; write the header and all tensor data first`);
    if (this.nextTensor !== this.tensors.length) {
      const missing = this.tensors.length - this.nextTensor;
      throw stateError(`finish() with ${missing} tensor(s) not written, starting at "${this.tensors[this.nextTensor]?.name}"`);
    }
    await this.guard(async () => {
      const fh = this.fh as FileHandle;
      await this.flushing;
      if (this.flushError !== undefined) {
        const cause = this.flushError as Error;
        throw new OutputError(`cannot flush ${this.filePath}: ${cause.message}`, { path: this.filePath, cause });
      }
      try {
        await fh.sync();
        await fh.close();
      } catch (cause) {
        throw new OutputError(`cannot flush ${this.filePath}: ${(cause as Error).message}`, { path: this.filePath, cause });
      }
    });
    this.fh = undefined;
    this.digest = this.hash.digest("hex");
    this.state = "finished";
  }

  /** Closes and deletes a partial file. A no-op after finish(), and when nothing was opened. */
  async abort(): Promise<void> {
    if (this.state === "finished" || this.state === "aborted") return;
    const wasOpened = this.state !== "collecting";
    this.state = "aborted";
    await this.inFlight?.catch(() => undefined);
    await this.flushing;
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    if (wasOpened && this.filePath !== undefined) {
      await unlink(this.filePath).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw new OutputError(`cannot delete partial file ${this.filePath}: ${e.message}`, { path: this.filePath, cause: e });
      });
    }
  }

  /** Each call must be awaited before the next: order checks rely on it. */
  private checkIdle(): void {
    if (this.inFlight !== undefined) throw stateError("a previous GGUFWriter call is still running; await each call before the next");
  }

  /** Runs one file operation, marking the writer busy meanwhile. */
  private async guard(op: () => Promise<void>): Promise<void> {
    this.checkIdle();
    const p = op();
    this.inFlight = p;
    try {
      await p;
    } finally {
      this.inFlight = undefined;
    }
  }

  private async write(data: Uint8Array): Promise<void> {
    const fh = this.fh;
    if (fh === undefined) throw stateError("the file is not open");
    let done = 0;
    try {
      while (done < data.byteLength) {
        const { bytesWritten } = await fh.write(data, done, data.byteLength - done, this.position + done);
        done += bytesWritten;
      }
    } catch (cause) {
      const e = cause as NodeJS.ErrnoException;
      const hint = e.code === "ENOSPC" ? " (disk full)" : "";
      throw new OutputError(`cannot write ${this.filePath}${hint}: ${e.message}`, { path: this.filePath, cause });
    }
    this.position += data.byteLength;
    this.hash.update(data);
    // Start writing dirty pages back while the conversion goes on (one flush at a time).
    this.unflushedBytes += data.byteLength;
    if (this.unflushedBytes >= FLUSH_EVERY_BYTES && this.flushing === undefined) {
      this.unflushedBytes = 0;
      this.flushing = fh
        .datasync()
        .catch((e: unknown) => void (this.flushError ??= e))
        .finally(() => (this.flushing = undefined));
    }
  }
}
