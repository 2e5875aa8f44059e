// The one seam to llama.cpp's native code. This module alone loads the shared libraries that
// node-llama-cpp ships (libggml-base for the quantization kernels, libllama for
// llama_model_quantize) with koffi and declares every C signature we call; the rest of the
// package calls the typed wrappers below. Libraries load lazily, on the first call.
//
// Signatures follow ggml/include/ggml.h and include/llama.h at the llama.cpp commit
// node-llama-cpp 3.21.1 ships. GGML_ASSERT failures abort the whole process, so every
// wrapper checks its inputs before it crosses into C.

import koffi, { type LibraryHandle, type TypeObject } from "koffi";
import { ConversionError, InputError, UsageError } from "@llama-pajamas/artifact";
import { findGGMLTypeTraits, ggmlTypeName } from "../formats/ggml-type-traits.js";
import type { GGMLType, LlamaFtype } from "../formats/gguf-types.js";
import { locateNativeLibraries, type NativeLibraryPaths } from "./native-paths.js";

export { locateNativeLibraries, NATIVE_DIR_ENV, type NativeLibraryPaths } from "./native-paths.js";

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
}

let paths: NativeLibraryPaths | undefined;
let ggml: GgmlBindings | undefined;

function loadLibrary(path: string): LibraryHandle {
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
  } as GgmlBindings;
  return ggml;
}

/** Where the libraries were found (loads nothing). */
export function nativeLibraryPaths(): NativeLibraryPaths {
  paths ??= locateNativeLibraries();
  return paths;
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

// ---------------------------------------------------------------------------------------------
// libllama

/** include/llama.h `struct llama_model_quantize_params` at this commit. */
const QUANTIZE_PARAMS_FIELDS = {
  nthread: "int32_t",
  ftype: "int", // enum llama_ftype
  output_tensor_type: "int", // enum ggml_type
  token_embedding_type: "int",
  allow_requantize: "bool",
  quantize_output_tensor: "bool",
  only_copy: "bool",
  pure: "bool",
  keep_split: "bool",
  dry_run: "bool",
  imatrix: "void *", // const struct llama_model_imatrix_data *, {NULL} terminated
  kv_overrides: "void *", // const struct llama_model_kv_override *, key[0] == 0 terminated
  tt_overrides: "void *", // const struct llama_model_tensor_override *
  prune_layers: "void *", // const int32_t *, -1 terminated
  max_buf_size: "size_t",
} as const;

interface QuantizeParams {
  nthread: number;
  ftype: number;
  output_tensor_type: number;
  token_embedding_type: number;
  allow_requantize: boolean;
  quantize_output_tensor: boolean;
  only_copy: boolean;
  pure: boolean;
  keep_split: boolean;
  dry_run: boolean;
  imatrix: bigint | null;
  kv_overrides: bigint | null;
  tt_overrides: bigint | null;
  prune_layers: bigint | null;
  max_buf_size: number | bigint;
}

/** struct llama_model_imatrix_data { const char *name; const float *data; size_t size; } */
const IMATRIX_ENTRY_BYTES = 24;
/** struct llama_model_kv_override { int tag; char key[128]; union { i64; f64; bool; char[128] }; } */
const KV_OVERRIDE_BYTES = 264;
const KV_OVERRIDE_VALUE_OFFSET = 136;
const GGML_TYPE_COUNT = 43;

interface LlamaBindings {
  llama_backend_init: () => void;
  llama_model_quantize_default_params: () => QuantizeParams;
  llama_model_quantize: KoffiAsync<(input: string, output: string, params: QuantizeParams) => number>;
  llama_log_get: (cb: [unknown], ud: [unknown]) => void;
  llama_log_set: (cb: unknown, ud: unknown) => void;
  logCallbackType: TypeObject;
  paramsType: TypeObject;
}

type KoffiAsync<F extends (...args: never[]) => unknown> = F & {
  async: (...args: [...Parameters<F>, (err: unknown, result: ReturnType<F>) => void]) => void;
};

let llama: LlamaBindings | undefined;

function llamaBindings(): LlamaBindings {
  if (llama) return llama;
  ggmlBindings();
  const p = paths!;
  if (!p.llama) throw new InputError(`no libllama next to ${p.ggmlBase}`, { path: p.dir });
  if (p.ggml) loadLibrary(p.ggml);
  const lib = loadLibrary(p.llama);
  // anonymous types: a second copy of this module in the process must not clash on names
  const params = koffi.struct(QUANTIZE_PARAMS_FIELDS);
  if (koffi.sizeof(params) !== 64) throw new InputError(`unexpected llama_model_quantize_params size ${koffi.sizeof(params)}`);
  // ggml_log_callback. Named (koffi.register rejects pointers to anonymous prototypes), and
  // reused when another copy of this module already declared it in this process.
  let logCallbackType: TypeObject;
  try {
    logCallbackType = koffi.type("llama_pajamas_ggml_log_callback");
  } catch {
    logCallbackType = koffi.proto("void llama_pajamas_ggml_log_callback(int level, const char *text, void *user_data)");
  }
  const b: LlamaBindings = {
    llama_backend_init: lib.func("void llama_backend_init(void)"),
    llama_model_quantize_default_params: lib.func("llama_model_quantize_default_params", params, []),
    llama_model_quantize: lib.func("llama_model_quantize", "uint32_t", ["const char *", "const char *", koffi.pointer(params)]),
    llama_log_get: lib.func("void llama_log_get(_Out_ void **cb, _Out_ void **ud)"),
    llama_log_set: lib.func("void llama_log_set(void *cb, void *ud)"),
    logCallbackType,
    paramsType: params,
  } as LlamaBindings;
  // A layout check: the defaults from llama-quant.cpp llama_model_quantize_default_params.
  const d = b.llama_model_quantize_default_params();
  if (d.ftype !== 7 || d.output_tensor_type !== GGML_TYPE_COUNT || d.quantize_output_tensor !== true ||
      d.pure !== false || d.imatrix !== null || BigInt(d.max_buf_size) !== 8n << 30n) {
    throw new InputError(
      `libllama at ${p.llama} does not have the llama_model_quantize_params layout this package was written ` +
        `for (defaults read: ${JSON.stringify(d, (_k, v) => (typeof v === "bigint" ? String(v) : v))})`,
    );
  }
  b.llama_backend_init();
  llama = b;
  return b;
}

export type KVOverrideValue = string | number | bigint | boolean | { float: number };

export interface LlamaModelQuantizeOptions {
  input: string;
  output: string;
  ftype: LlamaFtype | number;
  /** Threads for llama.cpp; <= 0 or undefined means all hardware threads. */
  nThread?: number;
  /**
   * Importance vectors by tensor name, as llama-quantize derives them (imatrix.ts
   * readImatrix). Passed through params.imatrix as a {name, data, size} array.
   */
  imatrix?: ReadonlyMap<string, Float32Array>;
  /** Metadata written as llama-quantize does: quantize.imatrix.file / dataset / counts. */
  kvOverrides?: Readonly<Record<string, KVOverrideValue>>;
  pure?: boolean;
  allowRequantize?: boolean;
  quantizeOutputTensor?: boolean;
  outputTensorType?: GGMLType | number;
  tokenEmbeddingType?: GGMLType | number;
  dryRun?: boolean;
  /** Receives llama.cpp's log lines (level 1 debug .. 4 error, 5 continuation). */
  onLog?: (level: number, text: string) => void;
}

export interface LlamaModelQuantizeResult {
  /** Everything llama.cpp logged during the call. */
  log: string;
}

/** Native allocations that live for one call; freed together. */
class NativeArena {
  private readonly ptrs: bigint[] = [];
  bytes(n: number): { ptr: bigint; view: DataView; u8: Uint8Array } {
    const ptr = koffi.alloc("uint8_t", Math.max(1, n)) as bigint;
    this.ptrs.push(ptr);
    const ab = koffi.view(ptr, Math.max(1, n));
    return { ptr, view: new DataView(ab), u8: new Uint8Array(ab) };
  }
  cString(s: string): bigint {
    const enc = Buffer.from(s + "\0", "utf8");
    const m = this.bytes(enc.length);
    m.u8.set(enc);
    return m.ptr;
  }
  free(): void {
    for (const p of this.ptrs) koffi.free(p);
    this.ptrs.length = 0;
  }
}

function encodeImatrix(arena: NativeArena, imatrix: ReadonlyMap<string, Float32Array>): bigint | null {
  if (imatrix.size === 0) return null; // llama-quantize passes no imatrix when it is empty
  const table = arena.bytes((imatrix.size + 1) * IMATRIX_ENTRY_BYTES);
  let i = 0;
  for (const [name, values] of imatrix) {
    const data = arena.bytes(values.byteLength);
    data.u8.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    table.view.setBigUint64(i * IMATRIX_ENTRY_BYTES, arena.cString(name), true);
    table.view.setBigUint64(i * IMATRIX_ENTRY_BYTES + 8, data.ptr, true);
    table.view.setBigUint64(i * IMATRIX_ENTRY_BYTES + 16, BigInt(values.length), true);
    i++;
  }
  return table.ptr; // the last entry stays zeroed: {NULL, NULL, 0}
}

function encodeKVOverrides(arena: NativeArena, kv: Readonly<Record<string, KVOverrideValue>>): bigint | null {
  const entries = Object.entries(kv);
  if (entries.length === 0) return null;
  const t = arena.bytes((entries.length + 1) * KV_OVERRIDE_BYTES);
  entries.forEach(([key, value], i) => {
    const base = i * KV_OVERRIDE_BYTES;
    const keyBytes = Buffer.from(key, "utf8");
    if (keyBytes.length === 0 || keyBytes.length > 127) throw new UsageError(`KV override key "${key}" must be 1..127 bytes`);
    t.u8.set(keyBytes, base + 4);
    const at = base + KV_OVERRIDE_VALUE_OFFSET;
    // enum llama_model_kv_override_type: INT 0, FLOAT 1, BOOL 2, STR 3
    if (typeof value === "string") {
      t.view.setInt32(base, 3, true);
      t.u8.set(Buffer.from(value, "utf8").subarray(0, 127), at); // strncpy(..., 127) as llama-quantize
    } else if (typeof value === "boolean") {
      t.view.setInt32(base, 2, true);
      t.view.setUint8(at, value ? 1 : 0);
    } else if (typeof value === "object") {
      t.view.setInt32(base, 1, true);
      t.view.setFloat64(at, value.float, true);
    } else {
      t.view.setInt32(base, 0, true);
      t.view.setBigInt64(at, BigInt(value), true);
    }
  });
  return t.ptr;
}

let quantizeQueue: Promise<unknown> = Promise.resolve();

/**
 * llama_model_quantize on a GGUF file, the reference our own path must match byte for byte.
 * Runs on a libuv thread (koffi async) so llama.cpp's log lines, routed to `onLog` through
 * llama_log_set, reach JS while it works; the previous log callback is restored afterwards.
 * Calls are serialized because the log callback is process-wide.
 */
export function llamaModelQuantize(opts: LlamaModelQuantizeOptions): Promise<LlamaModelQuantizeResult> {
  const run = quantizeQueue.then(() => quantizeOnce(opts));
  quantizeQueue = run.catch(() => undefined);
  return run;
}

async function quantizeOnce(opts: LlamaModelQuantizeOptions): Promise<LlamaModelQuantizeResult> {
  const b = llamaBindings();
  const arena = new NativeArena();
  const lines: string[] = [];
  const cb = koffi.register((level: number, text: string | null) => {
    const t = text ?? "";
    lines.push(t);
    opts.onLog?.(level, t);
  }, koffi.pointer(b.logCallbackType));
  const prevCb: [unknown] = [null];
  const prevUd: [unknown] = [null];
  b.llama_log_get(prevCb, prevUd);
  try {
    const params = b.llama_model_quantize_default_params();
    params.nthread = opts.nThread ?? 0;
    params.ftype = opts.ftype;
    if (opts.outputTensorType !== undefined) params.output_tensor_type = opts.outputTensorType;
    if (opts.tokenEmbeddingType !== undefined) params.token_embedding_type = opts.tokenEmbeddingType;
    if (opts.allowRequantize !== undefined) params.allow_requantize = opts.allowRequantize;
    if (opts.quantizeOutputTensor !== undefined) params.quantize_output_tensor = opts.quantizeOutputTensor;
    if (opts.pure !== undefined) params.pure = opts.pure;
    if (opts.dryRun !== undefined) params.dry_run = opts.dryRun;
    params.imatrix = opts.imatrix ? encodeImatrix(arena, opts.imatrix) : null;
    params.kv_overrides = opts.kvOverrides ? encodeKVOverrides(arena, opts.kvOverrides) : null;
    b.llama_log_set(cb, null);
    const rc = await new Promise<number>((resolve, reject) =>
      b.llama_model_quantize.async(opts.input, opts.output, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const log = lines.join("");
    if (rc !== 0) {
      const why = log.split("\n").filter((l) => /error|failed/i.test(l)).slice(-3).join(" | ").trim();
      throw new ConversionError(
        `llama_model_quantize(${opts.input} -> ${opts.output}, ftype ${opts.ftype}) failed: ${why || "see log"}`,
      );
    }
    return { log };
  } finally {
    b.llama_log_set(prevCb[0], prevUd[0]);
    koffi.unregister(cb);
    arena.free();
  }
}

// ---------------------------------------------------------------------------------------------
// llama-ext.h: llama.cpp's own type choice, for differential tests of recipes.ts

/** llama-ext.h `struct llama_quant_model_desc`. */
export interface ReferenceModelDesc {
  arch: string;
  nEmbd: number;
  nFf: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nExpert: number;
  nEmbdHeadK: number;
  nEmbdHeadV: number;
}

// llama-ext.h is C++ (a staging API), so its symbols are Itanium-mangled: Linux and macOS only.
const MANGLED = {
  modelFromMetadata: "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc",
  quantInit: "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params",
  quantFree: "_Z16llama_quant_freeP19quantize_state_impl",
  allows: "_Z38llama_quant_tensor_allows_quantizationPK19quantize_state_implPK11ggml_tensor",
  computeTypes: "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem",
};

type Fn = (...args: unknown[]) => unknown;
let reference: Record<"modelFromMetadata" | "modelFree" | "quantInit" | "quantFree" | "allows" | "computeTypes" | "ggmlInit" | "ggmlFree" | "tensorOverhead" | "newTensor4d" | "setName", Fn> & { paramsType: TypeObject } | undefined;

function referenceBindings(): NonNullable<typeof reference> {
  if (reference) return reference;
  llamaBindings();
  const llamaLib = loadLibrary(paths!.llama!);
  const ggmlLib = loadLibrary(paths!.ggmlBase);
  const fn = (lib: LibraryHandle, name: string, ret: string, args: (string | TypeObject | ReturnType<typeof koffi.out>)[]): Fn => {
    try {
      return lib.func(name, ret, args);
    } catch (e) {
      throw new InputError(`libllama does not export ${name} (llama-ext.h); cannot compute reference types`, { cause: e });
    }
  };
  const desc = koffi.struct({
    architecture: "const char *", n_embd: "uint32_t", n_ff: "uint32_t", n_layer: "uint32_t", n_head: "uint32_t",
    n_head_kv: "uint32_t", n_expert: "uint32_t", n_embd_head_k: "uint32_t", n_embd_head_v: "uint32_t",
  });
  const initParams = koffi.struct({ mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });
  reference = {
    modelFromMetadata: fn(llamaLib, MANGLED.modelFromMetadata, "void *", [koffi.pointer(desc)]),
    modelFree: fn(llamaLib, "llama_model_free", "void", ["void *"]),
    quantInit: fn(llamaLib, MANGLED.quantInit, "void *", ["void *", "void *"]),
    quantFree: fn(llamaLib, MANGLED.quantFree, "void", ["void *"]),
    allows: fn(llamaLib, MANGLED.allows, "bool", ["void *", "void *"]),
    computeTypes: fn(llamaLib, MANGLED.computeTypes, "void", ["void *", "int", "void **", koffi.out(koffi.pointer("int")), "size_t"]),
    ggmlInit: fn(ggmlLib, "ggml_init", "void *", [initParams]),
    ggmlFree: fn(ggmlLib, "ggml_free", "void", ["void *"]),
    tensorOverhead: fn(ggmlLib, "ggml_tensor_overhead", "size_t", []),
    newTensor4d: fn(ggmlLib, "ggml_new_tensor_4d", "void *", ["void *", "int", "int64_t", "int64_t", "int64_t", "int64_t"]),
    setName: fn(ggmlLib, "ggml_set_name", "void *", ["void *", "const char *"]),
    paramsType: llama!.paramsType,
  };
  return reference;
}

/**
 * llama_quant_compute_types (what test-quant-type-selection.cpp checks) on a mock model:
 * the types libllama itself picks for `tensors`, visited in the given order, once per ftype.
 * Like upstream's helper it runs with has_imatrix = false and default params.
 * Returns, per ftype, one type per tensor, or null where the tensor is not quantized.
 */
export function llamaReferenceTensorTypes(opts: {
  model: ReferenceModelDesc;
  tensors: readonly { name: string; ne: readonly number[] }[];
  ftypes: readonly number[];
}): Map<number, (number | null)[]> {
  const { modelFromMetadata, modelFree, quantInit, quantFree, allows, computeTypes, ggmlInit, ggmlFree, tensorOverhead, newTensor4d, setName, paramsType } =
    referenceBindings();
  const m = opts.model;
  const model = modelFromMetadata({
    architecture: m.arch, n_embd: m.nEmbd, n_ff: m.nFf, n_layer: m.nLayer, n_head: m.nHead,
    n_head_kv: m.nHeadKv, n_expert: m.nExpert, n_embd_head_k: m.nEmbdHeadK, n_embd_head_v: m.nEmbdHeadV,
  }) as bigint | null;
  if (!model) throw new InputError(`llama_quant_model_from_metadata failed for arch ${m.arch}`);
  const paramsPtr = koffi.alloc(paramsType, 1) as bigint; // must outlive qs, which keeps the pointer
  let ctx: bigint | null = null;
  let qs: bigint | null = null;
  try {
    koffi.encode(paramsPtr, paramsType, llama!.llama_model_quantize_default_params());
    qs = quantInit(model, paramsPtr) as bigint;
    ctx = ggmlInit({ mem_size: (opts.tensors.length + 1) * Number(tensorOverhead()), mem_buffer: null, no_alloc: true }) as bigint;
    const ptrs = opts.tensors.map((t) => {
      const ne = [0, 1, 2, 3].map((k) => t.ne[k] ?? 1);
      const p = newTensor4d(ctx, 0 /* F32 */, ne[0], ne[1], ne[2], ne[3]) as bigint;
      setName(p, t.name);
      return p;
    });
    const allowed = ptrs.map((p) => allows(qs, p) as boolean);
    const out = new Map<number, (number | null)[]>();
    for (const ftype of opts.ftypes) {
      const types = new Int32Array(ptrs.length);
      computeTypes(qs, ftype, ptrs, types, ptrs.length);
      out.set(ftype, Array.from(types, (t, i) => (allowed[i] ? t : null)));
    }
    return out;
  } finally {
    if (qs) quantFree(qs);
    if (ctx) ggmlFree(ctx);
    modelFree(model);
    koffi.free(paramsPtr);
  }
}
