// The pipeline's tensor loop: every planned tensor's data, read once, encoded for every output
// and written in order, with peak memory bounded whatever the model's size.
//
//   main thread:  read piece -> hand its rows to the pool -> ... -> write the oldest piece's parts
//   workers:      widen (BF16/F16 -> F32), round through the intermediate type, quantize/convert
//                 (ggml_quantize_chunk, llama.cpp's own kernels, or for Q4_K/Q5_K/Q6_K its
//                 byte-identical WebAssembly port: quantize/kernels.ts)
//
// The main thread only reads and writes. Pieces are read straight into shared memory the workers
// see without a copy, and several pieces stay in flight (IN_FLIGHT_ELEMENTS), so the workers
// always have queued rows while the oldest piece's bytes are written. Chunking never changes a
// byte: ggml quantizes each row on its own, and a piece never crosses an expert's rows (each
// expert has its own slice of the importance matrix, as in llama-quant.cpp).

import { endianness } from "node:os";
import { OutputError } from "@llama-pajamas/artifact";
import { stackTensors } from "@llama-pajamas/gguf/architectures/transforms.js";
import type { TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import type { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { readTensorBytesInto, readTensorF32, type SafetensorsTensor } from "@llama-pajamas/gguf/formats/safetensors.js";
import { imatrixForTensor } from "./quantize/imatrix.js";
import type { QuantizePool } from "./quantize/pool.js";
import { SOURCE_DTYPE_BYTES, type SourceDtype, type ViaType } from "./quantize/rows.js";

/** Source bytes per piece when a tensor is streamed in row chunks (2^24 BF16 values). */
const PIECE_BYTES = 32 << 20;
/** Source values read but not yet written: ~3 BF16 pieces queued keep every worker busy. */
const IN_FLIGHT_ELEMENTS = 3 << 24;
/** Pieces in flight at most (many small tensors in a row). */
const IN_FLIGHT_PIECES = 64;
/** Pieces smaller than this get shared memory of their own instead of a pooled slab. */
const SLAB_MIN_BYTES = 1 << 20;

export interface TensorOutput {
  /** Per plan, the type this output stores. */
  types: readonly GGMLType[];
  writer: GGUFWriter;
}

export interface StreamTensorsOptions {
  plans: readonly TensorPlan[];
  sources: ReadonlyMap<string, SafetensorsTensor>;
  outputs: readonly TensorOutput[];
  /** Per plan, the float type quantized (and F32) outputs pass through first. */
  via: readonly GGMLType[];
  imatrix?: ReadonlyMap<string, Float32Array>;
  pool: QuantizePool;
  signal?: AbortSignal;
  /** After a tensor's last byte is written to every output; `bytesRead` counts source bytes so far. */
  onTensor?: (index: number, bytesRead: number) => void;
}

/** A run of whole rows of one planned tensor. */
interface Piece {
  index: number; // into plans
  /** The rows' values, little-endian, in shared memory. */
  bytes: Uint8Array;
  dtype: SourceDtype;
  /** For a 3-D tensor streamed by rows, the expert (outer index) whose rows these are. */
  expert?: number;
  sourceBytes: number;
  last: boolean; // the tensor's final piece
}

/** Shared buffers of one size, reused: no page faults or zeroing per piece, and RSS stays flat. */
class SlabPool {
  private readonly free: SharedArrayBuffer[] = [];
  constructor(readonly slabBytes: number) {}

  acquire(bytes: number): Uint8Array {
    if (bytes < SLAB_MIN_BYTES || bytes > this.slabBytes) return new Uint8Array(new SharedArrayBuffer(bytes));
    return new Uint8Array(this.free.pop() ?? new SharedArrayBuffer(this.slabBytes), 0, bytes);
  }

  release(view: Uint8Array): void {
    const b = view.buffer;
    if (b instanceof SharedArrayBuffer && b.byteLength === this.slabBytes && view.byteLength >= SLAB_MIN_BYTES) this.free.push(b);
  }
}

function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function floatDtype(t: SafetensorsTensor): SourceDtype | undefined {
  return t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16" ? t.dtype : undefined;
}

/**
 * The sources a tensor streams from, each holding whole experts' rows in order, or undefined
 * when it must be built whole: plain copies of up to 3 dimensions and stacked experts stream;
 * other transforms (permuted, split, shifted) and generated tensors are built in F32.
 */
function streamSources(plan: TensorPlan, sources: ReadonlyMap<string, SafetensorsTensor>): SafetensorsTensor[] | undefined {
  if (plan.generate || plan.shape.length > 3 || elementsOf(plan.shape) === 0 || endianness() !== "LE") return undefined;
  if (!plan.build && plan.sources.length === 1) {
    const t = sources.get(plan.sources[0]!)!;
    return floatDtype(t) ? [t] : undefined;
  }
  if (plan.build !== stackTensors || plan.shape.length !== 3) return undefined;
  const inner = plan.shape.slice(1).join();
  const ts = plan.sources.map((n) => sources.get(n)!);
  return ts.length === plan.shape[0] && ts.every((t) => floatDtype(t) && t.shape.join() === inner) ? ts : undefined;
}

/**
 * The data of every planned tensor, in order. Streamed tensors come in row chunks of at most
 * PIECE_BYTES, read raw into shared memory; a 3-D tensor's pieces never cross an
 * expert's rows. Built tensors come whole, as F32.
 */
async function* pieces(plans: readonly TensorPlan[], sources: ReadonlyMap<string, SafetensorsTensor>, slabs: SlabPool): AsyncGenerator<Piece> {
  for (let index = 0; index < plans.length; index++) {
    const plan = plans[index]!;
    const streamed = streamSources(plan, sources);
    if (!streamed) {
      let data: Float32Array;
      let sourceBytes = 0;
      if (plan.generate) {
        data = plan.generate();
      } else {
        const inputs = await Promise.all(plan.sources.map((n) => readTensorF32(sources.get(n)!)));
        data = plan.build ? plan.build(inputs) : inputs[0]!;
        sourceBytes = plan.sources.reduce((s, n) => s + sources.get(n)!.end - sources.get(n)!.start, 0);
      }
      const bytes = slabs.acquire(data.byteLength);
      bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      yield { index, bytes, dtype: "F32", sourceBytes, last: true };
      continue;
    }
    const nPerRow = plan.shape.at(-1) ?? 1;
    // Rows per expert for a 3-D tensor; otherwise all rows form one run.
    const runRows = plan.shape.length === 3 ? plan.shape[1]! : elementsOf(plan.shape) / nPerRow;
    let expert = 0;
    for (let s = 0; s < streamed.length; s++) {
      const t = streamed[s]!;
      const dtype = floatDtype(t)!;
      const rowBytes = nPerRow * SOURCE_DTYPE_BYTES[dtype];
      const rowsPerPiece = Math.max(1, Math.floor(PIECE_BYTES / rowBytes));
      const tensorRows = (t.end - t.start) / rowBytes;
      for (let run = 0; run < tensorRows; run += runRows, expert++) {
        const runEnd = Math.min(run + runRows, tensorRows);
        for (let row = run; row < runEnd; row += rowsPerPiece) {
          const rows = Math.min(rowsPerPiece, runEnd - row);
          const bytes = await readTensorBytesInto(t, row * rowBytes, slabs.acquire(rows * rowBytes));
          const last = s === streamed.length - 1 && row + rows >= tensorRows;
          yield { index, bytes, dtype, expert: plan.shape.length === 3 ? expert : undefined, sourceBytes: rows * rowBytes, last };
        }
      }
    }
  }
}

/** Iterates `source` while its next item is already being produced. */
async function* readAhead<T>(source: AsyncGenerator<T>): AsyncGenerator<T> {
  let next = source.next();
  while (true) {
    const r = await next;
    if (r.done) return;
    next = source.next();
    yield r.value;
  }
}

/** Hands one piece to the pool for one output; the parts come back in row order. */
function encode(opts: {
  plan: TensorPlan;
  piece: Piece;
  type: GGMLType;
  via: GGMLType;
  imatrix: Float32Array | undefined;
  pool: QuantizePool;
}): Promise<Uint8Array>[] {
  const { plan, piece, type } = opts;
  const nPerRow = plan.shape.at(-1) ?? 1;
  const nRows = piece.bytes.byteLength / SOURCE_DTYPE_BYTES[piece.dtype] / nPerRow;
  const float = type === GGMLType.F16 || type === GGMLType.BF16;
  // A 3-D expert tensor's imatrix holds one vector per expert: a piece of one expert's rows
  // takes its slice; a whole tensor takes all, and the pool slices it per expert.
  let imatrix = opts.imatrix;
  if (imatrix && piece.expert !== undefined) imatrix = imatrix.subarray(piece.expert * nPerRow, (piece.expert + 1) * nPerRow);
  return opts.pool.encode({
    type,
    src: piece.bytes,
    dtype: piece.dtype,
    nRows,
    nPerRow,
    // F16/BF16 outputs convert the source values; F32 and quantized ones read the intermediate's.
    via: float ? undefined : (opts.via as ViaType),
    floats: "converter",
    imatrix: float || type === GGMLType.F32 ? undefined : imatrix,
  });
}

interface InFlight {
  piece: Piece;
  /** Per output, the piece's parts in row order. */
  parts: Promise<Uint8Array>[][];
  elements: number;
}

/** Reads, encodes and writes every planned tensor to every output, in order. */
export async function streamTensors(o: StreamTensorsOptions): Promise<void> {
  const { plans, outputs, pool } = o;
  if (outputs.length === 0) return;
  const slabs = new SlabPool(PIECE_BYTES);
  const window: InFlight[] = [];
  let inFlightElements = 0;
  let bytesRead = 0;

  const writeOldest = async (): Promise<void> => {
    const w = window.shift()!;
    const name = plans[w.piece.index]!.name;
    for (let k = 0; k < outputs.length; k++) {
      for (const part of w.parts[k]!) await outputs[k]!.writer.writeTensorPart(name, await part);
    }
    slabs.release(w.piece.bytes);
    inFlightElements -= w.elements;
    bytesRead += w.piece.sourceBytes;
    if (w.piece.last) o.onTensor?.(w.piece.index, bytesRead);
  };

  for await (const piece of readAhead(pieces(plans, o.sources, slabs))) {
    if (o.signal?.aborted) throw new OutputError("conversion interrupted; nothing was written to the output directory");
    const plan = plans[piece.index]!;
    const imatrix = imatrixForTensor(o.imatrix, plan.name, [...plan.shape].reverse());
    const parts = outputs.map((out) =>
      encode({ plan, piece, type: out.types[piece.index]!, via: o.via[piece.index]!, imatrix, pool }),
    );
    // Parts are awaited only when their piece is written; until then a failure must not count
    // as an unhandled rejection (writeOldest still sees it).
    for (const p of parts) Promise.all(p).catch(() => undefined);
    const elements = piece.bytes.byteLength / SOURCE_DTYPE_BYTES[piece.dtype];
    window.push({ piece, parts, elements });
    inFlightElements += elements;
    while (window.length > 0 && (inFlightElements > IN_FLIGHT_ELEMENTS || window.length > IN_FLIGHT_PIECES)) await writeOldest();
  }
  while (window.length > 0) await writeOldest();
}
