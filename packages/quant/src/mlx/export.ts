// HF checkpoint -> an `mlx/` directory as `mlx_lm.convert --hf-path DIR -q ...` writes it
// (mlx_lm/convert.py convert, mlx_lm/utils.py quantize_model, save, save_model, save_config), so
// that `mlx_lm.load("mlx/")` loads it unchanged:
//
//   config.json                      HF config + eos_token_id from generation_config.json +
//                                    "quantization" and "quantization_config" (same object:
//                                    group_size, bits, mode, then per-module overrides); top-level
//                                    keys sorted, Python json.dump(indent=4) formatting
//   model.safetensors                or model-00001-of-0000N.safetensors past 5 GiB per shard,
//                                    split in model.parameters() order (make_shards)
//   model.safetensors.index.json     always: total_size, total_parameters, weight_map sorted
//   tokenizer files, generation_config.json, *.py    copied from the checkpoint
//   README.md                        the model card's front matter (library_name: mlx)
//   metadata.json                    ours (the artifact contract); mlx-lm ignores it
//
// Streaming: each parameter is read in row chunks, cast to the model dtype, quantized and
// written at its place in the shard (positional writes), so memory holds one chunk.
//
// With an importance matrix (convert --calibrate or --imatrix), modules it has an entry for
// choose each group's scale and bias by importance-weighted error (weighted.ts); the files keep
// exactly MLX's format, and metadata.json says so. Without one, the bytes are mx.quantize's.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConversionError, InputError, OutputError } from "@llama-pajamas/artifact";
import type { HFConfig } from "@llama-pajamas/gguf/architectures/types.js";
import { openCheckpointTensors, readTensorF32, type SafetensorsTensor } from "@llama-pajamas/gguf/formats/safetensors.js";
import { type AffineKernel, type MLXFloatDtype, affineQuantize, checkAffineParams, dtypeBytes, encodeDtype } from "@llama-pajamas/gguf/mlx/affine.js";
import { ImportanceMatrix } from "../quantize/imatrix.js";
import { type ModuleImportance, moduleImportance } from "./importance.js";
import { type MLXImportanceInfo, type MLXMetadata, buildMLXMetadata, filesDigest } from "./metadata.js";
import { type MLXModule, type MLXParam, getMLXModel } from "./models/index.js";
import { PyDict, type PyValue, comparePyStrings, parsePyJson, pyJsonDumps, pyTruthyValue, toPy } from "./python-json.js";
import { MLX_DEFAULT_GROUP_SIZE, type MLXMethod, type QuantizationPlan, checkGroupSize, parseMLXMethod, planQuantization } from "./recipes.js";
import { SafetensorsFileWriter, type TensorEntry, entryBytes } from "./safetensors-writer.js";
import { type WeightedStats, affineQuantizeWeighted, newWeightedStats } from "./weighted.js";

/** mlx_lm/utils.py MAX_FILE_SIZE_GB = 5, in bytes (make_shards: `max_file_size_gb << 30`). */
export const MLX_SHARD_BYTES = 5 * 2 ** 30;
/** Floats per read chunk (whole rows): 16 MiB of F32. */
const CHUNK_ELEMENTS = 1 << 22;
/** mlx_lm/convert.py MODEL_CONVERSION_DTYPES. */
const CONVERSION_DTYPES: readonly string[] = ["float16", "bfloat16", "float32"];
/** Tokenizer files tokenizer.save_pretrained writes or that loading needs; copied when present. */
const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "tokenizer.model",
  "tiktoken.model",
  "vocab.json",
  "merges.txt",
  "vocab.txt",
  "chat_template.jinja",
  "chat_template.json",
];
const DTYPE_NAMES = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;

export interface MLXProgressEvent {
  tensorIndex: number; // 1-based, of tensorCount (parameters of mlx-lm's model)
  tensorCount: number;
  tensorName: string;
  bytesRead: number;
  bytesTotal: number;
  elapsedMs: number;
}

export interface MLXExportOptions {
  /** The Hugging Face checkpoint directory. */
  model: string;
  /** The directory to create (mlx_lm.convert's --mlx-path); it must not exist yet. */
  output: string;
  /** "4bit", "8bit", "4bit_mixed", "mixed_3_6", "bf16" ... (see MLX_METHOD_NAMES). */
  method: string;
  /** 32, 64 (default) or 128. */
  groupSize?: number;
  /** "affine" (default and only). */
  mode?: string;
  /** Whose arithmetic: "metal" (default, = CUDA) or "cpu"; see affine.ts. */
  kernel?: AffineKernel;
  /** Shard size limit; default mlx-lm's 5 GiB. */
  shardBytes?: number;
  /**
   * Importance matrix by GGUF tensor name (readImatrix's, or calibration's): quantized modules it
   * covers get importance-weighted scales and biases. Without it the output is mx.quantize's.
   */
  imatrix?: ReadonlyMap<string, Float32Array>;
  /** How metadata.json names the imatrix (default "imatrix"). */
  imatrixLabel?: string;
  /** Size of the source weights, for the compression ratio; default: the checkpoint's *.safetensors. */
  sourceBytes?: number;
  onProgress?: (event: MLXProgressEvent) => void;
  signal?: AbortSignal;
}

export interface MLXFile {
  name: string;
  sizeBytes: number;
  sha256: string;
}

export interface MLXExportResult {
  dir: string;
  method: string;
  groupSize: number | undefined;
  dtype: MLXFloatDtype | "mixed";
  /** Every file except metadata.json, sorted by name. */
  files: MLXFile[];
  /** Sum of `files`. */
  sizeBytes: number;
  /** Sum of the safetensors shards. */
  weightBytes: number;
  /** sha256 of the `sha256sum` listing of `files` (see metadata.ts). */
  sha256: string;
  compressionRatio: number;
  totalParameters: number;
  bitsPerWeight: number;
  /** Module path -> bits, for every quantized module. */
  moduleBits: Record<string, number>;
  /** Quantizable modules kept in float because the group size does not divide their rows. */
  notDivisible: string[];
  metadata: MLXMetadata;
}

interface OutTensor extends TensorEntry {
  module: MLXModule;
  role: "weight" | "scales" | "biases" | "bias";
}

/** Writes `opts.output` as mlx_lm.convert would; on failure nothing is left behind. */
export async function exportMLX(opts: MLXExportOptions): Promise<MLXExportResult> {
  const started = Date.now();
  const method = parseMLXMethod(opts.method);
  if ((opts.mode ?? "affine") !== "affine") checkAffineParams({ mode: opts.mode, bits: 4, groupSize: 64 });
  const groupSize = opts.groupSize ?? MLX_DEFAULT_GROUP_SIZE;
  const { config, pyConfig, generation } = await readConfig(opts.model);
  const mlxModel = getMLXModel(config);
  const support = await supportFiles(opts.model);
  const sources = await openCheckpointTensors(opts.model);
  const modules = mlxModel.modules(config, sources);
  const numLayers = typeof config["num_hidden_layers"] === "number" ? config["num_hidden_layers"] : 0;
  const plan = planQuantization({ method, groupSize, modules, numLayers, modelPredicate: mlxModel.quantPredicate });
  const target = method.dtype ?? conversionDtype(config);
  const dtypeOf = (p: MLXParam): MLXFloatDtype => target ?? promote(p.runs.map((r) => sources.get(r.tensor)!.dtype));
  const tensors = outputTensors(modules, plan, dtypeOf);
  const importanceOf = opts.imatrix ? moduleImportance(opts.imatrix, numLayers) : undefined;
  const stats = newWeightedStats();
  let weightedModules = 0;
  const shards = makeShards(tensors, opts.shardBytes ?? MLX_SHARD_BYTES);
  const shardName = (i: number) => (shards.length > 1 ? `model-${pad5(i + 1)}-of-${pad5(shards.length)}.safetensors` : "model.safetensors");

  const dir = opts.output;
  await createOutputDir(dir);
  const writers = shards.map((s, i) => new SafetensorsFileWriter(join(dir, shardName(i)), s));
  try {
    for (const w of writers) await w.open();
    const writerOf = new Map<string, SafetensorsFileWriter>();
    for (const w of writers) for (const t of tensors) if (w.has(t.name)) writerOf.set(t.name, w);
    const params = modules.flatMap((m) => m.params.map((p) => ({ m, p })));
    const bytesTotal = params.reduce((s, { p }) => s + runBytes(p, sources), 0);
    let bytesRead = 0;
    for (const [i, { m, p }] of params.entries()) {
      if (opts.signal?.aborted) throw new OutputError("MLX export interrupted; nothing was kept");
      const quant = p.name === "weight" ? plan.modules.get(m.path) : undefined;
      const importance = quant ? importanceOf?.(m) : undefined;
      if (importance) weightedModules++;
      await writeParam({ module: m, param: p, quant, importance, stats, dtype: dtypeOf(p), sources, writerOf, kernel: opts.kernel });
      bytesRead += runBytes(p, sources);
      opts.onProgress?.({ tensorIndex: i + 1, tensorCount: params.length, tensorName: `${m.path}.${p.name}`, bytesRead, bytesTotal, elapsedMs: Date.now() - started });
    }
    for (const w of writers) await w.finish();

    const totalSize = tensors.reduce((s, t) => s + entryBytes(t), 0);
    const totalParameters = modules.reduce((s, m) => s + m.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0), 0);
    const weightMap = new PyDict(
      tensors
        .map((t) => t.name)
        .sort(comparePyStrings)
        .map((n) => [n, shardName(shards.findIndex((s) => s.some((t) => t.name === n)))]),
    );
    const index = new PyDict([
      ["metadata", new PyDict([["total_size", totalSize], ["total_parameters", totalParameters]])],
      ["weight_map", weightMap],
    ]);
    await writeFile(join(dir, "model.safetensors.index.json"), pyJsonDumps(index, 4));
    await writeFile(join(dir, "config.json"), pyJsonDumps(mlxConfig(pyConfig, generation, plan), 4));
    for (const f of support) await copyFile(join(opts.model, f), join(dir, f));
    await writeFile(join(dir, "README.md"), MODEL_CARD);

    const files = await hashFiles(dir);
    const sizeBytes = files.reduce((s, f) => s + f.sizeBytes, 0);
    const weightBytes = files.filter((f) => f.name.endsWith(".safetensors")).reduce((s, f) => s + f.sizeBytes, 0);
    const sourceBytes = opts.sourceBytes ?? (await checkpointBytes(opts.model));
    const moduleBits = Object.fromEntries([...plan.modules].map(([path, q]) => [path, q.bits]));
    const dtypes = new Set(modules.flatMap((m) => m.params.map(dtypeOf)));
    const dtype = dtypes.size === 1 ? [...dtypes][0]! : "mixed";
    const sha256 = filesDigest(files);
    const importance = opts.imatrix && importanceInfo(opts.imatrix, opts.imatrixLabel ?? "imatrix", weightedModules, stats);
    const metadata = buildMLXMetadata({ method, plan, modules, moduleBits, dtype, files, sha256, weightBytes, totalSize, totalParameters, kernel: opts.kernel ?? "metal", importance });
    await writeFile(join(dir, "metadata.json"), JSON.stringify(metadata, null, 2) + "\n");
    return {
      dir,
      method: method.name,
      groupSize: plan.defaults?.group_size,
      dtype,
      files,
      sizeBytes,
      weightBytes,
      sha256,
      compressionRatio: sourceBytes / weightBytes,
      totalParameters,
      bitsPerWeight: (totalSize * 8) / totalParameters,
      moduleBits,
      notDivisible: plan.notDivisible,
      metadata,
    };
  } catch (e) {
    for (const w of writers) await w.abort();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

function pad5(n: number): string {
  return String(n).padStart(5, "0");
}

async function createOutputDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: false });
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === "EEXIST") {
      throw new OutputError(`cannot write the MLX model to ${dir}: it already exists; delete it or choose another path`, { path: dir, code: "E_EXISTS" });
    }
    throw new OutputError(`cannot create ${dir}: ${(e as Error).message}`, { path: dir, cause: e });
  }
}

async function readConfig(dir: string): Promise<{ config: HFConfig; pyConfig: PyDict; generation: PyValue | undefined }> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new InputError(`cannot read ${path}: ${(cause as Error).message}`, { path, cause });
  }
  const pyConfig = parsePyJson(text, path);
  if (!(pyConfig instanceof PyDict)) throw new InputError(`${path} must hold a JSON object`, { path });
  const config = JSON.parse(text) as HFConfig;
  for (const key of ["quantization", "quantization_config"]) {
    if (key in config) {
      throw new InputError(`${path} has "${key}": the checkpoint is already quantized; export MLX from the original float weights`, { path, code: "E_QUANTIZED" });
    }
  }
  let generation: PyValue | undefined;
  try {
    generation = parsePyJson(await readFile(join(dir, "generation_config.json"), "utf8"));
  } catch {
    generation = undefined; // load_config ignores a missing or undecodable generation_config.json
  }
  return { config, pyConfig, generation };
}

/** convert(): dtype = torch_dtype, else text_config.dtype; cast only to the three float types. */
function conversionDtype(config: HFConfig): MLXFloatDtype | undefined {
  let dtype = config["torch_dtype"];
  const text = config["text_config"];
  if ((dtype === undefined || dtype === null) && typeof text === "object" && text !== null) dtype = (text as HFConfig)["dtype"];
  return typeof dtype === "string" && CONVERSION_DTYPES.includes(dtype) ? (dtype as MLXFloatDtype) : undefined;
}

/** Without a cast, a parameter keeps its dtype; stacked tensors of different types promote (mx.stack). */
function promote(safetensorsDtypes: string[]): MLXFloatDtype {
  const names = new Set(safetensorsDtypes);
  const only = names.size === 1 ? [...names][0] : undefined;
  if (only === "BF16") return "bfloat16";
  if (only === "F16") return "float16";
  return "float32";
}

/** The saved arrays, in model.parameters() order: quantized modules hold weight, scales, biases[, bias]. */
function outputTensors(modules: readonly MLXModule[], plan: QuantizationPlan, dtypeOf: (p: MLXParam) => MLXFloatDtype): OutTensor[] {
  const out: OutTensor[] = [];
  for (const m of modules) {
    const q = plan.modules.get(m.path);
    for (const p of m.params) {
      const dtype = DTYPE_NAMES[dtypeOf(p)];
      if (q && p.name === "weight") {
        const lead = p.shape.slice(0, -1);
        const cols = p.shape[p.shape.length - 1]!;
        out.push({ name: `${m.path}.weight`, dtype: "U32", shape: [...lead, (cols * q.bits) / 32], module: m, role: "weight" });
        out.push({ name: `${m.path}.scales`, dtype, shape: [...lead, cols / q.groupSize], module: m, role: "scales" });
        out.push({ name: `${m.path}.biases`, dtype, shape: [...lead, cols / q.groupSize], module: m, role: "biases" });
      } else {
        out.push({ name: `${m.path}.${p.name}`, dtype, shape: p.shape, module: m, role: p.name });
      }
    }
  }
  return out;
}

/** mlx_lm/utils.py make_shards, including its empty first shard when the first array alone is too big. */
export function makeShards<T extends TensorEntry>(tensors: readonly T[], maxBytes: number): T[][] {
  const shards: T[][] = [];
  let shard: T[] = [];
  let size = 0;
  for (const t of tensors) {
    const bytes = entryBytes(t);
    if (size + bytes > maxBytes) {
      shards.push(shard);
      shard = [];
      size = 0;
    }
    shard.push(t);
    size += bytes;
  }
  shards.push(shard);
  return shards;
}

function runBytes(p: MLXParam, sources: ReadonlyMap<string, SafetensorsTensor>): number {
  return p.runs.reduce((s, r) => {
    const t = sources.get(r.tensor)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    return s + (n === 0 ? 0 : ((t.end - t.start) / n) * r.elementCount);
  }, 0);
}

/** metadata.json's record of the importance weighting: which imatrix, how much it changed. */
function importanceInfo(imatrix: ReadonlyMap<string, Float32Array>, label: string, modules: number, stats: WeightedStats): MLXImportanceInfo {
  const pct = (x: number) => Math.round(x * 10000) / 100;
  return {
    imatrix: label,
    ...(imatrix instanceof ImportanceMatrix ? { datasets: imatrix.datasets, chunks: imatrix.chunkCount, entries: imatrix.size } : { entries: imatrix.size }),
    modules,
    groups: stats.groups,
    groups_changed_pct: stats.groups > 0 ? pct(stats.changed / stats.groups) : 0,
    weighted_error_reduction_pct: stats.errorMLX > 0 ? pct(1 - stats.errorWeighted / stats.errorMLX) : 0,
  };
}

async function writeParam(opts: {
  module: MLXModule;
  param: MLXParam;
  quant: { groupSize: number; bits: number } | undefined;
  /** The module's importance vector, when the imatrix has one: weighted quantization. */
  importance: ModuleImportance | undefined;
  stats: WeightedStats;
  dtype: MLXFloatDtype;
  sources: ReadonlyMap<string, SafetensorsTensor>;
  writerOf: Map<string, SafetensorsFileWriter>;
  kernel: AffineKernel | undefined;
}): Promise<void> {
  const { param: p, quant, dtype } = opts;
  const base = `${opts.module.path}.${p.name}`;
  const writer = (name: string) => opts.writerOf.get(name)!;
  const cols = p.shape[p.shape.length - 1]!;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / Math.max(cols, 1)));
  let row = 0; // output row reached
  for (const run of p.runs) {
    if (run.elementCount % cols !== 0) throw new ConversionError(`${base}: a source run of ${run.elementCount} values is not whole rows of ${cols}`);
    const runRows = run.elementCount / cols;
    for (let r = 0; r < runRows; r += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, runRows - r);
      const data = await readTensorF32(opts.sources.get(run.tensor)!, { startElement: run.startElement + r * cols, elementCount: rows * cols });
      if (!quant) {
        await writer(base).write(base, row * cols * dtypeBytes(dtype), encodeDtype(data, dtype));
      } else {
        const args = { data, cols, groupSize: quant.groupSize, bits: quant.bits, dtype, kernel: opts.kernel, name: base, firstRow: row };
        const imp = opts.importance;
        const q = imp ? affineQuantizeWeighted({ ...args, importance: imp.importance, rowsPerSlice: imp.rowsPerSlice }, opts.stats) : affineQuantize(args);
        const groups = cols / quant.groupSize;
        const path = opts.module.path;
        await writer(`${path}.weight`).write(`${path}.weight`, row * ((cols * quant.bits) / 32) * 4, asBytes(q.weight));
        await writer(`${path}.scales`).write(`${path}.scales`, row * groups * dtypeBytes(dtype), asBytes(q.scales));
        await writer(`${path}.biases`).write(`${path}.biases`, row * groups * dtypeBytes(dtype), asBytes(q.biases));
      }
      row += rows;
    }
  }
}

function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** load_config, quantize_model and save_config's edits of config.json. */
export function mlxConfig(pyConfig: PyDict, generation: PyValue | undefined, plan: QuantizationPlan): PyDict {
  const config = new PyDict([...pyConfig.entries]);
  const eos = generation instanceof PyDict ? generation.get("eos_token_id") : undefined;
  if (pyTruthyValue(eos)) config.set("eos_token_id", eos!);
  if (plan.defaults) {
    const q = new PyDict([
      ["group_size", plan.defaults.group_size],
      ["bits", plan.defaults.bits],
      ["mode", plan.defaults.mode],
    ]);
    for (const [path, params] of plan.overrides) q.set(path, toPy(params));
    config.set("quantization", q);
    config.set("quantization_config", q);
  }
  config.delete("_name_or_path");
  config.delete("vision_config");
  return new PyDict([...config.entries].sort(([a], [b]) => comparePyStrings(a, b)));
}

/** tokenizer.save_pretrained's files (copied as they are), then `*.py` and generation_config.json. */
async function supportFiles(src: string): Promise<string[]> {
  const entries = await readdir(src);
  const tokenizer = entries.filter((f) => TOKENIZER_FILES.includes(f) || f.endsWith(".tiktoken"));
  if (!tokenizer.some((f) => ["tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model"].includes(f) || f.endsWith(".tiktoken"))) {
    throw new InputError(`${src} has no tokenizer (tokenizer.json, tokenizer.model, vocab.json or *.tiktoken); mlx_lm.load needs one`, {
      path: src,
      code: "E_TOKENIZER",
    });
  }
  return [...tokenizer, ...entries.filter((f) => f.endsWith(".py") || f === "generation_config.json")];
}

/** create_model_card for a local source: the template's front matter with mlx tags, empty text. */
const MODEL_CARD = "---\nlanguage: en\nlibrary_name: mlx\npipeline_tag: text-generation\ntags:\n- mlx\n---\n";

async function hashFiles(dir: string): Promise<MLXFile[]> {
  const names = (await readdir(dir)).filter((n) => n !== "metadata.json").sort(comparePyStrings);
  const files: MLXFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const h = createHash("sha256");
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
    files.push({ name, sizeBytes: (await stat(path)).size, sha256: h.digest("hex") });
  }
  return files;
}

async function checkpointBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) if (f.endsWith(".safetensors")) total += (await stat(join(dir, f))).size;
  return total;
}

export type { MLXMethod };

/**
 * Fails fast, before any file is written, on what exportMLX would refuse: the precision, the
 * group size, the model type and an already-quantized config.
 */
export function checkMLXRequest(opts: { config: HFConfig; method: string; groupSize?: number; mode?: string }): void {
  const method = parseMLXMethod(opts.method);
  if ((opts.mode ?? "affine") !== "affine") checkAffineParams({ mode: opts.mode, bits: 4, groupSize: 64 });
  if (method.kind !== "float") checkGroupSize(opts.groupSize ?? MLX_DEFAULT_GROUP_SIZE);
  getMLXModel(opts.config);
  for (const key of ["quantization", "quantization_config"]) {
    if (key in opts.config) throw new InputError(`config.json has "${key}": the checkpoint is already quantized; export MLX from the original float weights`, { code: "E_QUANTIZED" });
  }
}
