// Quantizes a tensor's rows in parallel. ggml quantizes every row on its own (one row's bytes
// never depend on another's), so splitting the rows into chunks gives the bytes
// llama_model_quantize gives; llama-quant.cpp llama_tensor_quantize_impl splits the same way
// and, like here, never lets a chunk cross an expert boundary (each expert has its own slice of
// the importance matrix).
//
// Data movement: a SharedArrayBuffer input is passed to the workers as views, with no copy at
// all; any other input is copied once per chunk into an ArrayBuffer of its own, which is
// transferred (no structured-clone copy). Each worker transfers its output back. Inputs may be
// the checkpoint's raw F16/BF16 bytes: widening and rounding run in the workers (rows.ts).

import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ConversionError, InputError, UsageError } from "@llama-pajamas/artifact";
import type { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { quantizeValues } from "./kernels.js";
import { encodeRows, type RowsRequest, SOURCE_DTYPE_BYTES } from "./rows.js";
import type { ChunkReply, ChunkRequest } from "./worker.js";

/** Fewest floats per chunk: llama-quant.cpp's min_chunk_size (32 * 512). */
const MIN_CHUNK_ELEMENTS = 32 * 512;
/** Chunks per worker and tensor, so that uneven chunks still keep every worker busy. */
const CHUNKS_PER_WORKER = 4;
/**
 * Chunks handed to one worker at a time: with a second one queued in its port, a worker that
 * finishes starts the next without waiting for this thread (which may be busy reading or writing).
 */
const CHUNKS_QUEUED_PER_WORKER = 2;

export interface QuantizeJob {
  type: GGMLType | number;
  /** nRows * nPerRow floats, row-major. */
  data: Float32Array;
  nRows: number;
  nPerRow: number;
  /**
   * Importance vector: nPerRow values shared by all rows, or nExpert * nPerRow values for a
   * 3-D expert tensor whose nRows split evenly into nExpert experts (llama-quant.cpp's layout).
   */
  imatrix?: Float32Array;
}

/**
 * Rows of source bytes to encode (rows.ts RowsRequest), with QuantizeJob's importance vector:
 * nPerRow values, or nPerRow per expert.
 */
export type EncodeJob = RowsRequest;

export interface QuantizePoolOptions {
  /** Worker threads; default os.availableParallelism(). 1 quantizes on the calling thread. */
  threads?: number;
  /** The compiled worker module; default ./worker.js next to this module. */
  workerUrl?: URL;
}

interface Chunk {
  firstRow: number;
  nRows: number;
  imatrix: Float32Array | undefined;
}

/** Splits rows into chunks that do not cross expert boundaries; checks the job first. */
function planChunks(job: { nRows: number; nPerRow: number; values: number; imatrix?: Float32Array }, maxRowsPerChunk: number): Chunk[] {
  const { nRows, nPerRow, values, imatrix } = job;
  if (!Number.isSafeInteger(nRows) || !Number.isSafeInteger(nPerRow) || nRows < 0 || nPerRow <= 0) {
    throw new UsageError(`bad quantize job: ${nRows} rows of ${nPerRow}`);
  }
  if (values !== nRows * nPerRow) {
    throw new UsageError(`quantize job has ${values} floats for ${nRows} rows of ${nPerRow}`);
  }
  let nExpert = 1;
  if (imatrix !== undefined) {
    nExpert = imatrix.length / nPerRow;
    if (!Number.isInteger(nExpert) || nExpert < 1 || nRows % nExpert !== 0) {
      throw new UsageError(
        `importance vector of ${imatrix.length} values does not fit ${nRows} rows of ${nPerRow} ` +
          `(want ${nPerRow}, or ${nPerRow} per expert)`,
      );
    }
  }
  const rowsPerExpert = nExpert > 1 ? nRows / nExpert : Math.max(nRows, 1);
  const chunks: Chunk[] = [];
  for (let row = 0; row < nRows; ) {
    const expert = Math.floor(row / rowsPerExpert);
    const n = Math.min(maxRowsPerChunk, nRows - row, rowsPerExpert - (row % rowsPerExpert));
    const slice = imatrix && nExpert > 1 ? imatrix.subarray(expert * nPerRow, (expert + 1) * nPerRow) : imatrix;
    chunks.push({ firstRow: row, nRows: n, imatrix: slice });
    row += n;
  }
  return chunks;
}

/** Quantizes on the calling thread (the pool's path when threads = 1). */
export function quantizeSync(job: QuantizeJob): Uint8Array {
  const chunks = planChunks({ ...job, values: job.data.length }, Number.MAX_SAFE_INTEGER);
  if (chunks.length === 1) return quantizeValues(job.type, job.data, job.nRows, job.nPerRow, chunks[0]!.imatrix);
  const parts = chunks.map((c) =>
    quantizeValues(job.type, job.data.subarray(c.firstRow * job.nPerRow, (c.firstRow + c.nRows) * job.nPerRow), c.nRows, job.nPerRow, c.imatrix),
  );
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The compiled worker next to this module; undefined when running from TypeScript sources. */
function defaultWorkerUrl(): URL | undefined {
  const url = new URL("./worker.js", import.meta.url);
  return import.meta.url.endsWith(".js") && existsSync(fileURLToPath(url)) ? url : undefined;
}

function rebuildError(e: { name: string; message: string; code?: string }): Error {
  if (e.name === "UsageError") return new UsageError(e.message);
  if (e.name === "InputError") return new InputError(e.message, { code: e.code });
  return new ConversionError(`quantize worker: ${e.message}`, { code: e.code });
}

interface Pending {
  resolve: (bytes: Uint8Array) => void;
  reject: (e: unknown) => void;
  worker: Worker;
}

/**
 * A pool of worker threads, each with its own native bindings, that quantizes tensors chunk
 * by chunk and returns the bytes in row order. Without a compiled worker (running from .ts
 * sources) or with threads = 1 it quantizes on the calling thread; `mode` says which.
 */
export class QuantizePool {
  readonly size: number;
  readonly mode: "workers" | "inline";
  private readonly workerUrl: URL | undefined;
  private readonly workers: Worker[] = [];
  /** Chunks each live worker holds (running or queued in its port). */
  private readonly load = new Map<Worker, number>();
  private readonly queue: { req: ChunkRequest; transfer: ArrayBuffer[]; pending: Omit<Pending, "worker"> }[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(opts: QuantizePoolOptions = {}) {
    const threads = opts.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1) throw new UsageError(`threads must be a positive integer, got ${threads}`);
    this.workerUrl = opts.workerUrl ?? defaultWorkerUrl();
    this.mode = threads > 1 && this.workerUrl !== undefined ? "workers" : "inline";
    this.size = this.mode === "workers" ? threads : 1;
  }

  /** Quantizes one tensor; the bytes come back in row order. */
  async quantize(job: QuantizeJob): Promise<Uint8Array> {
    if (this.closed) throw new UsageError("QuantizePool is closed");
    if (this.mode === "inline") return quantizeSync(job);
    const { data, ...rest } = job;
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const parts = await Promise.all(this.encode({ ...rest, src, dtype: "F32" }));
    return parts.length === 1 ? parts[0]! : concat(parts);
  }

  /**
   * Encodes rows of source bytes (widened, rounded and quantized or converted in the workers);
   * returns one promise per chunk, in row order, so the caller can write each part as it comes.
   * Chunks queue behind earlier jobs' chunks: a caller may keep several jobs in flight.
   */
  encode(job: EncodeJob): Promise<Uint8Array>[] {
    if (this.closed) return [Promise.reject(new UsageError("QuantizePool is closed"))];
    const itemBytes = SOURCE_DTYPE_BYTES[job.dtype];
    if (itemBytes === undefined) return [Promise.reject(new UsageError(`unsupported source dtype ${String(job.dtype)}; expected F32, F16 or BF16`))];
    const rowBytes = job.nPerRow * itemBytes;
    let chunks: Chunk[];
    try {
      const rowsFor = this.mode === "inline"
        ? Number.MAX_SAFE_INTEGER
        : Math.max(Math.ceil(MIN_CHUNK_ELEMENTS / job.nPerRow), Math.ceil(job.nRows / (this.size * CHUNKS_PER_WORKER)));
      chunks = planChunks({ ...job, values: job.src.byteLength / itemBytes }, rowsFor);
    } catch (e) {
      return [Promise.reject(e)];
    }
    if (chunks.length === 0) return [Promise.resolve(new Uint8Array(0))];
    const shared = job.src.buffer instanceof SharedArrayBuffer;
    return chunks.map((c) => {
      const from = c.firstRow * rowBytes;
      const to = from + c.nRows * rowBytes;
      const req = { ...job, src: job.src.subarray(from, to), nRows: c.nRows, imatrix: c.imatrix };
      if (this.mode === "inline") {
        try {
          return Promise.resolve(encodeRows(req));
        } catch (e) {
          return Promise.reject(e);
        }
      }
      if (!shared) req.src = req.src.slice(); // its own buffer, to transfer
      const imatrix = c.imatrix?.slice(); // small; its own buffer so it can be transferred
      const transfer = [req.src.buffer, imatrix?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
      return this.submit({ ...req, id: this.nextId++, imatrix }, transfer);
    });
  }

  /** Ends the workers; pending jobs are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const err = new UsageError("QuantizePool closed while quantizing");
    for (const q of this.queue.splice(0)) q.pending.reject(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    await Promise.all(this.workers.splice(0).map((w) => w.terminate()));
    this.load.clear();
  }

  private submit(req: ChunkRequest, transfer: ArrayBuffer[]): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.queue.push({ req, transfer, pending: { resolve, reject } });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const w = this.pickWorker();
      if (!w) return;
      const { req, transfer, pending } = this.queue.shift()!;
      this.pending.set(req.id, { ...pending, worker: w });
      const n = this.load.get(w)!;
      this.load.set(w, n + 1);
      if (n === 0) w.ref(); // busy workers keep the process alive until their reply arrives
      w.postMessage(req, transfer);
    }
  }

  /** An idle worker, else a new one, else the least loaded one with room in its queue. */
  private pickWorker(): Worker | undefined {
    let best: Worker | undefined;
    let bestLoad = CHUNKS_QUEUED_PER_WORKER;
    for (const [w, n] of this.load) {
      if (n < bestLoad) [best, bestLoad] = [w, n];
      if (n === 0) return w;
    }
    if (this.workers.length < this.size) return this.spawn();
    return best;
  }

  private spawn(): Worker {
    const w = new Worker(this.workerUrl!);
    w.on("message", (reply: ChunkReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (p) {
        if (reply.ok) p.resolve(reply.bytes);
        else p.reject(rebuildError(reply.error));
      }
      if (!this.closed && this.load.has(w)) {
        const n = this.load.get(w)! - 1;
        this.load.set(w, n);
        if (n === 0) w.unref(); // an idle pool does not keep the process alive
        this.pump();
      }
    });
    const fail = (e: unknown) => {
      // a crashed worker fails its chunks; the next job spawns a fresh one
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      this.load.delete(w);
      for (const [id, p] of this.pending) {
        if (p.worker === w) {
          this.pending.delete(id);
          p.reject(new ConversionError(`quantize worker failed: ${(e as Error)?.message ?? String(e)}`, { cause: e }));
        }
      }
      if (!this.closed) this.pump();
    };
    w.on("error", fail);
    w.on("exit", (code) => {
      if (!this.closed && code !== 0) fail(new Error(`worker exited with code ${code}`));
      else if (!this.closed) fail(new Error("worker exited"));
    });
    this.workers.push(w);
    this.load.set(w, 0);
    return w;
  }
}
