// One chunk of rows from source bytes to output bytes: what every QuantizePool worker runs (and
// the pool itself when it works inline). Widening the checkpoint's F16/BF16 values, rounding
// them through the intermediate type and converting or quantizing them all happen here, so the
// pipeline's main thread only reads and writes.

import { UsageError } from "@llama-pajamas/artifact";
import { bf16ToF32, bf16ToF32ThroughBF16, bf16ToF32ThroughF16, f16ToF32, f32ToBF16, f32ToF16, roundThroughBF16, roundThroughF16 } from "@llama-pajamas/gguf/formats/float.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { inputBufferFor, quantizeValues } from "./kernels.js";

/** Element types the source bytes may hold (little-endian, row-major). */
export type SourceDtype = "F32" | "F16" | "BF16";

/** Float types a tensor can pass through before it is quantized. */
export type ViaType = GGMLType.F32 | GGMLType.F16 | GGMLType.BF16;

export const SOURCE_DTYPE_BYTES: Readonly<Record<SourceDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

export interface RowsRequest {
  /** Output type. */
  type: GGMLType | number;
  /** nRows * nPerRow values of `dtype`. */
  src: Uint8Array;
  dtype: SourceDtype;
  nRows: number;
  nPerRow: number;
  /** Round the values through this float type first, as reading a GGUF of that type back would. */
  via?: ViaType;
  /**
   * "converter" writes F16 and BF16 outputs as llama.cpp's converter does (numpy astype,
   * gguf-py BF16), which keeps NaN payloads; "ggml" (default) uses ggml_quantize_chunk (or,
   * for Q4_K/Q5_K/Q6_K, its byte-identical port: kernels.ts) for every type but F32.
   */
  floats?: "converter" | "ggml";
  /** nPerRow importance values shared by all rows. */
  imatrix?: Float32Array;
}

/** An aligned typed view of `src` (copied when its offset does not allow one). */
function view<T>(src: Uint8Array, bytesPer: number, make: (b: ArrayBufferLike, offset: number, length: number) => T): T {
  const n = src.byteLength / bytesPer;
  if (src.byteOffset % bytesPer === 0) return make(src.buffer, src.byteOffset, n);
  const copy = src.slice();
  return make(copy.buffer, 0, n);
}

/** The values of `src` as F32, written into `out`. */
export function widen(src: Uint8Array, dtype: SourceDtype, out: Float32Array): Float32Array {
  if (dtype === "F32") {
    out.set(view(src, 4, (b, o, n) => new Float32Array(b, o, n)));
  } else {
    const halves = view(src, 2, (b, o, n) => new Uint16Array(b, o, n));
    if (dtype === "BF16") bf16ToF32(halves, out);
    else f16ToF32(halves, out);
  }
  return out;
}

/** The values of `src` as F32, rounded through the intermediate type `via`, written into `out`. */
function widenThrough(src: Uint8Array, dtype: SourceDtype, via: ViaType | undefined, out: Float32Array): Float32Array {
  if (via !== undefined && via !== GGMLType.F32 && via !== GGMLType.F16 && via !== GGMLType.BF16) {
    throw new UsageError(`cannot round through type ${String(via)}`);
  }
  // A BF16 checkpoint through an F16 or BF16 intermediate: one pass
  if (dtype === "BF16" && (via === GGMLType.F16 || via === GGMLType.BF16)) {
    const halves = view(src, 2, (b, o, n) => new Uint16Array(b, o, n));
    return via === GGMLType.F16 ? bf16ToF32ThroughF16(halves, out) : bf16ToF32ThroughBF16(halves, out);
  }
  widen(src, dtype, out);
  if (via === GGMLType.F16) roundThroughF16(out);
  else if (via === GGMLType.BF16) roundThroughBF16(out);
  return out;
}

function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * One chunk's output bytes, in a buffer of their own (so a worker can transfer it). `scratch`,
 * when it holds at least nRows * nPerRow values, takes the widened values instead of a new array.
 */
export function encodeRows(req: RowsRequest, scratch?: Float32Array): Uint8Array {
  const { type, dtype, nRows, nPerRow } = req;
  const itemBytes = SOURCE_DTYPE_BYTES[dtype];
  if (itemBytes === undefined) throw new UsageError(`unsupported source dtype ${String(dtype)}; expected F32, F16 or BF16`);
  if (!Number.isSafeInteger(nRows) || !Number.isSafeInteger(nPerRow) || nRows < 0 || nPerRow <= 0) {
    throw new UsageError(`bad row count ${nRows} x ${nPerRow}`);
  }
  const n = nRows * nPerRow;
  if (req.src.byteLength !== n * itemBytes) {
    throw new UsageError(`encodeRows got ${req.src.byteLength} bytes of ${dtype} for ${nRows} rows of ${nPerRow}`);
  }
  const converter = req.floats === "converter";
  const f32Out = converter && type === GGMLType.F32;
  // An F32 output is the values themselves, so they are widened straight into it; a type the
  // WebAssembly port quantizes is widened straight into the port's memory.
  const portInput = f32Out || converter && (type === GGMLType.F16 || type === GGMLType.BF16) ? undefined : inputBufferFor(type, nRows, nPerRow, req.imatrix);
  const values = widenThrough(req.src, dtype, req.via, portInput ?? (!f32Out && scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float32Array(n)));
  if (f32Out) return asBytes(values);
  if (converter && type === GGMLType.F16) return asBytes(f32ToF16(values));
  if (converter && type === GGMLType.BF16) return asBytes(f32ToBF16(values));
  return quantizeValues(type, values, nRows, nPerRow, req.imatrix); // a new buffer: values is scratch
}
