// `convert --calibrate`: an importance matrix for a checkpoint, computed once before the
// quantization pass. The checkpoint is converted to an F16 GGUF in a temporary directory
// (llama-imatrix also runs on the F16 GGUF), the calibration text goes through it with the
// engine, and the matrix is written in llama.cpp's imatrix GGUF format for the pipeline, which
// then quantizes every GGUF type with it (the IQ types cannot do without).

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ImatrixResult, computeImatrix } from "./imatrix.js";
import { writeImatrixGGUF } from "./imatrix-file.js";
import { calibrationText } from "./text.js";

/** The name of the importance matrix inside an artifact, and in quantize.imatrix.file. */
export const IMATRIX_FILE = "imatrix.gguf";

export interface CalibrateOptions {
  /** Calibration text file (default: the built-in text). */
  file?: string;
  /** wikitext | c4 through the hub. */
  dataset?: string;
  /** Windows of text (llama-imatrix --chunks; default 128). */
  samples?: number;
  /** Tokens per window (llama-imatrix -c; default 512). */
  ctx?: number;
  batch?: number;
  threads?: number;
  /** Also collect output.weight (llama-imatrix --process-output). */
  processOutput?: boolean;
}

export const DEFAULT_CALIBRATION_SAMPLES = 128;

export interface Calibration {
  /** The imatrix GGUF (in `dir`). */
  imatrixPath: string;
  /** The F16 GGUF it was computed on (in `dir`; validation reuses it). */
  f16Path: string;
  result: ImatrixResult;
  /** Temporary directory holding both; remove it when done. */
  dir: string;
  cleanup: () => Promise<void>;
}

export async function calibrateCheckpoint(opts: {
  model: string;
  calibrate: CalibrateOptions;
  /** Converts the checkpoint to an F16 GGUF under `output`, returning the file (the pipeline's convert). */
  convertF16: (model: string, output: string) => Promise<string>;
  signal?: AbortSignal;
  onProgress?: (e: { stage: "f16" | "imatrix"; chunk?: number; chunks?: number }) => void;
}): Promise<Calibration> {
  const text = await calibrationText({ file: opts.calibrate.file, dataset: opts.calibrate.dataset });
  const dir = await mkdtemp(join(tmpdir(), "llama-pajamas-calibrate-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    opts.onProgress?.({ stage: "f16" });
    const f16Path = await opts.convertF16(opts.model, join(dir, "f16"));
    const result = await computeImatrix({
      model: f16Path,
      text: text.text,
      dataset: text.name,
      ctx: opts.calibrate.ctx,
      chunks: opts.calibrate.samples ?? DEFAULT_CALIBRATION_SAMPLES,
      batch: opts.calibrate.batch,
      threads: opts.calibrate.threads,
      processOutput: opts.calibrate.processOutput,
      signal: opts.signal,
      onProgress: opts.onProgress && ((e) => opts.onProgress!({ stage: "imatrix", chunk: e.chunk, chunks: e.chunks })),
    });
    const imatrixPath = join(dir, IMATRIX_FILE);
    await writeImatrixGGUF(imatrixPath, result);
    return { imatrixPath, f16Path, result, dir, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
