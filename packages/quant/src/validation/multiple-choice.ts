// Multiple-choice accuracy in MMLU's format (question, four choices, answer), scored as
// lm-evaluation-harness scores MMLU: the prompt lists the choices as "A. ...", and each answer
// letter (" A" .. " D") is scored by its log-likelihood after "Answer:"; the most likely letter is
// the model's answer. The four continuations go through llama_decode together as four sequences.
//
// Sources: a local JSONL file ({question, choices[4], answer: 0-3 or "A"-"D", subject?}, or
// {question, A, B, C, D, answer}), a CSV file in the original MMLU layout
// (question,A,B,C,D,answer without a header; a header row is skipped), cais/mmlu through the
// hub (mmlu-source.ts), or the built-in set.

import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { InputError, PajamasError, UsageError } from "@llama-pajamas/artifact";
import { newRowStats, rowStats, tokenNll } from "./log-softmax.js";
import { EngineContext, EngineModel } from "../quantize/native.js";
import { spreadIndices } from "../source/datasets.js";

export interface MultipleChoiceQuestion {
  question: string;
  choices: string[];
  /** Index of the right choice. */
  answer: number;
  subject?: string;
}

/** Most questions read from one file. */
export const MC_MAX_QUESTIONS = 100_000;
/** Longest prompt, in tokens, that is scored (longer ones are an input error). */
export const MC_MAX_PROMPT_TOKENS = 4096;
const LETTERS = ["A", "B", "C", "D"] as const;

function bad(path: string, where: string, message: string): InputError {
  return new InputError(`${path}: ${where}: ${message}`, { path, code: "E_MMLU" });
}

function parseAnswer(v: unknown, path: string, where: string): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 4) return v;
  if (typeof v === "string") {
    const s = v.trim().toUpperCase();
    const i = LETTERS.indexOf(s as (typeof LETTERS)[number]);
    if (i >= 0) return i;
    if (/^[0-3]$/.test(s)) return Number(s);
  }
  throw bad(path, where, `answer ${JSON.stringify(v)} is not 0-3 or A-D`);
}

function question(q: unknown, choices: unknown[], answer: unknown, subject: unknown, path: string, where: string): MultipleChoiceQuestion {
  if (typeof q !== "string" || q.trim() === "") throw bad(path, where, "no question text");
  if (choices.length !== 4 || !choices.every((c) => typeof c === "string" || typeof c === "number")) {
    throw bad(path, where, `expected four choices, got ${JSON.stringify(choices).slice(0, 80)}`);
  }
  return {
    question: q,
    choices: choices.map(String),
    answer: parseAnswer(answer, path, where),
    ...(typeof subject === "string" && subject ? { subject } : {}),
  };
}

/**
 * One question from an object: {question, choices[4], answer (0-3 or "A"-"D"), subject?}, or
 * {question, A, B, C, D, answer}. cais/mmlu's rows on the hub have the first shape.
 */
export function multipleChoiceFromRecord(o: Record<string, unknown>, path: string, where: string): MultipleChoiceQuestion {
  const choices = Array.isArray(o.choices) ? o.choices : [o.A, o.B, o.C, o.D];
  return question(o.question, choices, o.answer, o.subject, path, where);
}

/**
 * At most `n` questions, spread evenly over the set (the middle one of each of n equal runs),
 * in their order. Sets sorted by subject (MMLU's) keep every subject's share.
 */
export function selectQuestions<T>(questions: readonly T[], n: number | undefined): readonly T[] {
  if (n === undefined || n >= questions.length) return questions;
  return spreadIndices(questions.length, n).map((i) => questions[i]!);
}

/** Parses JSONL questions. */
export function parseMultipleChoiceJSONL(content: string, path = "<jsonl>"): MultipleChoiceQuestion[] {
  const out: MultipleChoiceQuestion[] = [];
  content.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    if (out.length >= MC_MAX_QUESTIONS) throw bad(path, `line ${i + 1}`, `more than ${MC_MAX_QUESTIONS} questions`);
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw bad(path, `line ${i + 1}`, `not JSON (${(e as Error).message})`);
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad(path, `line ${i + 1}`, "not a JSON object");
    out.push(multipleChoiceFromRecord(o, path, `line ${i + 1}`));
  });
  return out;
}

/** Splits CSV text into rows (RFC 4180: quoted fields, "" escapes, newlines inside quotes). */
export function parseCSVRows(content: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < content.length; i++) {
    const c = content[i]!;
    if (quoted) {
      if (c === '"' && content[i + 1] === '"') (field += '"', i++);
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") (row.push(field), (field = ""));
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && content[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) (row.push(field), rows.push(row));
  return rows.filter((r) => !(r.length === 1 && r[0] === ""));
}

/** Parses MMLU CSV: question,A,B,C,D,answer per row. */
export function parseMultipleChoiceCSV(content: string, path = "<csv>", subject?: string): MultipleChoiceQuestion[] {
  const rows = parseCSVRows(content);
  const first = rows[0]?.map((c) => c.trim().toLowerCase());
  const start = first && first[0] === "question" && first[5] === "answer" ? 1 : 0;
  if (rows.length - start > MC_MAX_QUESTIONS) throw bad(path, "file", `more than ${MC_MAX_QUESTIONS} questions`);
  return rows.slice(start).map((r, i) => {
    if (r.length < 6) throw bad(path, `row ${i + start + 1}`, `expected 6 columns (question,A,B,C,D,answer), got ${r.length}`);
    return question(r[0], r.slice(1, 5), r[5], subject, path, `row ${i + start + 1}`);
  });
}

/** Reads a .jsonl / .json-lines or .csv question file. */
export async function loadMultipleChoice(path: string): Promise<MultipleChoiceQuestion[]> {
  let content: string;
  try {
    content = await readFile(path, "utf8");
  } catch (e) {
    throw new InputError(`cannot read multiple-choice file ${path}: ${(e as Error).message}`, { path, cause: e });
  }
  const ext = extname(path).toLowerCase();
  let qs: MultipleChoiceQuestion[];
  if (ext === ".csv") {
    // MMLU's own files are named <subject>_test.csv
    const subject = /([a-z_]+?)_(?:test|dev|val)\.csv$/i.exec(path)?.[1];
    qs = parseMultipleChoiceCSV(content, path, subject);
  } else if (ext === ".jsonl" || ext === ".ndjson" || ext === ".json") {
    qs = parseMultipleChoiceJSONL(content, path);
  } else {
    throw new UsageError(`multiple-choice file ${path}: expected .jsonl or .csv (MMLU layout)`);
  }
  if (qs.length === 0) throw new InputError(`${path} holds no questions`, { path, code: "E_MMLU" });
  return qs;
}

/** lm-evaluation-harness's MMLU prompt (0-shot unless examples are given). */
export function mmluPrompt(q: MultipleChoiceQuestion, examples: readonly MultipleChoiceQuestion[] = []): string {
  const subject = (q.subject ?? "general knowledge").replace(/_/g, " ");
  const block = (x: MultipleChoiceQuestion) =>
    `${x.question.trim()}\n${x.choices.map((c, i) => `${LETTERS[i]}. ${c.trim()}`).join("\n")}\nAnswer:`;
  const shots = examples.map((x) => `${block(x)} ${LETTERS[x.answer]}\n\n`).join("");
  return `The following are multiple choice questions (with answers) about ${subject}.\n\n${shots}${block(q)}`;
}

export interface MultipleChoiceResult {
  /** Percent answered correctly. */
  accuracy: number;
  correct: number;
  questions: number;
  /** The chosen index per question. */
  chosen: number[];
}

export interface MultipleChoiceOptions {
  questions: readonly MultipleChoiceQuestion[];
  threads?: number;
  /** Examples put before each question (MMLU's few-shot); default none. */
  examples?: readonly MultipleChoiceQuestion[];
  /**
   * What is scored after "Answer:": the letter (" A" .. " D", lm-evaluation-harness's MMLU,
   * default) or the choice's own text (its summed log-likelihood, as in the harness's
   * mmlu_continuation).
   */
  score?: "letter" | "text";
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

function commonPrefix(seqs: Int32Array[]): number {
  let n = Math.min(...seqs.map((s) => s.length));
  for (let i = 0; i < n; i++) {
    const t = seqs[0]![i];
    if (!seqs.every((s) => s[i] === t)) return i;
  }
  return n;
}

/** Accuracy of `model` on the questions. */
export async function multipleChoiceAccuracy(model: string | EngineModel, opts: MultipleChoiceOptions): Promise<MultipleChoiceResult> {
  const m = typeof model === "string" ? EngineModel.load(model) : model;
  try {
    // each question: the four prompt+letter token sequences and where their continuations start
    const items = opts.questions.map((q, qi) => {
      const prompt = mmluPrompt(q, opts.examples);
      const seqs = LETTERS.map((l, k) => m.tokenize(`${prompt} ${opts.score === "text" ? q.choices[k]!.trim() : l}`, { addSpecial: true }));
      const prefix = Math.max(1, commonPrefix(seqs));
      const longest = Math.max(...seqs.map((s) => s.length));
      if (longest > MC_MAX_PROMPT_TOKENS) throw new InputError(`question ${qi + 1} is ${longest} tokens; at most ${MC_MAX_PROMPT_TOKENS} are scored`);
      return { seqs, prefix, longest };
    });
    const perSeq = Math.ceil(Math.max(...items.map((i) => i.longest)) / 256) * 256;
    const ctx = new EngineContext(m, { nCtx: 4 * perSeq, nBatch: 4 * perSeq, nSeqMax: 4, threads: opts.threads });
    const chosen: number[] = [];
    let correct = 0;
    const stats = newRowStats();
    try {
      for (let qi = 0; qi < items.length; qi++) {
        if (opts.signal?.aborted) throw new PajamasError("E_INTERRUPTED", "evaluation interrupted");
        const { seqs, prefix } = items[qi]!;
        let scores: number[];
        if (seqs.every((s) => s.length === prefix + 1)) {
          // single-token answers (" A" .. " D" in most vocabularies): one pass over the shared prompt
          const n = prefix;
          ctx.clear();
          await ctx.decodeAsync({
            tokens: seqs[0]!.subarray(0, n),
            pos: Array.from({ length: n }, (_, p) => p),
            seq: new Array<number>(n).fill(0),
            logits: Array.from({ length: n }, (_, p) => p === n - 1),
          });
          const row = ctx.logits(n - 1, 1);
          rowStats(row, 0, ctx.nVocab, stats);
          scores = seqs.map((s) => -tokenNll(row, 0, stats, s[n]!));
        } else {
          scores = await scoreSequences(ctx, seqs, prefix, stats);
        }
        let best = 0;
        for (let k = 1; k < scores.length; k++) if (scores[k]! > scores[best]!) best = k;
        chosen.push(best);
        if (best === opts.questions[qi]!.answer) correct++;
        opts.onProgress?.(qi + 1, items.length);
      }
    } finally {
      ctx.free();
    }
    return { accuracy: (100 * correct) / items.length, correct, questions: items.length, chosen };
  } finally {
    if (typeof model === "string") m.free();
  }
}

/** Log-likelihood of each sequence's tokens after `prefix`, the sequences decoded together. */
async function scoreSequences(ctx: EngineContext, seqs: Int32Array[], prefix: number, stats: ReturnType<typeof newRowStats>): Promise<number[]> {
  const tokens: number[] = [];
  const pos: number[] = [];
  const seq: number[] = [];
  const out: number[] = [];
  const firstOut: number[] = [];
  seqs.forEach((s, k) => {
    firstOut.push(tokens.length + prefix - 1);
    for (let p = 0; p < s.length; p++) {
      tokens.push(s[p]!);
      pos.push(p);
      seq.push(k);
      out.push(p >= prefix - 1 && p < s.length - 1 ? 1 : 0);
    }
  });
  ctx.clear();
  await ctx.decodeAsync({ tokens, pos, seq, logits: out });
  return seqs.map((s, k) => {
    let logLik = 0;
    for (let p = prefix - 1; p < s.length - 1; p++) {
      const row = ctx.logits(firstOut[k]! + (p - (prefix - 1)), 1);
      rowStats(row, 0, ctx.nVocab, stats);
      logLik -= tokenNll(row, 0, stats, s[p + 1]!);
    }
    return logLik;
  });
}
