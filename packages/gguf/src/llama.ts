// The seam to libllama beyond the quantization kernels (those are in ggml.ts), loaded with koffi
// from node-llama-cpp's libraries: llama_model_quantize and the reference type recipe for the
// pipeline, and the engine API (model, context, batch, decode, logits) that the pipeline's
// calibration and validation passes and the runtime's cpu backend drive. This module declares
// every libllama signature we call; the packages call the typed wrappers below. Libraries load
// lazily, on the first call.
//
// Signatures follow include/llama.h at the llama.cpp commit node-llama-cpp 3.21.1 ships.
// GGML_ASSERT failures abort the whole process, so every wrapper checks its inputs before it
// crosses into C.

import os from "node:os";
import koffi, { type LibraryHandle, type TypeObject } from "koffi";
import { ConversionError, InputError, UsageError } from "@llama-pajamas/artifact";
import { type GGMLType, type LlamaFtype } from "./formats/gguf-types.js";
import { ensureGgmlLoaded, loadLibrary, nativeLibraryPaths } from "./ggml.js";


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
  ensureGgmlLoaded();
  const p = nativeLibraryPaths();
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
  const llamaLib = loadLibrary(nativeLibraryPaths().llama!);
  const ggmlLib = loadLibrary(nativeLibraryPaths().ggmlBase);
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

// ---------------------------------------------------------------------------------------------
// libllama inference: load a GGUF, tokenize, decode batches, read logits, and observe the inputs
// of every matrix multiplication (cb_eval), for validation/ and calibration/.
//
// Structs follow include/llama.h and ggml/include/ggml.h at the commit node-llama-cpp 3.21.1
// ships (x86-64 / arm64 LP64 layout); engineBindings() checks each layout against the library's
// own defaults before anything uses it.

/** struct llama_model_params (80 bytes). */
const MODEL_PARAMS_FIELDS = {
  devices: "void *",
  tensor_buft_overrides: "void *",
  n_gpu_layers: "int32_t",
  split_mode: "int",
  load_mode: "int",
  lazy_mode: "int",
  main_gpu: "int32_t",
  tensor_split: "void *",
  progress_callback: "void *",
  progress_callback_user_data: "void *",
  kv_overrides: "void *",
  vocab_only: "bool",
  check_tensors: "bool",
  use_extra_bufts: "bool",
  no_host: "bool",
  no_alloc: "bool",
  load_mtp: "bool",
} as const;

/** struct llama_context_params (160 bytes). */
const CONTEXT_PARAMS_FIELDS = {
  n_ctx: "uint32_t",
  n_batch: "uint32_t",
  n_ubatch: "uint32_t",
  n_seq_max: "uint32_t",
  n_rs_seq: "uint32_t",
  n_outputs_max: "uint32_t",
  n_outputs_max_per_seq: "uint32_t",
  n_threads: "int32_t",
  n_threads_batch: "int32_t",
  ctx_type: "int",
  rope_scaling_type: "int",
  pooling_type: "int",
  attention_type: "int",
  flash_attn_type: "int",
  rope_freq_base: "float",
  rope_freq_scale: "float",
  yarn_ext_factor: "float",
  yarn_attn_factor: "float",
  yarn_beta_fast: "float",
  yarn_beta_slow: "float",
  yarn_orig_ctx: "uint32_t",
  defrag_thold: "float",
  cb_eval: "void *",
  cb_eval_user_data: "void *",
  type_k: "int",
  type_v: "int",
  abort_callback: "void *",
  abort_callback_data: "void *",
  embeddings: "bool",
  offload_kqv: "bool",
  no_perf: "bool",
  op_offload: "bool",
  swa_full: "bool",
  kv_unified: "bool",
  samplers: "void *",
  n_samplers: "size_t",
  ctx_other: "void *",
} as const;

/** struct llama_batch (56 bytes), passed by value to llama_decode. */
const BATCH_FIELDS = {
  n_tokens: "int32_t",
  token: "void *",
  embd: "void *",
  pos: "void *",
  n_seq_id: "void *",
  seq_id: "void *",
  logits: "void *",
} as const;

interface ContextParams {
  n_ctx: number; n_batch: number; n_ubatch: number; n_seq_max: number; n_rs_seq: number;
  n_outputs_max: number; n_outputs_max_per_seq: number; n_threads: number; n_threads_batch: number;
  ctx_type: number; rope_scaling_type: number; pooling_type: number; attention_type: number; flash_attn_type: number;
  rope_freq_base: number; rope_freq_scale: number; yarn_ext_factor: number; yarn_attn_factor: number;
  yarn_beta_fast: number; yarn_beta_slow: number; yarn_orig_ctx: number; defrag_thold: number;
  cb_eval: bigint | null; cb_eval_user_data: bigint | null; type_k: number; type_v: number;
  abort_callback: bigint | null; abort_callback_data: bigint | null;
  embeddings: boolean; offload_kqv: boolean; no_perf: boolean; op_offload: boolean; swa_full: boolean; kv_unified: boolean;
  samplers: bigint | null; n_samplers: number | bigint; ctx_other: bigint | null;
}

interface ModelParams {
  n_gpu_layers: number; split_mode: number; load_mode: number; lazy_mode: number; main_gpu: number;
  vocab_only: boolean; check_tensors: boolean; use_extra_bufts: boolean; no_host: boolean; no_alloc: boolean; load_mtp: boolean;
  [k: string]: unknown;
}

interface BatchStruct {
  n_tokens: number; token: bigint; embd: bigint | null; pos: bigint; n_seq_id: bigint; seq_id: bigint; logits: bigint;
}

/** ggml.h `struct ggml_tensor` field offsets (LP64), checked against ggml itself at load. */
const TENSOR = { type: 0, buffer: 8, ne: 16, nb: 48, op: 80, src: 152, data: 248, name: 256, bytes: 336 } as const;
const GGML_MAX_NAME_BYTES = 64;
/** enum ggml_op values at this commit (checked with ggml_op_name). */
const GGML_OP_MUL_MAT = 29;
const GGML_OP_MUL_MAT_ID = 30;
const GGML_TYPE_F32 = 0;

interface EngineBindings {
  model_default_params: () => ModelParams;
  model_load_from_file: (path: string, params: ModelParams) => bigint | null;
  model_free: (model: bigint) => void;
  context_default_params: () => ContextParams;
  init_from_model: (model: bigint, params: ContextParams) => bigint | null;
  free: (ctx: bigint) => void;
  model_get_vocab: (model: bigint) => bigint;
  model_n_ctx_train: (model: bigint) => number;
  model_n_layer: (model: bigint) => number;
  model_meta_val_str: (model: bigint, key: string, buf: Buffer, size: number) => number;
  model_chat_template: (model: bigint, name: string | null) => string | null;
  vocab_n_tokens: (vocab: bigint) => number;
  vocab_bos: (vocab: bigint) => number;
  vocab_eos: (vocab: bigint) => number;
  vocab_get_add_bos: (vocab: bigint) => boolean;
  vocab_get_add_eos: (vocab: bigint) => boolean;
  tokenize: (vocab: bigint, text: Buffer, len: number, tokens: Int32Array | null, nMax: number, addSpecial: boolean, parseSpecial: boolean) => number;
  token_to_piece: (vocab: bigint, token: number, buf: Buffer, len: number, lstrip: number, special: boolean) => number;
  decode: KoffiAsync<(ctx: bigint, batch: BatchStruct) => number>;
  get_logits_ith: (ctx: bigint, i: number) => bigint | null;
  get_memory: (ctx: bigint) => bigint;
  memory_clear: (mem: bigint, data: boolean) => void;
  n_ctx: (ctx: bigint) => number;
  n_seq_max: (ctx: bigint) => number;
  synchronize: (ctx: bigint) => void;
  buffer_is_host: (buffer: bigint) => boolean;
  tensor_get: (tensor: bigint, data: Uint8Array, offset: number, size: number) => void;
  nbytes: (tensor: bigint) => number;
  evalCallbackType: TypeObject;
  logCallbackType: TypeObject;
  // generation (the runtime's cpu backend)
  memory_seq_rm: (mem: bigint, seq: number, p0: number, p1: number) => boolean;
  set_n_threads: (ctx: bigint, n: number, nBatch: number) => void;
  attach_threadpool: (ctx: bigint, tp: bigint, tpBatch: bigint) => void;
  threadpool_new: (params: object) => bigint | null;
  threadpool_free: (tp: bigint) => void;
  threadpool_params_default: (n: number) => object;
  model_n_embd: (model: bigint) => number;
  model_n_params: (model: bigint) => number | bigint;
  model_size: (model: bigint) => number | bigint;
  vocab_is_eog: (vocab: bigint, token: number) => boolean;
  detokenize: (vocab: bigint, tokens: Int32Array, n: number, text: Buffer, len: number, removeSpecial: boolean, unparseSpecial: boolean) => number;
  get_embeddings_seq: (ctx: bigint, seq: number) => bigint | null;
  get_embeddings_ith: (ctx: bigint, i: number) => bigint | null;
  pooling_type: (ctx: bigint) => number;
  sampler_chain_init: (params: { no_perf: boolean }) => bigint;
  sampler_chain_add: (chain: bigint, s: bigint) => void;
  sampler_init_greedy: () => bigint;
  sampler_init_dist: (seed: number) => bigint;
  sampler_init_top_k: (k: number) => bigint;
  sampler_init_top_p: (p: number, minKeep: number) => bigint;
  sampler_init_min_p: (p: number, minKeep: number) => bigint;
  sampler_init_temp: (t: number) => bigint;
  sampler_init_penalties: (lastN: number, repeat: number, freq: number, present: number) => bigint;
  sampler_init_grammar: (vocab: bigint, gbnf: string, root: string) => bigint | null;
  sampler_sample: (s: bigint, ctx: bigint, idx: number) => number;
  sampler_accept: (s: bigint, token: number) => void;
  sampler_free: (s: bigint) => void;
}

let engine: EngineBindings | undefined;
/** The last lines libllama logged while an engine call ran, for error messages. */
const engineLog: string[] = [];
let engineLogCallback: unknown;

function engineBindings(): EngineBindings {
  if (engine) return engine;
  const q = llamaBindings(); // loads ggml-base, ggml and libllama, and runs llama_backend_init
  const p = nativeLibraryPaths();
  const ggmlBase = loadLibrary(p.ggmlBase);
  const llamaLib = loadLibrary(p.llama!);
  // Backends are separate libraries (libggml-cpu-<variant>): load the best CPU one for this machine.
  if (!p.ggml) throw new InputError(`no libggml next to ${p.ggmlBase}; cannot load llama.cpp's CPU backend`, { path: p.dir });
  const ggmlLib = loadLibrary(p.ggml);
  quietEngineLog(q); // before loading backends, which log what they load
  const regCount = ggmlLib.func("size_t ggml_backend_reg_count(void)") as () => number | bigint;
  const devCount = ggmlLib.func("size_t ggml_backend_dev_count(void)") as () => number | bigint;
  if (Number(devCount()) === 0) {
    (ggmlLib.func("void ggml_backend_load_all_from_path(const char *dir)") as (d: string) => void)(p.dir);
  }
  if (Number(regCount()) === 0 || Number(devCount()) === 0) {
    throw new InputError(`no llama.cpp backend could be loaded from ${p.dir} (no libggml-cpu-* for this CPU?)`, { path: p.dir });
  }

  const modelParams = koffi.struct(MODEL_PARAMS_FIELDS);
  const ctxParams = koffi.struct(CONTEXT_PARAMS_FIELDS);
  const batch = koffi.struct(BATCH_FIELDS);
  if (koffi.sizeof(modelParams) !== 80 || koffi.sizeof(ctxParams) !== 160 || koffi.sizeof(batch) !== 56) {
    throw new InputError(`unexpected llama struct sizes on this platform (${koffi.sizeof(modelParams)}, ${koffi.sizeof(ctxParams)}, ${koffi.sizeof(batch)})`);
  }
  let evalCallbackType: TypeObject;
  try {
    evalCallbackType = koffi.type("llama_pajamas_eval_callback");
  } catch {
    evalCallbackType = koffi.proto("bool llama_pajamas_eval_callback(void *tensor, bool ask, void *user_data)");
  }
  const f = (lib: LibraryHandle, name: string, ret: string | TypeObject, args: (string | TypeObject)[]) => lib.func(name, ret, args);
  const b: EngineBindings = {
    model_default_params: f(llamaLib, "llama_model_default_params", modelParams, []),
    model_load_from_file: f(llamaLib, "llama_model_load_from_file", "void *", ["const char *", modelParams]),
    model_free: f(llamaLib, "llama_model_free", "void", ["void *"]),
    context_default_params: f(llamaLib, "llama_context_default_params", ctxParams, []),
    init_from_model: f(llamaLib, "llama_init_from_model", "void *", ["void *", ctxParams]),
    free: f(llamaLib, "llama_free", "void", ["void *"]),
    model_get_vocab: f(llamaLib, "llama_model_get_vocab", "void *", ["void *"]),
    model_n_ctx_train: f(llamaLib, "llama_model_n_ctx_train", "int32_t", ["void *"]),
    model_n_layer: f(llamaLib, "llama_model_n_layer", "int32_t", ["void *"]),
    model_meta_val_str: f(llamaLib, "llama_model_meta_val_str", "int32_t", ["void *", "const char *", "void *", "size_t"]),
    model_chat_template: f(llamaLib, "llama_model_chat_template", "const char *", ["void *", "const char *"]),
    vocab_n_tokens: f(llamaLib, "llama_vocab_n_tokens", "int32_t", ["void *"]),
    vocab_bos: f(llamaLib, "llama_vocab_bos", "int32_t", ["void *"]),
    vocab_eos: f(llamaLib, "llama_vocab_eos", "int32_t", ["void *"]),
    vocab_get_add_bos: f(llamaLib, "llama_vocab_get_add_bos", "bool", ["void *"]),
    vocab_get_add_eos: f(llamaLib, "llama_vocab_get_add_eos", "bool", ["void *"]),
    tokenize: f(llamaLib, "llama_tokenize", "int32_t", ["void *", "void *", "int32_t", "void *", "int32_t", "bool", "bool"]),
    token_to_piece: f(llamaLib, "llama_token_to_piece", "int32_t", ["void *", "int32_t", "void *", "int32_t", "int32_t", "bool"]),
    decode: f(llamaLib, "llama_decode", "int32_t", ["void *", batch]) as EngineBindings["decode"],
    get_logits_ith: f(llamaLib, "llama_get_logits_ith", "void *", ["void *", "int32_t"]),
    get_memory: f(llamaLib, "llama_get_memory", "void *", ["void *"]),
    memory_clear: f(llamaLib, "llama_memory_clear", "void", ["void *", "bool"]),
    n_ctx: f(llamaLib, "llama_n_ctx", "uint32_t", ["void *"]),
    n_seq_max: f(llamaLib, "llama_n_seq_max", "uint32_t", ["void *"]),
    synchronize: f(llamaLib, "llama_synchronize", "void", ["void *"]),
    buffer_is_host: f(ggmlBase, "ggml_backend_buffer_is_host", "bool", ["void *"]),
    tensor_get: f(ggmlBase, "ggml_backend_tensor_get", "void", ["void *", "void *", "size_t", "size_t"]),
    nbytes: f(ggmlBase, "ggml_nbytes", "size_t", ["void *"]),
    evalCallbackType,
    logCallbackType: q.logCallbackType,
    memory_seq_rm: f(llamaLib, "llama_memory_seq_rm", "bool", ["void *", "int32_t", "int32_t", "int32_t"]),
    set_n_threads: f(llamaLib, "llama_set_n_threads", "void", ["void *", "int32_t", "int32_t"]),
    attach_threadpool: f(llamaLib, "llama_attach_threadpool", "void", ["void *", "void *", "void *"]),
    ...threadpoolBindings(ggmlBase, ggmlLib),
    model_n_embd: f(llamaLib, "llama_model_n_embd", "int32_t", ["void *"]),
    model_n_params: f(llamaLib, "llama_model_n_params", "uint64_t", ["void *"]),
    model_size: f(llamaLib, "llama_model_size", "uint64_t", ["void *"]),
    vocab_is_eog: f(llamaLib, "llama_vocab_is_eog", "bool", ["void *", "int32_t"]),
    detokenize: f(llamaLib, "llama_detokenize", "int32_t", ["void *", "void *", "int32_t", "void *", "int32_t", "bool", "bool"]),
    get_embeddings_seq: f(llamaLib, "llama_get_embeddings_seq", "void *", ["void *", "int32_t"]),
    get_embeddings_ith: f(llamaLib, "llama_get_embeddings_ith", "void *", ["void *", "int32_t"]),
    pooling_type: f(llamaLib, "llama_pooling_type", "int", ["void *"]),
    sampler_chain_init: f(llamaLib, "llama_sampler_chain_init", "void *", [koffi.struct({ no_perf: "bool" })]),
    sampler_chain_add: f(llamaLib, "llama_sampler_chain_add", "void", ["void *", "void *"]),
    sampler_init_greedy: f(llamaLib, "llama_sampler_init_greedy", "void *", []),
    sampler_init_dist: f(llamaLib, "llama_sampler_init_dist", "void *", ["uint32_t"]),
    sampler_init_top_k: f(llamaLib, "llama_sampler_init_top_k", "void *", ["int32_t"]),
    sampler_init_top_p: f(llamaLib, "llama_sampler_init_top_p", "void *", ["float", "size_t"]),
    sampler_init_min_p: f(llamaLib, "llama_sampler_init_min_p", "void *", ["float", "size_t"]),
    sampler_init_temp: f(llamaLib, "llama_sampler_init_temp", "void *", ["float"]),
    sampler_init_penalties: f(llamaLib, "llama_sampler_init_penalties", "void *", ["int32_t", "float", "float", "float"]),
    sampler_init_grammar: f(llamaLib, "llama_sampler_init_grammar", "void *", ["void *", "const char *", "const char *"]),
    sampler_sample: f(llamaLib, "llama_sampler_sample", "int32_t", ["void *", "void *", "int32_t"]),
    sampler_accept: f(llamaLib, "llama_sampler_accept", "void", ["void *", "int32_t"]),
    sampler_free: f(llamaLib, "llama_sampler_free", "void", ["void *"]),
  };

  // Layout checks: the library's own defaults (llama-model.cpp / llama-context.cpp) ...
  const mp = b.model_default_params();
  const cp = b.context_default_params();
  if (mp.n_gpu_layers !== -1 || mp.split_mode !== 1 || mp.load_mode !== -1 || mp.use_extra_bufts !== true || mp.no_alloc !== false ||
      cp.n_ctx !== 512 || cp.n_batch !== 2048 || cp.n_ubatch !== 512 || cp.n_seq_max !== 1 || cp.flash_attn_type !== -1 ||
      cp.yarn_ext_factor !== -1 || cp.type_k !== 1 || cp.type_v !== 1 || cp.offload_kqv !== true || cp.swa_full !== true ||
      cp.kv_unified !== false || cp.cb_eval !== null) {
    throw new InputError(`libllama at ${p.llama} does not have the llama_model_params / llama_context_params layout this package was written for`);
  }
  // ... and a real ggml_tensor: ne, nb, name and op where TENSOR says they are.
  checkTensorLayout(ggmlBase);
  const opName = ggmlBase.func("const char *ggml_op_name(int op)") as (op: number) => string;
  if (opName(GGML_OP_MUL_MAT) !== "MUL_MAT" || opName(GGML_OP_MUL_MAT_ID) !== "MUL_MAT_ID") {
    throw new InputError(`ggml at ${p.ggmlBase} numbers its ops differently (op ${GGML_OP_MUL_MAT} is ${opName(GGML_OP_MUL_MAT)})`);
  }
  engine = b;
  return b;
}

/**
 * ggml's persistent CPU threadpool (ggml-cpu.h), reached as common/ does: through the CPU
 * backend's get_proc_address, since the CPU backend is whichever libggml-cpu-<variant> loaded.
 */
function threadpoolBindings(ggmlBase: LibraryHandle, ggmlLib: LibraryHandle): Pick<EngineBindings, "threadpool_new" | "threadpool_free" | "threadpool_params_default"> {
  const params = koffi.struct({ cpumask: koffi.array("bool", 512), n_threads: "int", prio: "int", poll: "uint32_t", strict_cpu: "bool", paused: "bool" });
  const regByName = ggmlLib.func("void *ggml_backend_reg_by_name(const char *name)") as (n: string) => bigint | null;
  const procAddress = ggmlLib.func("void *ggml_backend_reg_get_proc_address(void *reg, const char *name)") as (r: bigint, n: string) => bigint | null;
  const reg = regByName("CPU");
  const newPtr = reg ? procAddress(reg, "ggml_threadpool_new") : null;
  const freePtr = reg ? procAddress(reg, "ggml_threadpool_free") : null;
  if (!newPtr || !freePtr) throw new InputError("llama.cpp's CPU backend does not export its threadpool (ggml_threadpool_new)");
  return {
    threadpool_params_default: ggmlBase.func("ggml_threadpool_params_default", params, ["int"]) as (n: number) => object,
    threadpool_new: koffi.decode(newPtr, namedProto("llama_pajamas_threadpool_new", "void *", [koffi.pointer(params)])) as unknown as (p: object) => bigint | null,
    threadpool_free: koffi.decode(freePtr, namedProto("llama_pajamas_threadpool_free", "void", ["void *"])) as unknown as (tp: bigint) => void,
  };
}

/** A function-pointer type by name, reused when another copy of this module declared it first. */
function namedProto(name: string, ret: string, args: (string | TypeObject)[]): TypeObject {
  try {
    return koffi.type(name);
  } catch {
    return koffi.proto(name, ret, args);
  }
}

function checkTensorLayout(ggmlBase: LibraryHandle): void {
  const initParams = koffi.struct({ mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });
  const init = ggmlBase.func("ggml_init", "void *", [initParams]) as (p: object) => bigint;
  const free = ggmlBase.func("void ggml_free(void *ctx)") as (c: bigint) => void;
  const overhead = ggmlBase.func("size_t ggml_tensor_overhead(void)") as () => number;
  const new2d = ggmlBase.func("void *ggml_new_tensor_2d(void *ctx, int type, int64_t ne0, int64_t ne1)") as (c: bigint, t: number, a: number, b: number) => bigint;
  const setName = ggmlBase.func("void *ggml_set_name(void *t, const char *name)") as (t: bigint, n: string) => bigint;
  const getName = ggmlBase.func("ggml_get_name", "void *", ["void *"]) as (t: bigint) => bigint;
  const ctx = init({ mem_size: 2 * Number(overhead()), mem_buffer: null, no_alloc: true });
  try {
    const t = new2d(ctx, GGML_TYPE_F32, 7, 11);
    setName(t, "layout");
    const v = new DataView(koffi.view(t, TENSOR.bytes));
    const ok = getName(t) - t === BigInt(TENSOR.name) &&
      v.getBigInt64(TENSOR.ne, true) === 7n && v.getBigInt64(TENSOR.ne + 8, true) === 11n && v.getBigInt64(TENSOR.ne + 16, true) === 1n &&
      v.getBigUint64(TENSOR.nb, true) === 4n && v.getBigUint64(TENSOR.nb + 8, true) === 28n && v.getInt32(TENSOR.op, true) === 0 &&
      v.getInt32(TENSOR.type, true) === GGML_TYPE_F32;
    if (!ok) throw new InputError(`ggml's struct ggml_tensor does not have the layout this package was written for`);
  } finally {
    free(ctx);
  }
}

/** Routes libllama's log to a ring of recent lines (library code never prints). */
function quietEngineLog(b: Pick<EngineBindings, "logCallbackType">): void {
  if (engineLogCallback) return;
  engineLogCallback = koffi.register((_level: number, text: string | null) => {
    engineLog.push(text ?? "");
    if (engineLog.length > 200) engineLog.splice(0, engineLog.length - 100);
  }, koffi.pointer(b.logCallbackType));
  llama!.llama_log_set(engineLogCallback, null);
}

function recentEngineErrors(): string {
  return engineLog.join("").split("\n").filter((l) => /error|failed|invalid|unable/i.test(l)).slice(-3).join(" | ").trim();
}

export interface EngineModelInfo {
  /** llama_vocab_n_tokens: rows of the logits. */
  nVocab: number;
  bos: number;
  eos: number;
  /** llama_vocab_get_add_bos: the tokenizer prepends BOS (perplexity then puts BOS first in each chunk). */
  addBos: boolean;
  addEos: boolean;
  nCtxTrain: number;
  nLayer: number;
  /** general.architecture. */
  architecture: string;
  /** tokenizer.chat_template, when the file has one. */
  chatTemplate: string | undefined;
  /** llama_model_n_embd. */
  nEmbd: number;
  /** llama_model_n_params. */
  nParams: number;
  /** llama_model_size: bytes of the weights. */
  sizeBytes: number;
}

/** A GGUF model loaded by libllama on the CPU. Call free() when done. */
export class EngineModel {
  readonly info: EngineModelInfo;
  private handle: bigint | null;
  private readonly vocab: bigint;

  private constructor(readonly path: string, handle: bigint) {
    const b = engine!;
    this.handle = handle;
    this.vocab = b.model_get_vocab(handle);
    this.info = {
      nVocab: b.vocab_n_tokens(this.vocab),
      bos: b.vocab_bos(this.vocab),
      eos: b.vocab_eos(this.vocab),
      addBos: b.vocab_get_add_bos(this.vocab),
      addEos: b.vocab_get_add_eos(this.vocab),
      nCtxTrain: b.model_n_ctx_train(handle),
      nLayer: b.model_n_layer(handle),
      architecture: this.meta("general.architecture") ?? "",
      chatTemplate: b.model_chat_template(handle, null) ?? undefined,
      nEmbd: b.model_n_embd(handle),
      nParams: Number(b.model_n_params(handle)),
      sizeBytes: Number(b.model_size(handle)),
    };
  }

  /** llama_model_load_from_file with llama.cpp's defaults (mmap, CPU repacking as llama-perplexity does). */
  static load(path: string, opts: { gpuLayers?: number } = {}): EngineModel {
    const b = engineBindings();
    engineLog.length = 0;
    const params = b.model_default_params();
    // layers on the GPU when the libraries have a GPU backend: a count, or -1 for all; default none
    params.n_gpu_layers = opts.gpuLayers ?? 0;
    const handle = b.model_load_from_file(path, params);
    if (!handle) {
      throw new InputError(`llama.cpp cannot load ${path}: ${recentEngineErrors() || "see that the file is a complete GGUF model"}`, { path });
    }
    return new EngineModel(path, handle);
  }

  get pointer(): bigint {
    if (this.handle === null) throw new UsageError(`model ${this.path} was freed`);
    return this.handle;
  }

  /** The model's llama_vocab. */
  get vocabPointer(): bigint {
    return this.vocab;
  }

  /** llama_model_meta_val_str. */
  meta(key: string): string | undefined {
    const buf = Buffer.alloc(4096);
    const n = engine!.model_meta_val_str(this.pointer, key, buf, buf.length);
    return n < 0 ? undefined : buf.subarray(0, Math.min(n, buf.length - 1)).toString("utf8");
  }

  /**
   * llama_tokenize over UTF-8 bytes, as common_tokenize does: `addSpecial` adds BOS/EOS as the
   * vocabulary asks; `parseSpecial` turns spelled-out special tokens into their ids.
   */
  tokenize(text: string | Uint8Array, opts: { addSpecial: boolean; parseSpecial?: boolean }): Int32Array {
    const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
    if (bytes.length > 0x7fffffff) throw new UsageError(`text of ${bytes.length} bytes is too long for llama_tokenize`);
    const b = engine!;
    const parse = opts.parseSpecial ?? false;
    let out = new Int32Array(bytes.length + 2);
    let n = b.tokenize(this.vocab, bytes, bytes.length, out, out.length, opts.addSpecial, parse);
    if (n < 0) {
      out = new Int32Array(-n);
      n = b.tokenize(this.vocab, bytes, bytes.length, out, out.length, opts.addSpecial, parse);
    }
    if (n < 0) throw new InputError(`llama_tokenize failed on ${bytes.length} bytes of text (${n})`);
    return out.slice(0, n);
  }

  /** llama_vocab_is_eog: the token ends a generation (EOS, EOT, ...). */
  isEog(token: number): boolean {
    return engine!.vocab_is_eog(this.vocab, token);
  }

  /** llama_detokenize: token ids to text (special tokens rendered as text when `special`). */
  detokenize(tokens: ArrayLike<number>, special = false): string {
    if (tokens.length === 0) return "";
    const ids = Int32Array.from(tokens);
    const b = engine!;
    let buf = Buffer.alloc(Math.max(64, ids.length * 8));
    let n = b.detokenize(this.vocab, ids, ids.length, buf, buf.length, false, special);
    if (n < 0) {
      buf = Buffer.alloc(-n);
      n = b.detokenize(this.vocab, ids, ids.length, buf, buf.length, false, special);
    }
    return n <= 0 ? "" : buf.subarray(0, n).toString("utf8");
  }

  /** llama_token_to_piece (special tokens rendered). */
  piece(token: number): string {
    const buf = Buffer.alloc(256);
    const n = engine!.token_to_piece(this.vocab, token, buf, buf.length, 0, true);
    return n < 0 ? "" : buf.subarray(0, n).toString("utf8");
  }

  free(): void {
    if (this.handle !== null) engine!.model_free(this.handle);
    this.handle = null;
  }
}

/** What cb_eval shows of one matrix multiplication: the weight and its input activations. */
export interface MatMulInput {
  op: "MUL_MAT" | "MUL_MAT_ID";
  /** src0's name with any backend prefix/suffix removed ("CUDA0#blk.0.attn_q.weight#0" -> "blk.0.attn_q.weight"). */
  weight: string;
  /** src0->ne: [n_in, n_out, n_expert, 1]. */
  weightNe: readonly [number, number, number, number];
  /** src1 (F32) data and its shape / strides in floats. */
  x: Float32Array;
  xNe: readonly [number, number, number, number];
  xStride: readonly [number, number, number, number];
  /** MUL_MAT_ID: the chosen experts, ids[row * idsStride[1] + k * idsStride[0]], shape [n_used, n_tokens]. */
  ids?: Int32Array;
  idsNe?: readonly [number, number];
  idsStride?: readonly [number, number];
}

/**
 * cb_eval, split in two as ggml_backend_sched calls it: `wants` (ask = true) chooses which
 * MUL_MAT / MUL_MAT_ID nodes to see; `observe` then receives their inputs after they ran.
 */
export interface MatMulObserver {
  wants(node: { op: "MUL_MAT" | "MUL_MAT_ID"; weight: string; xRows: number; xIsF32: boolean }): boolean;
  observe(input: MatMulInput): void;
}

export interface EngineContextOptions {
  /** Total KV cells (n_ctx); with several sequences each gets nCtx / nSeqMax. */
  nCtx: number;
  /** Logical batch: most tokens one decode() takes. */
  nBatch: number;
  /** Physical batch (default 512, as llama.cpp). */
  nUbatch?: number;
  nSeqMax?: number;
  /** Threads (default: all cores). */
  threads?: number;
  /** cb_eval observer (imatrix); decode() then runs synchronously on this thread. */
  observer?: MatMulObserver;
  /** Output embeddings (pooled as the model says) instead of logits. */
  embeddings?: boolean;
  /** llama.cpp's flash_attn_type: -1 auto (default), 0 off, 1 on. */
  flashAttention?: -1 | 0 | 1;
  /**
   * Run decodes on a persistent ggml threadpool of `threads` (llama_attach_threadpool), as
   * llama-cli and llama-server do, instead of ggml starting and joining fresh workers for every
   * graph: what makes one-token decodes on several threads fast.
   */
  threadpool?: boolean;
}

/** One batch for decode(): token ids with positions, sequence ids, and which positions want logits. */
export interface EngineBatch {
  tokens: ArrayLike<number>;
  pos: ArrayLike<number>;
  seq: ArrayLike<number>;
  logits: ArrayLike<boolean | number>;
}

/** A llama_context over an EngineModel, with its own batch buffers. Call free() when done. */
export class EngineContext {
  private handle: bigint | null;
  private readonly arena = new NativeArena();
  private readonly batchView: { token: Int32Array; pos: Int32Array; nSeq: Int32Array; seq: Int32Array; logits: Int8Array };
  private readonly batchPtrs: { token: bigint; pos: bigint; nSeq: bigint; seqPtrs: bigint; logits: bigint };
  private readonly callback: bigint | null;
  private callbackError: unknown;
  /** The persistent ggml threadpool attached to this context, if any (freed with it). */
  private threadpool: bigint | null = null;
  readonly nBatch: number;
  readonly nVocab: number;

  constructor(readonly model: EngineModel, opts: EngineContextOptions) {
    const b = engineBindings();
    const nSeqMax = opts.nSeqMax ?? 1;
    for (const [k, v] of Object.entries({ nCtx: opts.nCtx, nBatch: opts.nBatch, nSeqMax })) {
      if (!Number.isInteger(v) || v < 1) throw new UsageError(`${k} must be a positive integer, got ${v}`);
    }
    const threads = opts.threads ?? defaultThreads();
    this.nBatch = opts.nBatch;
    this.nVocab = model.info.nVocab;
    // the batch buffers, sized like llama_batch_init(n_batch, 0, 1), with seq_id[i] -> &seq[i]
    const n = opts.nBatch;
    const tok = this.arena.bytes(4 * n);
    const pos = this.arena.bytes(4 * n);
    const nSeq = this.arena.bytes(4 * n);
    const seq = this.arena.bytes(4 * n);
    const seqPtrs = this.arena.bytes(8 * n);
    const logits = this.arena.bytes(n);
    for (let i = 0; i < n; i++) seqPtrs.view.setBigUint64(8 * i, seq.ptr + BigInt(4 * i), true);
    const i32 = (m: { u8: Uint8Array }) => new Int32Array(m.u8.buffer, m.u8.byteOffset, n);
    this.batchView = { token: i32(tok), pos: i32(pos), nSeq: i32(nSeq), seq: i32(seq), logits: new Int8Array(logits.u8.buffer, logits.u8.byteOffset, n) };
    this.batchView.nSeq.fill(1);
    this.batchPtrs = { token: tok.ptr, pos: pos.ptr, nSeq: nSeq.ptr, seqPtrs: seqPtrs.ptr, logits: logits.ptr };

    this.callback = opts.observer ? koffi.register(this.evalCallback(opts.observer), koffi.pointer(b.evalCallbackType)) : null;
    // common_context_params_to_llama: what llama-perplexity / llama-imatrix pass
    const p = b.context_default_params();
    p.n_ctx = opts.nCtx;
    p.n_batch = opts.nBatch;
    p.n_ubatch = opts.nUbatch ?? 512;
    p.n_seq_max = nSeqMax;
    p.n_outputs_max = 0;
    p.n_threads = threads;
    p.n_threads_batch = threads;
    p.swa_full = false;
    p.no_perf = true;
    p.embeddings = opts.embeddings ?? false;
    p.flash_attn_type = opts.flashAttention ?? -1;
    p.cb_eval = this.callback;
    p.cb_eval_user_data = null;
    engineLog.length = 0;
    const handle = b.init_from_model(model.pointer, p);
    if (!handle) {
      if (this.callback) koffi.unregister(this.callback);
      this.arena.free();
      throw new InputError(`llama.cpp cannot create a context for ${model.path} (n_ctx ${opts.nCtx}, batch ${opts.nBatch}): ${recentEngineErrors() || "out of memory?"}`, { path: model.path });
    }
    this.handle = handle;
    if (opts.threadpool && threads > 1) {
      const tp = b.threadpool_new(b.threadpool_params_default(threads));
      if (tp) {
        b.attach_threadpool(handle, tp, tp);
        this.threadpool = tp;
      }
    }
  }

  get pointer(): bigint {
    if (this.handle === null) throw new UsageError(`context of ${this.model.path} was freed`);
    return this.handle;
  }

  /** llama_memory_clear(llama_get_memory(ctx), true): forget every sequence. */
  clear(): void {
    const b = engine!;
    b.memory_clear(b.get_memory(this.pointer), true);
  }

  private fill(batch: EngineBatch): BatchStruct {
    const n = batch.tokens.length;
    if (n < 1 || n > this.nBatch) throw new UsageError(`a batch holds 1 to ${this.nBatch} tokens, got ${n}`);
    if (batch.pos.length !== n || batch.seq.length !== n || batch.logits.length !== n) throw new UsageError(`batch arrays differ in length`);
    const v = this.batchView;
    const nVocabTokens = this.nVocab;
    for (let i = 0; i < n; i++) {
      const t = batch.tokens[i]!;
      // llama_decode rejects bad ids itself, but a clear message is better
      if (!(t >= 0 && t < nVocabTokens)) throw new UsageError(`token id ${t} at batch index ${i} is outside the vocabulary (0..${nVocabTokens - 1})`);
      v.token[i] = t;
      v.pos[i] = batch.pos[i]!;
      v.seq[i] = batch.seq[i]!;
      v.logits[i] = batch.logits[i] ? 1 : 0;
    }
    const p = this.batchPtrs;
    return { n_tokens: n, token: p.token, embd: null, pos: p.pos, n_seq_id: p.nSeq, seq_id: p.seqPtrs, logits: p.logits };
  }

  private check(rc: number): void {
    if (this.callbackError !== undefined) {
      const e = this.callbackError;
      this.callbackError = undefined;
      throw e;
    }
    if (rc !== 0) {
      throw new ConversionError(`llama_decode failed (${rc}) on ${this.model.path}: ${recentEngineErrors() || (rc === 1 ? "no KV cache slot (context too small for the batch)" : "see llama.cpp's log")}`);
    }
  }

  /** llama_decode on this thread (required with an observer: cb_eval runs JS synchronously). */
  decode(batch: EngineBatch): void {
    this.check(engine!.decode(this.pointer, this.fill(batch)));
  }

  /** llama_decode on a libuv worker thread, so the event loop keeps running. */
  async decodeAsync(batch: EngineBatch): Promise<void> {
    if (this.callback) return this.decode(batch);
    const struct = this.fill(batch);
    const rc = await new Promise<number>((resolve, reject) =>
      engine!.decode.async(this.pointer, struct, (err, res) => (err ? reject(err) : resolve(res))),
    );
    this.check(rc);
  }

  /** llama_memory_seq_rm: drops sequence `seq`'s cells at positions [p0, p1) (p1 -1: to the end; seq -1: all). */
  seqRm(seq: number, p0: number, p1 = -1): boolean {
    const b = engine!;
    return b.memory_seq_rm(b.get_memory(this.pointer), seq, p0, p1);
  }

  /** llama_synchronize: waits until the backend has finished the last decode (a GPU runs it asynchronously). */
  synchronize(): void {
    engine!.synchronize(this.pointer);
  }

  /** llama_set_n_threads. */
  setThreads(threads: number, batchThreads = threads): void {
    engine!.set_n_threads(this.pointer, threads, batchThreads);
  }

  /**
   * An embeddings context's vector for `seq` (pooled) or, when the model has no pooling, the
   * output at batch index `lastIndex`. A copy.
   */
  embedding(seq: number, lastIndex: number): Float32Array {
    const b = engine!;
    const pooled = b.pooling_type(this.pointer) !== 0;
    const ptr = pooled ? b.get_embeddings_seq(this.pointer, seq) : b.get_embeddings_ith(this.pointer, lastIndex);
    if (!ptr) throw new UsageError(`no embeddings for sequence ${seq} (is this an embeddings context?)`);
    return new Float32Array(koffi.view(ptr, this.model.info.nEmbd * 4)).slice();
  }

  /**
   * The logits of `count` consecutive outputs starting at batch index `i` (llama_get_logits_ith),
   * as a view of llama.cpp's buffer: valid until the next decode.
   */
  logits(i: number, count = 1): Float32Array {
    const ptr = engine!.get_logits_ith(this.pointer, i);
    if (!ptr) throw new UsageError(`no logits for batch index ${i} (was it marked for output?)`);
    return new Float32Array(koffi.view(ptr, count * this.nVocab * 4));
  }

  free(): void {
    if (this.handle !== null) engine!.free(this.handle);
    this.handle = null;
    if (this.threadpool !== null) engine!.threadpool_free(this.threadpool);
    this.threadpool = null;
    if (this.callback) koffi.unregister(this.callback);
    this.arena.free();
  }

  /** cb_eval: decodes the ggml_tensor structs of MUL_MAT / MUL_MAT_ID nodes for the observer. */
  private evalCallback(observer: MatMulObserver): (t: bigint, ask: boolean) => boolean {
    const b = engine!;
    const tensorView = (ptr: bigint) => new DataView(koffi.view(ptr, TENSOR.bytes));
    const readName = (ptr: bigint): string => {
      const raw = new Uint8Array(koffi.view(ptr + BigInt(TENSOR.name), GGML_MAX_NAME_BYTES));
      const nul = raw.indexOf(0);
      return filterTensorName(Buffer.from(raw.subarray(0, nul < 0 ? raw.length : nul)).toString("utf8"));
    };
    const ne4 = (v: DataView): [number, number, number, number] =>
      [0, 1, 2, 3].map((k) => Number(v.getBigInt64(TENSOR.ne + 8 * k, true))) as [number, number, number, number];
    const nb4 = (v: DataView): [number, number, number, number] =>
      [0, 1, 2, 3].map((k) => Number(v.getBigUint64(TENSOR.nb + 8 * k, true))) as [number, number, number, number];
    const hostBytes = (ptr: bigint, v: DataView): ArrayBuffer => {
      const n = Number(b.nbytes(ptr));
      const buffer = v.getBigUint64(TENSOR.buffer, true);
      const data = v.getBigUint64(TENSOR.data, true);
      if (buffer !== 0n && !b.buffer_is_host(buffer)) {
        const copy = new Uint8Array(n);
        b.tensor_get(ptr, copy, 0, n);
        return copy.buffer;
      }
      return koffi.view(data, n);
    };
    return (t: bigint, ask: boolean): boolean => {
      try {
        const tv = tensorView(t);
        const op = tv.getInt32(TENSOR.op, true);
        if (op !== GGML_OP_MUL_MAT && op !== GGML_OP_MUL_MAT_ID) return ask ? false : true;
        const opName = op === GGML_OP_MUL_MAT ? "MUL_MAT" : "MUL_MAT_ID";
        const src0 = tv.getBigUint64(TENSOR.src, true);
        const src1 = tv.getBigUint64(TENSOR.src + 8, true);
        const s1 = tensorView(src1);
        const weight = readName(src0);
        if (ask) {
          return observer.wants({ op: opName, weight, xRows: Number(s1.getBigInt64(TENSOR.ne + 8, true)), xIsF32: s1.getInt32(TENSOR.type, true) === GGML_TYPE_F32 });
        }
        const s0 = tensorView(src0);
        const xNb = nb4(s1);
        if (s1.getInt32(TENSOR.type, true) !== GGML_TYPE_F32 || xNb[0] !== 4) return true;
        const input: MatMulInput = {
          op: opName,
          weight,
          weightNe: ne4(s0),
          x: new Float32Array(hostBytes(src1, s1)),
          xNe: ne4(s1),
          xStride: xNb.map((x) => x / 4) as [number, number, number, number],
        };
        if (op === GGML_OP_MUL_MAT_ID) {
          const idsPtr = tv.getBigUint64(TENSOR.src + 16, true);
          const iv = tensorView(idsPtr);
          const ine = ne4(iv);
          const inb = nb4(iv);
          input.ids = new Int32Array(hostBytes(idsPtr, iv));
          input.idsNe = [ine[0], ine[1]];
          input.idsStride = [inb[0] / 4, inb[1] / 4];
        }
        observer.observe(input);
        return true;
      } catch (e) {
        // an exception must not unwind through C: remember it, stop the graph, rethrow after decode
        this.callbackError ??= e;
        return false;
      }
    };
  }
}

/** What EngineSampler draws with; llama.cpp's samplers, in common/sampling.cpp's order. */
export interface EngineSamplerOptions {
  /** <= 0: greedy (argmax). */
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  /** Undefined: a random seed. */
  seed?: number;
  /** llama_sampler_init_penalties, when any is active. */
  penalties?: { lastN: number; repeat: number; frequency: number; presence: number };
  /** GBNF text and its start rule: only tokens the grammar allows are drawn. */
  grammar?: { gbnf: string; root: string };
}

/** A llama_sampler chain: grammar, penalties, then greedy or top-k, top-p, min-p, temperature, dist. */
export class EngineSampler {
  private chain: bigint | null;
  private readonly penalties: bigint | null = null;

  constructor(model: EngineModel, opts: EngineSamplerOptions) {
    const b = engineBindings();
    const chain = b.sampler_chain_init({ no_perf: true });
    this.chain = chain;
    const add = (s: bigint | null) => {
      if (!s) throw new InputError("llama.cpp could not create a sampler");
      b.sampler_chain_add(chain, s);
      return s;
    };
    try {
      if (opts.grammar) {
        engineLog.length = 0;
        const g = b.sampler_init_grammar(model.vocabPointer, opts.grammar.gbnf, opts.grammar.root);
        if (!g) throw new InputError(`the grammar cannot be parsed${recentEngineErrors() ? `: ${recentEngineErrors()}` : ""}`, { code: "E_GRAMMAR" });
        add(g);
      }
      const p = opts.penalties;
      if (p) this.penalties = add(b.sampler_init_penalties(p.lastN, p.repeat, p.frequency, p.presence));
      if (opts.temperature <= 0) {
        add(b.sampler_init_greedy());
      } else {
        if (opts.topK > 0) add(b.sampler_init_top_k(opts.topK));
        if (opts.topP < 1) add(b.sampler_init_top_p(opts.topP, 1));
        if (opts.minP > 0) add(b.sampler_init_min_p(opts.minP, 1));
        add(b.sampler_init_temp(opts.temperature));
        add(b.sampler_init_dist(opts.seed === undefined ? LLAMA_DEFAULT_SEED : opts.seed >>> 0));
      }
    } catch (e) {
      this.free();
      throw e;
    }
  }

  /** Tokens the penalties should count as already seen (the prompt), oldest first. */
  acceptHistory(tokens: ArrayLike<number>): void {
    if (this.penalties === null) return;
    for (let i = 0; i < tokens.length; i++) engine!.sampler_accept(this.penalties, tokens[i]!);
  }

  /** llama_sampler_sample on the logits of batch index `i`: draws a token and accepts it into the chain. */
  sample(ctx: EngineContext, i: number): number {
    if (this.chain === null) throw new UsageError("sampler was freed");
    return engine!.sampler_sample(this.chain, ctx.pointer, i);
  }

  free(): void {
    if (this.chain !== null) engine!.sampler_free(this.chain);
    this.chain = null;
  }
}

/** LLAMA_DEFAULT_SEED: llama_sampler_init_dist then seeds from the clock. */
const LLAMA_DEFAULT_SEED = 0xffffffff;

/** imatrix.cpp filter_tensor_name: "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight". */
export function filterTensorName(name: string): string {
  const p = name.indexOf("#");
  if (p < 0) return name;
  const q = name.indexOf("#", p + 1);
  return q < 0 ? name.slice(p + 1) : name.slice(p + 1, q);
}

function defaultThreads(): number {
  return Math.max(1, os.availableParallelism());
}
