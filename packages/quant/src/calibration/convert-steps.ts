// The steps `convert --calibrate` and `convert --validate` add around the pipeline's one pass:
// an importance matrix computed first (calibrate.ts) and used for every GGUF type and for the
// MLX export's scales and biases (mlx/weighted.ts), then kept in the artifact as imatrix.gguf; and, after the artifact is written, validate() of its first
// quantized GGUF against the F16 model, which fills the manifest's validation block.

import { copyFile, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { METADATA_FILE, UsageError } from "@llama-pajamas/artifact";
import { IMATRIX_FILE, calibrateCheckpoint, type Calibration } from "./calibrate.js";
import type { CalibrationTextInfo } from "./text.js";
import type { ConvertOptions, ConvertResult } from "../pipeline.js";
import { type ValidateOptions, validate } from "../validation/validate.js";

/** What `convert --validate` measures (validate()'s options less the two models). */
export type ConvertValidateOptions = Omit<ValidateOptions, "original" | "quantized" | "signal" | "hub">;

export interface ConvertCalibrationResult {
  /** imatrix.gguf inside the artifact. */
  imatrixPath: string;
  chunks: number;
  tokens: number;
  /** Perplexity of the calibration text under the F16 model. */
  perplexity: number;
  unroutedExperts: { tensor: string; experts: number[] }[];
  seconds: number;
  /** The calibration text (also in gguf/metadata.json's `calibration` block). */
  text: CalibrationTextInfo;
}

const FLOAT = new Set(["F16", "BF16", "F32"]);

export async function convertWithSteps(
  opts: ConvertOptions,
  convertOnce: (o: ConvertOptions) => Promise<ConvertResult>,
): Promise<ConvertResult> {
  if (opts.calibrate && opts.imatrixPath) throw new UsageError("--calibrate computes the importance matrix itself; drop --imatrix, or drop --calibrate");
  const base: ConvertOptions = { ...opts, calibrate: undefined, validate: undefined };
  const f16Of = async (model: string, output: string) =>
    (await convertOnce({ model, output, precisions: ["F16"], force: true, signal: opts.signal, hub: opts.hub, modelId: opts.modelId })).files[0]!.path;
  let cal: Calibration | undefined;
  try {
    if (opts.calibrate) {
      cal = await calibrateCheckpoint({
        model: opts.model,
        calibrate: { ...opts.calibrate, threads: opts.calibrate.threads ?? opts.threads },
        convertF16: f16Of,
        signal: opts.signal,
        hub: opts.hub && { env: opts.hub.env, settings: opts.hub.settings, retryDelayMs: opts.hub.retryDelayMs },
      });
    }
    const result = await convertOnce(
      cal ? { ...base, imatrixPath: cal.imatrixPath, imatrixLabel: IMATRIX_FILE } : base,
    );
    if (cal) {
      const kept = join(result.outputDir, IMATRIX_FILE);
      await copyFile(cal.imatrixPath, kept);
      const r = cal.result;
      result.calibration = {
        imatrixPath: kept,
        chunks: r.chunkCount,
        tokens: r.tokens,
        perplexity: r.perplexity,
        unroutedExperts: r.unroutedExperts,
        seconds: r.seconds,
        text: cal.text.info,
      };
      for (const format of ["gguf", "mlx"]) await recordCalibration(join(result.outputDir, format, METADATA_FILE), cal);
    }
    if (opts.validate) {
      const v = typeof opts.validate === "object" ? opts.validate : {};
      // the F16 the imatrix was computed on, else the artifact's own float GGUF, else a fresh F16
      const original = cal?.f16Path ?? (result.files.some((f) => FLOAT.has(f.method)) ? result.outputDir : opts.model);
      result.validation = await validate({
        threads: opts.threads,
        ...(cal ? { originalLabel: `${opts.model}, F16 GGUF made for calibration` } : {}),
        ...v,
        original,
        quantized: result.outputDir,
        signal: opts.signal,
        hub: opts.hub,
      });
    }
    return result;
  } finally {
    await cal?.cleanup();
  }
}

/**
 * gguf/metadata.json and mlx/metadata.json get a `calibration` block: the imatrix file, its windows, and the text
 * that went through the model (dataset, config, split and rows, or the file; bytes and sha256),
 * so the artifact says what it was calibrated on. A format not written has no metadata.json: nothing to do.
 */
async function recordCalibration(metadataPath: string, cal: Calibration): Promise<void> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(metadataPath, "utf8")) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  const t = cal.text.info;
  raw.calibration = {
    imatrix: IMATRIX_FILE,
    chunks: cal.result.chunkCount,
    chunk_size: cal.result.chunkSize,
    tokens: cal.result.tokens,
    text: {
      source: t.source,
      name: cal.text.name,
      ...(t.path !== undefined ? { path: t.path } : {}),
      ...(t.dataset !== undefined ? { dataset: t.dataset, config: t.config, split: t.split, rows: t.rows } : {}),
      ...(t.chatTemplate ? { chat_template: true } : {}),
      bytes: t.bytes,
      sha256: t.sha256,
    },
  };
  const tmp = `${metadataPath}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(raw, null, 2) + "\n");
  await rename(tmp, metadataPath);
}
