// Where multiple-choice questions come from: the built-in set (mmlu-builtin.ts), a local
// JSONL/CSV file (multiple-choice.ts), or a dataset on the Hugging Face hub in cais/mmlu's
// layout ({question, subject, choices[4], answer 0-3}) read through the dataset viewer and
// cached (source/datasets.ts). A limit takes questions spread evenly over the set: cais/mmlu's
// `all` config is sorted by subject, so every subject keeps its share, and only the pages
// holding the chosen rows are fetched.

import { stat } from "node:fs/promises";
import { InputError, UsageError } from "@llama-pajamas/artifact";
import { BUILTIN_MMLU } from "./mmlu-builtin.js";
import { type MultipleChoiceQuestion, loadMultipleChoice, multipleChoiceFromRecord, selectQuestions } from "./multiple-choice.js";
import { type DatasetRowsOptions, type DatasetSplitId, DatasetRows, describeSplit, spreadIndices } from "../source/datasets.js";

export const MMLU_DATASET = "cais/mmlu";

export interface MMLUSourceOptions {
  /** A local .jsonl / .csv file. */
  path?: string;
  /** A hub dataset in cais/mmlu's layout: "org/name[:config[:split]]" (cais/mmlu: config all, split test). */
  dataset?: string;
  /** At most this many questions, spread evenly over the set. */
  limit?: number;
  /** For a dataset: HF_* environment, cache folder, rows server. */
  hub?: DatasetRowsOptions;
}

export interface MMLUQuestionSet {
  questions: readonly MultipleChoiceQuestion[];
  /** "built-in", the file, or "cais/mmlu (all, test)". */
  source: string;
  /** Questions the source holds (before the limit). */
  available: number;
  /** HTTP requests made (0 when the cache had every page). */
  requests: number;
}

const HUB_DATASET = /^[A-Za-z0-9][\w.-]*\/[\w.-]+(?::[\w.-]+){0,2}$/;

/** "cais/mmlu", "cais/mmlu:all", "cais/mmlu:abstract_algebra:test" -> dataset, config, split. */
export function parseMMLUDataset(spec: string): DatasetSplitId {
  if (!HUB_DATASET.test(spec)) {
    throw new UsageError(`MMLU dataset ${JSON.stringify(spec)} is not of the form org/name[:config[:split]], e.g. ${MMLU_DATASET} or ${MMLU_DATASET}:all:test`);
  }
  const [dataset, config, split] = spec.split(":") as [string, string | undefined, string | undefined];
  return { dataset, config: config ?? (dataset === MMLU_DATASET ? "all" : "default"), split: split ?? "test" };
}

/**
 * What `--mmlu SOURCE` names: "builtin", an existing local file, a .jsonl/.csv path (read, and
 * reported if missing), or a hub dataset org/name[:config[:split]].
 */
export async function parseMMLUSource(source: string): Promise<Pick<MMLUSourceOptions, "path" | "dataset">> {
  if (source === "builtin" || source === "built-in") return {};
  const local = await stat(source).then(() => true, () => false);
  if (local || /\.(jsonl|ndjson|json|csv)$/i.test(source)) return { path: source };
  if (HUB_DATASET.test(source)) return { dataset: source };
  throw new UsageError(`--mmlu ${JSON.stringify(source)}: expected builtin, a .jsonl/.csv file, or a hub dataset such as ${MMLU_DATASET}`);
}

export async function mmluQuestions(opts: MMLUSourceOptions = {}): Promise<MMLUQuestionSet> {
  if (opts.path !== undefined && opts.dataset !== undefined) throw new UsageError("give either an MMLU file or an MMLU dataset, not both");
  if (opts.dataset !== undefined) return hubQuestions(parseMMLUDataset(opts.dataset), opts.limit, opts.hub ?? {});
  const all = opts.path !== undefined ? await loadMultipleChoice(opts.path) : BUILTIN_MMLU;
  return { questions: selectQuestions(all, opts.limit), source: opts.path ?? "built-in", available: all.length, requests: 0 };
}

async function hubQuestions(id: DatasetSplitId, limit: number | undefined, hub: DatasetRowsOptions): Promise<MMLUQuestionSet> {
  const rows = new DatasetRows(id, {
    ...hub,
    fallback: hub.fallback ?? "pass --mmlu-file FILE (cais/mmlu's CSV or JSONL), or leave out --mmlu for the built-in set",
  });
  const total = await rows.total();
  if (total === 0) throw new InputError(`${describeSplit(id)} has no rows`, { code: "E_MMLU" });
  const indices = spreadIndices(total, limit ?? total);
  const picked = await rows.rowsAt(indices);
  const where = describeSplit(id);
  const questions = picked.map((row, k) => multipleChoiceFromRecord(row, where, `row ${indices[k]}`));
  return { questions, source: where, available: total, requests: rows.requests };
}
