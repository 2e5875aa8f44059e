// The seam to ggml's quantization kernels: libggml-base, which node-llama-cpp ships, loaded with
// koffi. Everything that quantizes or dequantizes GGUF blocks (the pipeline's converter, the
// runtime's MLX transcoder) calls the typed wrappers below; the pipeline's quantize/native.ts
// adds libllama (llama_model_quantize, the engine) on top. Libraries load lazily, on the first
// call.
//
// Signatures follow ggml/include/ggml.h and ggml-quants.h at the llama.cpp commit
// node-llama-cpp 3.21.1 ships. GGML_ASSERT failures abort the whole process, so every
// wrapper checks its inputs before it crosses into C.

import koffi, { type LibraryHandle } from "koffi";
import { ConversionError, InputError, UsageError } from "@llama-pajamas/artifact";
import { findGGMLTypeTraits, ggmlTypeName } from "./formats/ggml-type-traits.js";
import type { GGMLType } from "./formats/gguf-types.js";
import { bf16ToF32, f16ToF32 } from "./formats/float.js";
import { libraryPathsIn, locateNativeLibraries, type NativeLibraryPaths } from "./native-paths.js";

export { locateGpuLibraries, locateNativeLibraries, NATIVE_DIR_ENV, type NativeLibraryPaths } from "./native-paths.js";

// ---------------------------------------------------------------------------------------------
// libggml-base

interface GgmlBindings {
  ggml_quantize_chunk: (type: number, src: Float32Array, dst: Uint8Array, start: number, nrows: number, nPerRow: number, imatrix: Float32Array | null) => number;
  ggml_quantize_init: (type: number) => void;
  ggml_quantize_requires_imatrix: (type: number) => boolean;
  ggml_row_size: (type: number, ne: number) => number;
  ggml_blck_size: (type: number) => number;
  ggml_type_size: (type: number) => number;
  ggml_is_quantized: (type: number) => boolean;
  ggml_validate_row_data: (type: number, data: Uint8Array, nbytes: number) => boolean;
  ggml_fp32_to_fp16_row: (src: Float32Array, dst: Uint16Array, n: number) => void;
  ggml_fp32_to_bf16_row: (src: Float32Array, dst: Uint16Array, n: number) => void;
  ggml_fp32_to_bf16_row_ref: (src: Float32Array, dst: Uint16Array, n: number) => void;
  /** dequantize_row_<type>(const block *x, float *y, int64_t k), looked up per type on first use. */
  dequantize: Map<number, (src: Uint8Array, dst: Float32Array, k: number) => void>;
}

let paths: NativeLibraryPaths | undefined;
let ggml: GgmlBindings | undefined;
let ggmlLib: LibraryHandle | undefined;

/** koffi.load with a clear error (loading one library twice returns the same handle). */
export function loadLibrary(path: string): LibraryHandle {
  try {
    return koffi.load(path);
  } catch (e) {
    throw new InputError(`cannot load the llama.cpp library ${path}: ${(e as Error).message}`, { path, cause: e });
  }
}

function ggmlBindings(): GgmlBindings {
  if (ggml) return ggml;
  paths ??= locateNativeLibraries();
  const lib = loadLibrary(paths.ggmlBase);
  // ggml_type and bool are passed as C int / bool; int64_t counts fit JS numbers.
  ggml = {
    ggml_quantize_chunk: lib.func(
      "size_t ggml_quantize_chunk(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)",
    ),
    ggml_quantize_init: lib.func("void ggml_quantize_init(int type)"),
    ggml_quantize_requires_imatrix: lib.func("bool ggml_quantize_requires_imatrix(int type)"),
    ggml_row_size: lib.func("size_t ggml_row_size(int type, int64_t ne)"),
    ggml_blck_size: lib.func("int64_t ggml_blck_size(int type)"),
    ggml_type_size: lib.func("size_t ggml_type_size(int type)"),
    ggml_is_quantized: lib.func("bool ggml_is_quantized(int type)"),
    ggml_validate_row_data: lib.func("bool ggml_validate_row_data(int type, const void *data, size_t nbytes)"),
    ggml_fp32_to_fp16_row: lib.func("void ggml_fp32_to_fp16_row(const float *x, void *y, int64_t n)"),
    ggml_fp32_to_bf16_row: lib.func("void ggml_fp32_to_bf16_row(const float *x, void *y, int64_t n)"),
    ggml_fp32_to_bf16_row_ref: lib.func("void ggml_fp32_to_bf16_row_ref(const float *x, void *y, int64_t n)"),
    dequantize: new Map(),
  } as GgmlBindings;
  ggmlLib = lib;
  return ggml;
}

/** Where the libraries were found (loads nothing). */
export function nativeLibraryPaths(): NativeLibraryPaths {
  paths ??= locateNativeLibraries();
  return paths;
}

/**
 * Makes the libraries in `dir` the ones this process uses (a GPU build of llama.cpp, say), when
 * none is loaded yet. Returns false when another folder's are already in use: one process
 * holds one llama.cpp.
 */
export function useNativeLibraryDir(dir: string): boolean {
  if (paths !== undefined) return paths.dir === dir;
  const found = libraryPathsIn(dir);
  if (!found) throw new InputError(`${dir} holds no ggml-base library`, { path: dir });
  paths = found;
  return true;
}

/**
 * Types ggml_quantize_chunk can write (its switch in ggml.c); any other type reaches
 * `assert(false)` and then a GGML_ASSERT that aborts the process.
 */
const CHUNK_TYPES = new Set<number>([0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 29, 30, 34, 35, 39, 40, 41, 42]);

function knownType(type: number): void {
  if (!CHUNK_TYPES.has(type)) {
    throw new UsageError(`ggml cannot quantize to ${ggmlTypeName(type)} (type ${type})`);
  }
}

/** ggml_blck_size: elements per block. */
export function ggmlBlockSize(type: GGMLType | number): number {
  if (!findGGMLTypeTraits(type)) throw new UsageError(`unknown ggml type ${type}`);
  return Number(ggmlBindings().ggml_blck_size(type));
}

/** ggml_type_size: bytes per block. */
export function ggmlTypeSize(type: GGMLType | number): number {
  if (!findGGMLTypeTraits(type)) throw new UsageError(`unknown ggml type ${type}`);
  return Number(ggmlBindings().ggml_type_size(type));
}

/** ggml_row_size: bytes of a row of `ne` elements. */
export function ggmlRowSize(type: GGMLType | number, ne: number): number {
  if (!findGGMLTypeTraits(type)) throw new UsageError(`unknown ggml type ${type}`);
  return Number(ggmlBindings().ggml_row_size(type, ne));
}

/** ggml_is_quantized. */
export function ggmlIsQuantized(type: GGMLType | number): boolean {
  if (!findGGMLTypeTraits(type)) throw new UsageError(`unknown ggml type ${type}`);
  return ggmlBindings().ggml_is_quantized(type);
}

/** ggml_quantize_requires_imatrix: IQ2_XXS, IQ2_XS and IQ1_S cannot be made without one. */
export function quantizeRequiresImatrix(type: GGMLType | number): boolean {
  knownType(type);
  return ggmlBindings().ggml_quantize_requires_imatrix(type);
}

/** ggml_quantize_init: builds the lookup tables of a type once (ggml_quantize_chunk also does). */
export function quantizeInit(type: GGMLType | number): void {
  knownType(type);
  ggmlBindings().ggml_quantize_init(type);
}

/** ggml_validate_row_data: false when quantized data holds NaN/inf scales or bad codes. */
export function validateRowData(type: GGMLType | number, data: Uint8Array): boolean {
  knownType(type);
  return ggmlBindings().ggml_validate_row_data(type, data, data.byteLength);
}

/**
 * ggml_quantize_chunk over whole rows: `src` holds nRows * nPerRow floats; `imatrix`, when
 * given, holds nPerRow importance weights shared by every row (llama-quant.cpp passes one
 * expert's slice per call). Returns nRows * ggml_row_size(type, nPerRow) bytes, checked with
 * ggml_validate_row_data as llama_model_quantize checks them.
 */
export function quantizeRows(
  type: GGMLType | number,
  src: Float32Array,
  nRows: number,
  nPerRow: number,
  imatrix?: Float32Array,
): Uint8Array {
  knownType(type);
  const b = ggmlBindings();
  if (!Number.isSafeInteger(nRows) || !Number.isSafeInteger(nPerRow) || nRows < 0 || nPerRow <= 0) {
    throw new UsageError(`bad row count ${nRows} x ${nPerRow} for ${ggmlTypeName(type)}`);
  }
  if (src.length !== nRows * nPerRow) {
    throw new UsageError(`quantizeRows got ${src.length} floats for ${nRows} rows of ${nPerRow}`);
  }
  const blck = Number(b.ggml_blck_size(type));
  if (nPerRow % blck !== 0) {
    throw new UsageError(
      `row length ${nPerRow} is not a multiple of the ${ggmlTypeName(type)} block size ${blck}; ` +
        `llama.cpp picks a fallback type for such tensors (see recipes.ts)`,
    );
  }
  if (imatrix !== undefined && imatrix.length !== nPerRow) {
    throw new UsageError(`importance vector has ${imatrix.length} values for rows of ${nPerRow}`);
  }
  if (imatrix === undefined && b.ggml_quantize_requires_imatrix(type)) {
    throw new UsageError(`${ggmlTypeName(type)} needs an importance matrix (pass --imatrix)`);
  }
  const dst = new Uint8Array(nRows * Number(b.ggml_row_size(type, nPerRow)));
  if (nRows === 0) return dst;
  const written = Number(b.ggml_quantize_chunk(type, src, dst, 0, nRows, nPerRow, imatrix ?? null));
  if (written !== dst.byteLength) {
    throw new ConversionError(`ggml_quantize_chunk wrote ${written} bytes, expected ${dst.byteLength}`);
  }
  // llama_tensor_quantize_impl validates every chunk and fails the run the same way
  if (!b.ggml_validate_row_data(type, dst, dst.byteLength)) {
    throw new ConversionError(
      `quantized data validation failed (${ggmlTypeName(type)}, ${nRows} rows of ${nPerRow}): ` +
        `the input holds NaN or infinite values`,
    );
  }
  return dst;
}

/** ggml_fp32_to_fp16_row: round to nearest even, like numpy astype(float16). */
export function fp32ToFp16Row(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  ggmlBindings().ggml_fp32_to_fp16_row(src, out, src.length);
  return out;
}

/**
 * F32 -> BF16 as ggml_quantize_chunk writes it (ggml_fp32_to_bf16_row_ref: round to nearest
 * even, NaN made quiet), which is also gguf-py's rounding. `vectorized` calls
 * ggml_fp32_to_bf16_row instead, which flushes subnormals to zero where ggml-base was built
 * with AVX512-BF16 (the test suite checks whether this build does).
 */
export function fp32ToBf16Row(src: Float32Array, opts?: { vectorized?: boolean }): Uint16Array {
  const out = new Uint16Array(src.length);
  const b = ggmlBindings();
  (opts?.vectorized ? b.ggml_fp32_to_bf16_row : b.ggml_fp32_to_bf16_row_ref)(src, out, src.length);
  return out;
}


const GGML_F32 = 0;
const GGML_F16 = 1;
const GGML_BF16 = 30;

/** Loads libggml-base now (libllama needs its symbols resolved first). */
export function ensureGgmlLoaded(): void {
  ggmlBindings();
}

/**
 * ggml-quants.h `dequantize_row_*`: the values llama.cpp's CPU backend reads back from `src`,
 * which holds nRows rows of nPerRow elements of `type`. F32/F16/BF16 are widened exactly.
 */
export function dequantizeRows(type: GGMLType | number, src: Uint8Array, nRows: number, nPerRow: number): Float32Array {
  const traits = findGGMLTypeTraits(type);
  if (!traits) throw new UsageError(`unknown ggml type ${type}`);
  const b = ggmlBindings();
  const rowBytes = Number(b.ggml_row_size(type, nPerRow));
  if (nPerRow % traits.blockSize !== 0) {
    throw new UsageError(`row length ${nPerRow} is not a multiple of the ${ggmlTypeName(type)} block size ${traits.blockSize}`);
  }
  if (src.byteLength !== nRows * rowBytes) {
    throw new UsageError(`dequantizeRows got ${src.byteLength} bytes for ${nRows} rows of ${nPerRow} ${ggmlTypeName(type)} (${nRows * rowBytes} expected)`);
  }
  const out = new Float32Array(nRows * nPerRow);
  if (out.length === 0) return out;
  // Float types are widened here (aligned copies: `src` may sit at any byte offset).
  const copy = () => src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength);
  if (type === GGML_F32) {
    out.set(new Float32Array(copy()));
    return out;
  }
  if (type === GGML_F16 || type === GGML_BF16) return (type === GGML_F16 ? f16ToF32 : bf16ToF32)(new Uint16Array(copy()), out);
  let fn = b.dequantize.get(type);
  if (!fn) {
    const name = `dequantize_row_${ggmlTypeName(type).toLowerCase().replace(/_k$/, "_K")}`;
    try {
      fn = ggmlLib!.func(`void ${name}(const void *x, float *y, int64_t k)`) as (src: Uint8Array, dst: Float32Array, k: number) => void;
    } catch (e) {
      throw new UsageError(`libggml-base has no ${name}; cannot dequantize ${ggmlTypeName(type)}`, { cause: e });
    }
    b.dequantize.set(type, fn);
  }
  fn(src, out, out.length);
  return out;
}
