// Where calibration text comes from: the default text shipped in the package (Python
// documentation, PSF license: default-text.ts), a local file, or a named dataset.

import { readFile } from "node:fs/promises";
import { InputError, UsageError } from "@llama-pajamas/artifact";
import { defaultCalibrationText } from "./default-text.js";

export const CALIBRATION_DATASETS = ["wikitext", "c4"] as const;
export type CalibrationDataset = (typeof CALIBRATION_DATASETS)[number];

export interface CalibrationTextOptions {
  /** A UTF-8 text file (llama-imatrix -f). */
  file?: string;
  /** wikitext or c4 through the Hugging Face hub. */
  dataset?: string;
}

export interface CalibrationText {
  text: Uint8Array;
  /** Recorded in the imatrix as imatrix.datasets (llama-imatrix records the -f path as given). */
  name: string;
}

export async function calibrationText(opts: CalibrationTextOptions = {}): Promise<CalibrationText> {
  if (opts.file !== undefined && opts.dataset !== undefined) {
    throw new UsageError("give either a calibration file or a calibration dataset, not both");
  }
  if (opts.dataset !== undefined) {
    if (!(CALIBRATION_DATASETS as readonly string[]).includes(opts.dataset)) {
      throw new UsageError(`unknown calibration dataset "${opts.dataset}"; datasets: ${CALIBRATION_DATASETS.join(", ")}`);
    }
    // the hub client reads model repos only; datasets (parquet) are not fetched yet
    throw new InputError(
      `calibration dataset "${opts.dataset}" needs the Hugging Face dataset download, which this version does not have; ` +
        `save the text locally and pass --calibration-file, or use the built-in calibration text`,
      { code: "E_CALIBRATION_DATASET" },
    );
  }
  if (opts.file !== undefined) {
    try {
      return { text: await readFile(opts.file), name: opts.file };
    } catch (e) {
      throw new InputError(`cannot read calibration file ${opts.file}: ${(e as Error).message}`, { path: opts.file, cause: e });
    }
  }
  return { text: defaultCalibrationText(), name: "llama-pajamas built-in calibration text (Python documentation)" };
}
