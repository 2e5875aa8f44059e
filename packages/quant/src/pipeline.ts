import { mkdir, rename, rm, stat, writeFile, readdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import {
  formatParamCount,
  type GGUFFileMetadata,
  type GGUFMetadata,
  type Manifest,
  type ManifestFormat,
  MANIFEST_FILE,
  MANIFEST_SCHEMA_VERSION,
  METADATA_FILE,
  InputError,
  OutputError,
  UsageError,
} from "@llama-pajamas/artifact";
import { getArchitecture, tensorOptionsFor } from "@llama-pajamas/gguf/architectures/index.js";
import type { Architecture, HFConfig, TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { tensorBytes } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { openCheckpointTensors, type SafetensorsTensor } from "@llama-pajamas/gguf/formats/safetensors.js";
import { converterTensorType } from "@llama-pajamas/gguf/float-policy.js";
import { generalMetadata, ggufHeaderKVs } from "@llama-pajamas/gguf/general-metadata.js";
import { imatrixMetadata, readImatrix } from "./quantize/imatrix.js";
// calibrate / validate (issue 6): steps around the one pass, see calibration/convert-steps.ts.
import type { CalibrateOptions } from "./calibration/calibrate.js";
import { type ConvertCalibrationResult, type ConvertValidateOptions, convertWithSteps } from "./calibration/convert-steps.js";
import type { ValidationReport } from "./validation/validate.js";
import { parseMethod, type QuantMethod } from "./quantize/methods.js";
import { QuantizePool } from "./quantize/pool.js";
import { chooseTensorTypes } from "./quantize/recipes.js";
import { type HubOptions, openCheckpoint } from "./source/index.js";
import type { LocalCheckpoint } from "./source/local.js";
import { streamTensors } from "./tensor-stream.js";
import { buildTokenizerKV } from "@llama-pajamas/gguf/tokenizer/index.js";
// MLX export (issue 5): a second pass over the checkpoint into mlx/, see mlx/export.ts.
import { type AffineKernel, type MLXExportResult, MLX_FORMAT_VERSION, checkMLXRequest, exportMLX, mlxManifestEntry, parseFormats, resolvePrecisions } from "./mlx/index.js";
import { PIPELINE_VERSION, RUNTIME_REQUIREMENT, LLAMA_CPP_VERSION } from "./version.js";

/** What to produce. Mirrors the seed's QuantConfig in TypeScript idiom. */
export interface QuantConfig {
  /** Default ["gguf"]. With "mlx", precisions may read "q4_k_m:4bit" (GGUF method : MLX precision). */
  formats?: ("gguf" | "mlx")[];
  /** MLX quantization group size: 32, 64 (default) or 128. */
  mlxGroupSize?: number;
  /** Whose rounding the MLX quantizer reproduces: "metal" (default; mlx_lm.convert on a Mac) or "cpu". */
  mlxKernel?: AffineKernel;
  /** GGUF methods by name: "Q4_K_M", "q8_0", "F16" ... (see list-methods). */
  precisions: string[];
  /** llama.cpp importance matrix (GGUF or legacy .dat), required by IQ2/IQ3 types. */
  imatrixPath?: string;
  /** The imatrix name written to quantize.imatrix.file and metadata.json (default: imatrixPath as given). */
  imatrixLabel?: string;
  /** Compute the importance matrix first, with the engine on an F16 GGUF of the model (calibration/). */
  calibrate?: CalibrateOptions;
  /** Validate the artifact once written (validation/): perplexity and KLD of its first quantized GGUF vs F16. */
  validate?: boolean | ConvertValidateOptions;
  /**
   * The float type quantized tensors pass through first. Quantizing gives the bytes
   * llama_model_quantize gives when run on our GGUF of this type. "auto" takes the
   * checkpoint's own dtype (BF16 for bf16 weights), which loses nothing.
   */
  intermediate?: "auto" | "f32" | "f16" | "bf16";
  threads?: number;
  force?: boolean;
}

export interface ConvertOptions extends QuantConfig {
  model: string;
  output: string;
  modelId?: string;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
  /** For a hub id `org/name[@revision]` model: HF_* environment, download events. */
  hub?: Omit<HubOptions, "signal">;
}

export interface ProgressEvent {
  tensorIndex: number; // 1-based, of tensorCount
  tensorCount: number;
  tensorName: string;
  bytesRead: number;
  bytesTotal: number;
  elapsedMs: number;
}

export interface ConvertedFile {
  format: "gguf";
  method: string;
  path: string;
  sizeBytes: number;
  sha256: string;
  compressionRatio: number;
  tensorTypes: Record<string, number>;
}

export interface ConvertResult {
  outputDir: string;
  manifestPath: string;
  files: ConvertedFile[];
  /** The first GGUF written (the seed's result.gguf_path). */
  ggufPath?: string;
  compressionRatio: number;
  /** The mlx/ directory, when "mlx" was in formats. */
  mlx?: MLXExportResult;
  sourceBytes: number;
  architecture: { type: string; ggufArch: string; family: string; paramsTotal: number; paramsNonEmbedding: number };
  seconds: number;
  /** With calibrate: the importance matrix computed (kept as imatrix.gguf in the artifact). */
  calibration?: ConvertCalibrationResult;
  /** With validate: the figures also written to the manifest's validation block. */
  validation?: ValidationReport;
}

interface OutputPlan {
  method: QuantMethod;
  path: string;
  types: GGMLType[];
  writer: GGUFWriter;
  tensorTypes: Record<string, number>;
}

const FLOAT_TYPES: Record<string, GGMLType> = { F32: GGMLType.F32, F16: GGMLType.F16, BF16: GGMLType.BF16 };

/**
 * HF checkpoint -> GGUF files in one pass: each source tensor is read once, mapped, and
 * written to every requested precision. Outputs go to a temporary directory that replaces
 * the output directory only when everything is complete.
 */
export async function convert(opts: ConvertOptions): Promise<ConvertResult> {
  if (opts.calibrate || opts.validate) return convertWithSteps(opts, convertOnce);
  return convertOnce(opts);
}

async function convertOnce(opts: ConvertOptions): Promise<ConvertResult> {
  const started = Date.now();
  const formats = parseFormats(opts.formats ?? ["gguf"]);
  if (opts.precisions.length === 0 && !formats.includes("mlx")) throw new UsageError("no precision given; pass --precision, e.g. q4_k_m,q8_0");
  const wanted = resolvePrecisions(formats, opts.precisions);
  const methods = dedupe(wanted.gguf.map((p) => parsePrecision(p)));
  const ckpt = await openCheckpoint(opts.model, { ...opts.hub, modelId: opts.modelId, signal: opts.signal });
  const outputDir = resolve(opts.output);
  await checkOutput(outputDir, opts.force === true);

  const arch = getArchitecture(ckpt.config);
  if (wanted.mlx) checkMLXRequest({ config: ckpt.config, method: wanted.mlx, groupSize: opts.mlxGroupSize }); // fail before the GGUF pass
  const sources = await openCheckpointTensors(ckpt.dir);
  const intermediate = intermediateType(opts.intermediate ?? "auto", sources);
  const needsImatrix = methods.filter((m) => m.requiresImatrix);
  if (needsImatrix.length > 0 && !opts.imatrixPath) {
    throw new UsageError(
      `${needsImatrix.map((m) => m.name).join(", ")} need an importance matrix; pass --imatrix FILE ` +
        `(a llama.cpp imatrix, .gguf or legacy .dat)`,
    );
  }
  const imatrix = opts.imatrixPath ? await readImatrix(opts.imatrixPath) : undefined;

  const tokenizerKV = methods.length === 0 ? [] : await buildTokenizerKV({
    dir: ckpt.dir,
    config: ckpt.config,
    ggufArch: arch.ggufArch,
    modelType: String(ckpt.config.model_type),
  });
  const plans = arch.tensors(ckpt.config, sources, tensorOptionsFor(ckpt.dir, tokenizerKV));
  const summary = arch.summary(ckpt.config);
  const params = countParams(plans);
  const archKV = arch.metadata(ckpt.config);
  const generalKV = generalMetadata({
    ggufArch: arch.ggufArch,
    dirName: ckpt.name,
    generationConfig: ckpt.generationConfig,
    paramsTotal: params.total,
  });

  // The intermediate GGUF's per-tensor types: what llama_model_quantize would read.
  const intermediateTypes = plans.map((p) => converterTensorType(p, intermediate));
  const tmpDir = `${outputDir}.tmp-${process.pid}`;
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(methods.length > 0 ? join(tmpDir, "gguf") : tmpDir, { recursive: true });

  const stem = ckpt.name.toLowerCase();
  const outputs: OutputPlan[] = [];
  const files: ConvertedFile[] = [];
  let mlx: MLXExportResult | undefined;
  const pool = new QuantizePool({ threads: opts.threads });
  try {
    for (const method of methods) {
      const types = tensorTypesFor(method, plans, intermediateTypes, arch, ckpt.config, imatrix !== undefined);
      const file = `${stem}-${method.name.toLowerCase()}.gguf`;
      const writer = new GGUFWriter();
      const kv = ggufHeaderKVs({ general: generalKV, arch: archKV, fileType: method.ftype, tokenizer: tokenizerKV });
      if (imatrix && method.usesImatrix) kv.push(...imatrixMetadata(opts.imatrixLabel ?? opts.imatrixPath!, imatrix));
      for (const e of kv) writer.addKV(e);
      const tensorTypes: Record<string, number> = {};
      plans.forEach((p, i) => {
        const type = types[i]!;
        writer.addTensorInfo({ name: p.name, shape: p.shape, type, byteLength: tensorBytes(type, [...p.shape].reverse()) });
        const tn = GGMLType[type] ?? String(type);
        tensorTypes[tn] = (tensorTypes[tn] ?? 0) + 1;
      });
      const path = join(tmpDir, "gguf", file);
      await writer.open(path);
      await writer.writeHeader();
      outputs.push({ method, path, types, writer, tensorTypes });
    }

    const bytesTotal = plans.reduce((s, p) => s + sourceBytes(p, sources), 0);
    await streamTensors({
      plans,
      sources,
      outputs,
      via: intermediateTypes,
      imatrix,
      pool,
      signal: opts.signal,
      onTensor: (i, bytesRead) =>
        opts.onProgress?.({
          tensorIndex: i + 1,
          tensorCount: plans.length,
          tensorName: plans[i]!.name,
          bytesRead,
          bytesTotal,
          elapsedMs: Date.now() - started,
        }),
    });
    for (const out of outputs) await out.writer.finish();

    for (const out of outputs) {
      const sizeBytes = (await stat(out.path)).size;
      files.push({
        format: "gguf",
        method: out.method.name,
        path: join(outputDir, "gguf", basename(out.path)),
        sizeBytes,
        sha256: out.writer.sha256!, // hashed while writing
        compressionRatio: ckpt.weightBytes / sizeBytes,
        tensorTypes: out.tensorTypes,
      });
    }
    if (wanted.mlx) {
      const exported = await exportMLX({
        model: ckpt.dir,
        output: join(tmpDir, "mlx"),
        method: wanted.mlx,
        groupSize: opts.mlxGroupSize,
        kernel: opts.mlxKernel,
        // the imatrix (--imatrix or --calibrate's) weights each group's scale and bias
        ...(imatrix ? { imatrix, imatrixLabel: basename(opts.imatrixLabel ?? opts.imatrixPath!) } : {}),
        sourceBytes: ckpt.weightBytes,
        onProgress: opts.onProgress && ((e) => opts.onProgress!({ ...e, tensorName: `mlx/${e.tensorName}` })),
        signal: opts.signal,
      });
      mlx = { ...exported, dir: join(outputDir, "mlx") };
    }
    // The manifest and metadata go to the temp dir too: a failure here must not leave it behind.
    const manifest = buildManifest({ ckpt, arch, family: summary.family, params, files, mlx, outputDir });
    if (files.length > 0) await writeFile(join(tmpDir, "gguf", METADATA_FILE), JSON.stringify(ggufMetadata(files, outputs, opts), null, 2) + "\n");
    await writeFile(join(tmpDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    await replaceDir(tmpDir, outputDir);
  } catch (e) {
    for (const out of outputs) await out.writer.abort().catch(() => undefined);
    await rm(tmpDir, { recursive: true, force: true });
    throw asOutputError(e, outputDir);
  } finally {
    await pool.close();
  }

  return {
    outputDir,
    manifestPath: join(outputDir, MANIFEST_FILE),
    files,
    ggufPath: files[0]?.path,
    compressionRatio: files[0]?.compressionRatio ?? mlx!.compressionRatio,
    mlx,
    sourceBytes: ckpt.weightBytes,
    architecture: {
      type: String(ckpt.config.model_type),
      ggufArch: arch.ggufArch,
      family: summary.family,
      paramsTotal: params.total,
      paramsNonEmbedding: params.nonEmbedding,
    },
    seconds: (Date.now() - started) / 1000,
  };
}

/** An unknown precision is bad input (exit 1), with the valid names listed. */
function parsePrecision(name: string): QuantMethod {
  try {
    return parseMethod(name);
  } catch (e) {
    if (e instanceof UsageError) throw new InputError(e.message, { code: "E_PRECISION" });
    throw e;
  }
}

function dedupe(methods: QuantMethod[]): QuantMethod[] {
  const seen = new Set<string>();
  return methods.filter((m) => (seen.has(m.name) ? false : (seen.add(m.name), true)));
}

/** The checkpoint's own float type unless one is asked for; mixed checkpoints go F16 like llama.cpp's default. */
function intermediateType(
  want: "auto" | "f32" | "f16" | "bf16",
  sources: ReadonlyMap<string, SafetensorsTensor>,
): GGMLType.F32 | GGMLType.F16 | GGMLType.BF16 {
  if (want === "f32") return GGMLType.F32;
  if (want === "f16") return GGMLType.F16;
  if (want === "bf16") return GGMLType.BF16;
  const dtypes = new Set([...sources.values()].filter((t) => t.shape.length >= 2).map((t) => t.dtype));
  if (dtypes.size === 1 && dtypes.has("BF16")) return GGMLType.BF16;
  if (dtypes.size === 1 && dtypes.has("F32")) return GGMLType.F32;
  return GGMLType.F16;
}

function tensorTypesFor(
  method: QuantMethod,
  plans: TensorPlan[],
  intermediateTypes: GGMLType[],
  arch: Architecture,
  config: HFConfig,
  haveImatrix: boolean,
): GGMLType[] {
  const float = FLOAT_TYPES[method.name];
  if (float !== undefined) return plans.map((p) => converterTensorType(p, float as GGMLType.F32));
  return chooseTensorTypes({
    ftype: method.ftype as LlamaFtype,
    tensors: plans.map((p, i) => ({ name: p.name, ne: [...p.shape].reverse(), type: intermediateTypes[i]! })),
    model: { ...arch.summary(config), arch: arch.ggufArch },
    haveImatrix,
  });
}

function sourceBytes(plan: TensorPlan, sources: ReadonlyMap<string, SafetensorsTensor>): number {
  return plan.sources.reduce((s, n) => {
    const t = sources.get(n);
    return s + (t ? t.end - t.start : 0);
  }, 0);
}

function countParams(plans: TensorPlan[]): { total: number; nonEmbedding: number } {
  let total = 0;
  let embedding = 0;
  for (const p of plans) {
    if (p.generate) continue; // rope_freqs and similar are not parameters
    const n = p.shape.reduce((a, b) => a * b, 1);
    total += n;
    if (p.name === "token_embd.weight" || p.name === "output.weight") embedding += n;
  }
  return { total, nonEmbedding: total - embedding };
}

async function checkOutput(outputDir: string, force: boolean): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(outputDir);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === "ENOTDIR" && !force) {
      throw new OutputError(`output ${outputDir} exists and is not a directory; pass --force to replace it, or choose another --output`, {
        path: outputDir,
        code: "E_EXISTS",
      });
    }
    if (errno !== "ENOENT" && errno !== "ENOTDIR") {
      throw new OutputError(`cannot read output directory ${outputDir}: ${(e as Error).message}`, { path: outputDir, cause: e });
    }
    try {
      await mkdir(dirname(outputDir), { recursive: true });
    } catch (e) {
      throw new OutputError(`cannot create the parent of ${outputDir}: ${(e as Error).message}`, { path: outputDir });
    }
    return;
  }
  if (entries.length > 0 && !force) {
    throw new OutputError(`output directory ${outputDir} already exists and is not empty; pass --force to replace it`, {
      path: outputDir,
      code: "E_EXISTS",
    });
  }
}

/** Swaps the finished temp dir into place; an existing output is removed only after. */
async function replaceDir(tmpDir: string, outputDir: string): Promise<void> {
  const old = `${outputDir}.old-${process.pid}`;
  let hadOld = false;
  try {
    await rename(outputDir, old);
    hadOld = true;
  } catch {
    // no previous output
  }
  try {
    await rename(tmpDir, outputDir);
  } catch (e) {
    if (hadOld) await rename(old, outputDir).catch(() => undefined);
    throw e;
  }
  if (hadOld) await rm(old, { recursive: true, force: true });
}

/** Out-of-space errors, raw or wrapped by the writer, become one message that says what to do. */
function asOutputError(e: unknown, outputDir: string): unknown {
  const errno = errnoCode(e);
  const detail = (e as Error)?.message ?? String(e);
  if (errno === "ENOSPC" || errno === "EDQUOT") {
    return new OutputError(`disk full while writing ${outputDir} (${detail}); free space and run again (nothing was kept)`, {
      path: outputDir,
      code: "E_DISK_FULL",
      cause: e,
    });
  }
  if (errno === "EFBIG") {
    return new OutputError(
      `file too large while writing ${outputDir} (${detail}); raise the file-size limit (ulimit -f) or write to another ` +
        `file system, then run again (nothing was kept)`,
      { path: outputDir, code: "E_DISK_FULL", cause: e },
    );
  }
  return e;
}

/** The errno code of an error or of the first cause that has one. */
function errnoCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur instanceof Error && depth < 8; cur = cur.cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) return code; // not our E_* codes
  }
  return undefined;
}

function buildManifest(opts: {
  ckpt: LocalCheckpoint;
  arch: Architecture;
  family: "dense_decoder" | "moe";
  params: { total: number; nonEmbedding: number };
  files: ConvertedFile[];
  mlx?: MLXExportResult;
  outputDir: string;
}): Manifest {
  return {
    schema_version: MANIFEST_SCHEMA_VERSION,
    model_id: opts.ckpt.modelId,
    quantized_at: new Date().toISOString(),
    pipeline_version: PIPELINE_VERSION,
    architecture: {
      family: opts.family,
      type: String(opts.ckpt.config.model_type),
      params_total: formatParamCount(opts.params.total),
      params_non_embedding: formatParamCount(opts.params.nonEmbedding),
      params_total_count: opts.params.total,
      params_non_embedding_count: opts.params.nonEmbedding,
    },
    formats: opts.files.map((f): ManifestFormat => ({
      type: f.format,
      path: `gguf/${basename(f.path)}`,
      method: f.method,
      size_mb: Math.round((f.sizeBytes / 2 ** 20) * 100) / 100,
      size_bytes: f.sizeBytes,
      compression: `${f.compressionRatio.toFixed(1)}x`,
      sha256: f.sha256,
    })).concat(opts.mlx ? [mlxManifestEntry(opts.mlx)] : []),
    runtime_requirements: { "llama-pajamas-run": RUNTIME_REQUIREMENT },
    format_versions: { ...(opts.files.length > 0 ? { gguf: "3" } : {}), ...(opts.mlx ? { mlx: MLX_FORMAT_VERSION } : {}) },
  };
}

function ggufMetadata(files: ConvertedFile[], outputs: OutputPlan[], opts: QuantConfig): GGUFMetadata {
  return {
    format: "gguf",
    quantization_method: files[0]!.method,
    gguf_version: 3,
    llama_cpp_version: LLAMA_CPP_VERSION,
    compatible_backends: ["cpu", "cuda", "vulkan", "metal"],
    runtime_requirements: `llama-pajamas-run ${RUNTIME_REQUIREMENT}`,
    files: files.map((f, i): GGUFFileMetadata => {
      const m: GGUFFileMetadata = {
        file: basename(f.path),
        quantization_method: f.method,
        file_type: outputs[i]!.method.ftype,
        size_bytes: f.sizeBytes,
        sha256: f.sha256,
        tensor_types: f.tensorTypes,
      };
      if (opts.imatrixPath && outputs[i]!.method.usesImatrix) m.imatrix = basename(opts.imatrixLabel ?? opts.imatrixPath);
      return m;
    }),
  };
}
