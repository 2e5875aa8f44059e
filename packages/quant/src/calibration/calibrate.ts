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
import { CALIBRATION_BYTES_PER_TOKEN, CALIBRATION_MARGIN, type CalibrationText, calibrationText } from "./text.js";
import { InputError } from "@llama-pajamas/artifact";
import { chatFormattedText } from "./chat-format.js";
import { EngineModel } from "../quantize/native.js";
import type { DatasetRowsOptions } from "../source/datasets.js";
import { DEFAULT_CTX } from "../validation/chunks.js";

/** The name of the importance matrix inside an artifact, and in quantize.imatrix.file. */
export const IMATRIX_FILE = "imatrix.gguf";

export interface CalibrateOptions {
  /** Calibration text file (default: the built-in text). */
  file?: string;
  /** wikitext | c4 through the hub (as much as samples x ctx tokens need, cached). */
  dataset?: string;
  /** Windows of text (llama-imatrix --chunks; default 128). */
  samples?: number;
  /** Tokens per window (llama-imatrix -c; default 512). */
  ctx?: number;
  batch?: number;
  threads?: number;
  /** Also collect output.weight (llama-imatrix --process-output). */
  processOutput?: boolean;
  /** Put the text through the model's chat template first, as user turns (chat-format.ts). */
  chatTemplate?: boolean;
}

export const DEFAULT_CALIBRATION_SAMPLES = 128;
/** Top-ups of a dataset's text when the first part tokenized short of samples x ctx. */
const MAX_TEXT_ROUNDS = 4;

export interface Calibration {
  /** The imatrix GGUF (in `dir`). */
  imatrixPath: string;
  /** The F16 GGUF it was computed on (in `dir`; validation reuses it). */
  f16Path: string;
  result: ImatrixResult;
  /** The calibration text that went through the model. */
  text: CalibrationText;
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
  /** For a calibration dataset: HF_* environment, cache folder, rows server. */
  hub?: DatasetRowsOptions;
  onProgress?: (e: { stage: "f16" | "imatrix"; chunk?: number; chunks?: number }) => void;
}): Promise<Calibration> {
  const c = opts.calibrate;
  const samples = c.samples ?? DEFAULT_CALIBRATION_SAMPLES;
  const neededTokens = samples * (c.ctx ?? DEFAULT_CTX);
  const hub = { ...opts.hub, signal: opts.signal };
  // read before the F16 conversion: a dataset that cannot be had fails the run at once
  let text = await calibrationText({
    file: c.file,
    dataset: c.dataset,
    minBytes: Math.ceil(neededTokens * CALIBRATION_BYTES_PER_TOKEN * CALIBRATION_MARGIN),
    hub,
  });
  const dir = await mkdtemp(join(tmpdir(), "llama-pajamas-calibrate-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  let model: EngineModel | undefined;
  try {
    opts.onProgress?.({ stage: "f16" });
    const f16Path = await opts.convertF16(opts.model, join(dir, "f16"));
    model = EngineModel.load(f16Path);
    const m = model;
    const format = (t: CalibrationText): CalibrationText => {
      if (!c.chatTemplate) return t;
      const template = m.info.chatTemplate;
      if (!template) {
        throw new InputError(`${opts.model} has no chat template (tokenizer.chat_template); drop --calibration-chat-template`, { code: "E_TEMPLATE" });
      }
      return chatFormattedText(t, { template, eosToken: m.piece(m.info.eos) });
    };
    let used = format(text);
    // a dataset's text was sized by a bytes-per-token guess: read more rows while it tokenizes short
    for (let round = 1; c.dataset !== undefined && round < MAX_TEXT_ROUNDS && !text.exhausted; round++) {
      const tokens = m.tokenize(used.text, { addSpecial: true, parseSpecial: c.chatTemplate === true }).length;
      if (tokens >= neededTokens) break;
      const minBytes = Math.ceil(((text.text.byteLength * neededTokens) / Math.max(tokens, 1)) * CALIBRATION_MARGIN);
      const more = await calibrationText({ dataset: c.dataset, minBytes, hub });
      text = { ...more, requests: (text.requests ?? 0) + (more.requests ?? 0) };
      used = format(text);
    }
    const result = await computeImatrix({
      model,
      text: used.text,
      dataset: used.name,
      // the template's special tokens are tokens, as llama-imatrix --parse-special reads them
      parseSpecial: c.chatTemplate === true,
      ctx: c.ctx,
      chunks: samples,
      batch: c.batch,
      threads: c.threads,
      processOutput: c.processOutput,
      signal: opts.signal,
      onProgress: opts.onProgress && ((e) => opts.onProgress!({ stage: "imatrix", chunk: e.chunk, chunks: e.chunks })),
    });
    const imatrixPath = join(dir, IMATRIX_FILE);
    await writeImatrixGGUF(imatrixPath, result);
    return { imatrixPath, f16Path, result, text: used, dir, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  } finally {
    model?.free();
  }
}
