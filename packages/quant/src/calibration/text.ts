// Where calibration text comes from: the default text shipped in the package (Python
// documentation, PSF license: default-text.ts), a local file, or a named dataset read through
// the Hugging Face dataset viewer (source/datasets.ts), as much of it as the windows need.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { InputError, UsageError } from "@llama-pajamas/artifact";
import { defaultCalibrationText } from "./default-text.js";
import { type DatasetRow, type DatasetRowsOptions, type DatasetSplitId, DatasetRows, ROWS_PER_PAGE } from "../source/datasets.js";

export const CALIBRATION_DATASETS = ["wikitext", "c4"] as const;
export type CalibrationDataset = (typeof CALIBRATION_DATASETS)[number];

interface DatasetSource extends DatasetSplitId {
  /** A row's share of the text. */
  rowText(row: DatasetRow): string | undefined;
}

/**
 * wikitext: the train split of wikitext-2-raw-v1, the text llama.cpp users give llama-imatrix
 * (wiki.train.raw). Its rows are the file's lines with their "\n"; blank lines (" \n" in the
 * file) are stored as "", and are put back. c4: English validation documents, blank-line separated.
 */
export const CALIBRATION_DATASET_SOURCES: Record<CalibrationDataset, DatasetSource> = {
  wikitext: {
    dataset: "Salesforce/wikitext",
    config: "wikitext-2-raw-v1",
    split: "train",
    rowText: (row) => (typeof row.text !== "string" ? undefined : row.text === "" ? " \n" : row.text),
  },
  c4: {
    dataset: "allenai/c4",
    config: "en",
    split: "validation",
    rowText: (row) => (typeof row.text !== "string" ? undefined : `${row.text}\n\n`),
  },
};

/** Bytes of calibration text per token asked for before the first tokenization (English, common vocabularies). */
export const CALIBRATION_BYTES_PER_TOKEN = 4;
/** Extra text fetched beyond the estimate. */
export const CALIBRATION_MARGIN = 1.15;

export interface CalibrationTextOptions {
  /** A UTF-8 text file (llama-imatrix -f). */
  file?: string;
  /** wikitext or c4 through the Hugging Face hub. */
  dataset?: string;
  /** For a dataset: read rows until the text holds at least this many bytes (default: 512 KiB). */
  minBytes?: number;
  /** For a dataset: HF_* environment, cache folder, rows server. */
  hub?: DatasetRowsOptions;
}

/** What the calibration text was, for imatrix.datasets, metadata.json and reports. */
export interface CalibrationTextInfo {
  source: "builtin" | "file" | "dataset";
  /** The file as given (source "file"). */
  path?: string;
  /** Dataset, config and split, and the rows [0, rows) used (source "dataset"). */
  dataset?: string;
  config?: string;
  split?: string;
  rows?: number;
  /** Formatted as user turns of this model's chat template before tokenization. */
  chatTemplate?: boolean;
  bytes: number;
  sha256: string;
}

export interface CalibrationText {
  text: Uint8Array;
  /** Recorded in the imatrix as imatrix.datasets (llama-imatrix records the -f path as given). */
  name: string;
  info: CalibrationTextInfo;
  /** A dataset with no rows left beyond those used. */
  exhausted?: boolean;
  /** HTTP requests made for it (0 when the cache had everything). */
  requests?: number;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export function parseCalibrationDataset(name: string): CalibrationDataset {
  if (!(CALIBRATION_DATASETS as readonly string[]).includes(name)) {
    throw new UsageError(`unknown calibration dataset "${name}"; datasets: ${CALIBRATION_DATASETS.join(", ")}`);
  }
  return name as CalibrationDataset;
}

export async function calibrationText(opts: CalibrationTextOptions = {}): Promise<CalibrationText> {
  if (opts.file !== undefined && opts.dataset !== undefined) {
    throw new UsageError("give either a calibration file or a calibration dataset, not both");
  }
  if (opts.dataset !== undefined) {
    return datasetText(parseCalibrationDataset(opts.dataset), opts.minBytes ?? 512 * 1024, opts.hub ?? {});
  }
  if (opts.file !== undefined) {
    let text: Buffer;
    try {
      text = await readFile(opts.file);
    } catch (e) {
      throw new InputError(`cannot read calibration file ${opts.file}: ${(e as Error).message}`, { path: opts.file, cause: e });
    }
    return { text, name: opts.file, info: { source: "file", path: opts.file, bytes: text.byteLength, sha256: sha256(text) } };
  }
  const text = defaultCalibrationText();
  return {
    text,
    name: "llama-pajamas built-in calibration text (Python documentation)",
    info: { source: "builtin", bytes: text.byteLength, sha256: sha256(text) },
  };
}

/** Rows from the start of the split until the text holds `minBytes`. */
async function datasetText(name: CalibrationDataset, minBytes: number, hub: DatasetRowsOptions): Promise<CalibrationText> {
  const src = CALIBRATION_DATASET_SOURCES[name];
  const rows = new DatasetRows(src, {
    ...hub,
    fallback: hub.fallback ?? "pass --calibration-file FILE (your own text), or leave out --calibration-dataset for the built-in text",
  });
  const total = await rows.total();
  const pieces: Buffer[] = [];
  let bytes = 0;
  let used = 0;
  while (bytes < minBytes && used < total) {
    // whole pages the bytes still missing fill at the rate seen so far (up to four at once), else one
    const perRow = used > 0 ? bytes / used : Infinity;
    const pages = Math.min(4, Math.max(1, Math.floor((minBytes - bytes) / perRow / ROWS_PER_PAGE)));
    const batch = await rows.rows(used, Math.min(total - used, pages * ROWS_PER_PAGE - (used % ROWS_PER_PAGE)));
    for (const row of batch) {
      if (bytes >= minBytes) break;
      const t = src.rowText(row);
      if (t === undefined) {
        throw new InputError(`row ${used} of ${src.dataset} (${src.config}, ${src.split}) has no "text" string`, { code: "E_DATASET_RESPONSE" });
      }
      const b = Buffer.from(t, "utf8");
      pieces.push(b);
      bytes += b.byteLength;
      used++;
    }
  }
  const text = Buffer.concat(pieces);
  return {
    text,
    name: `${src.dataset} ${src.config} ${src.split}[0:${used}]`,
    info: { source: "dataset", dataset: src.dataset, config: src.config, split: src.split, rows: used, bytes: text.byteLength, sha256: sha256(text) },
    exhausted: used >= total,
    requests: rows.requests,
  };
}
