// validate(): how far a quantized model is from its original, on the same tokens through the
// same engine: perplexity of both, KL divergence (one lockstep pass that also gives both
// perplexities), and multiple-choice accuracy. Results go to the caller, and into the
// artifact's manifest.json `validation` block when the quantized model came from an artifact.

import { createHash } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError, MANIFEST_FILE, type ManifestValidation, parseManifest, UsageError } from "@llama-pajamas/artifact";
import { DEFAULT_EVAL_TEXT_SHA256, defaultEvalText } from "./default-text.js";
import { checkSameVocabulary, type KLDivergenceResult, klDivergenceOfPlan } from "./kl-divergence.js";
import { type MMLUQuestionSet, type MMLUSourceOptions, mmluQuestions } from "./mmlu-source.js";
import { multipleChoiceAccuracy } from "./multiple-choice.js";
import { type EvalProgress, type PerplexityResult, perplexityOfPlan, planForModel, tokenizeForEval } from "./perplexity.js";
import { type ResolvedGGUF, resolveGGUF } from "./model-path.js";
import { EngineModel } from "../quantize/native.js";
import type { HubOptions } from "../source/index.js";

export const VALIDATION_METRICS = ["perplexity", "kld", "mmlu"] as const;
export type ValidationMetric = (typeof VALIDATION_METRICS)[number];
export const DEFAULT_METRICS: readonly ValidationMetric[] = ["perplexity", "kld"];
export const VALIDATION_REPORT_FILE = "validation.md";

export interface ValidateOptions {
  /** GGUF file, artifact directory, or Hugging Face checkpoint dir / hub id (converted to F16 on the fly). */
  original: string;
  /** GGUF file or artifact directory. */
  quantized: string;
  /** Which GGUF of a quantized artifact directory (default: its first quantized one). */
  method?: string;
  metrics?: readonly ValidationMetric[];
  /** Evaluation text file (default: the built-in text). */
  textPath?: string;
  /** Evaluation text itself (wins over textPath). */
  text?: string | Uint8Array;
  ctx?: number;
  chunks?: number;
  batch?: number;
  threads?: number;
  /**
   * Multiple choice: a JSONL/CSV file in MMLU's format, or a hub dataset in cais/mmlu's layout
   * ("cais/mmlu[:config[:split]]"; default: the built-in set), at most `limit` questions spread
   * evenly over it. Dataset rows come through the dataset viewer, cached (`hub` settings apply).
   */
  mmlu?: Omit<MMLUSourceOptions, "hub">;
  /** Read the original's log-probabilities through llama.cpp's 16-bit encoding (figures equal llama-perplexity's). */
  base16Bit?: boolean;
  /** How reports name the original (default: its path, or the checkpoint it was converted from). */
  originalLabel?: string;
  /** Write the manifest's validation block and validation.md when the quantized model is an artifact (default true). */
  updateArtifact?: boolean;
  onProgress?: (e: ValidateProgress) => void;
  signal?: AbortSignal;
  hub?: HubOptions;
}

export type ValidateProgress =
  | { stage: "convert"; model: string }
  | ({ stage: "perplexity-original" | "perplexity-quantized" | "kld" } & EvalProgress)
  | { stage: "mmlu-original" | "mmlu-quantized"; done: number; total: number };

/** The summary `validate --json` prints. */
export interface ValidationSummary {
  perplexity: { original: number; quantized: number; increasePct: number } | null;
  kld: { mean: number; median: number; p99: number; max: number; sameTopPct: number; rmsDpPct: number } | null;
  mmlu: { original: number; quantized: number; questions: number } | null;
  /** Tokens decoded per model for perplexity / KLD (chunks * ctx); 0 when neither ran. */
  tokens: number;
}

export interface ValidationReport extends ValidationSummary {
  /** `path` is the GGUF that was loaded; `label` names it in reports. */
  original: { path: string; label: string; method?: string };
  quantized: { path: string; method?: string; artifactDir?: string };
  text: { source: string; bytes: number; sha256: string } | null;
  /** Where the multiple-choice questions came from, and how many it holds. */
  mmluSource: { source: string; available: number } | null;
  ctx: number | null;
  chunks: number | null;
  tokensScored: number;
  /** Full figures of each pass. */
  details: {
    perplexityOriginal?: PerplexityResult;
    perplexityQuantized?: PerplexityResult;
    kld?: KLDivergenceResult;
  };
  seconds: number;
  /** Where the manifest block and report were written, when they were. */
  manifestPath?: string;
  reportPath?: string;
}

export function parseMetrics(list: string): ValidationMetric[] {
  const out = list.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const m of out) {
    if (!(VALIDATION_METRICS as readonly string[]).includes(m)) {
      throw new UsageError(`unknown metric "${m}"; metrics: ${VALIDATION_METRICS.join(", ")}`);
    }
  }
  if (out.length === 0) throw new UsageError(`no metric given; metrics: ${VALIDATION_METRICS.join(", ")}`);
  return [...new Set(out)] as ValidationMetric[];
}

async function convertToF16(model: string, dir: string, hub: HubOptions | undefined, signal: AbortSignal | undefined): Promise<string> {
  // imported here: pipeline.ts imports this module for `convert --validate`
  const { convert } = await import("../pipeline.js");
  const r = await convert({ model, output: dir, precisions: ["F16"], force: true, signal, hub });
  return r.files[0]!.path;
}

async function evalText(opts: ValidateOptions): Promise<{ bytes: Uint8Array; source: string; sha256: string }> {
  if (opts.text !== undefined) {
    const bytes = typeof opts.text === "string" ? Buffer.from(opts.text, "utf8") : opts.text;
    return { bytes, source: "<text>", sha256: createHash("sha256").update(bytes).digest("hex") };
  }
  if (opts.textPath) {
    let bytes: Buffer;
    try {
      bytes = await readFile(opts.textPath);
    } catch (e) {
      throw new InputError(`cannot read evaluation text ${opts.textPath}: ${(e as Error).message}`, { path: opts.textPath, cause: e });
    }
    return { bytes, source: opts.textPath, sha256: createHash("sha256").update(bytes).digest("hex") };
  }
  return { bytes: defaultEvalText(), source: "built-in (Python documentation)", sha256: DEFAULT_EVAL_TEXT_SHA256 };
}

export async function validate(opts: ValidateOptions): Promise<ValidationReport> {
  const started = performance.now();
  const metrics = new Set(opts.metrics ?? DEFAULT_METRICS);
  if (metrics.size === 0) throw new UsageError(`no metric given; metrics: ${VALIDATION_METRICS.join(", ")}`);
  const resolved: ResolvedGGUF[] = [];
  const models: EngineModel[] = [];
  // questions first: a dataset that cannot be had fails before any model is loaded
  const mcq: MMLUQuestionSet | undefined = metrics.has("mmlu")
    ? await mmluQuestions({ ...opts.mmlu, hub: { env: opts.hub?.env, settings: opts.hub?.settings, retryDelayMs: opts.hub?.retryDelayMs, signal: opts.signal } })
    : undefined;
  try {
    const orig = await resolveGGUF(opts.original, {
      role: "original",
      hub: opts.hub,
      convertToF16: (model, dir) => {
        opts.onProgress?.({ stage: "convert", model });
        return convertToF16(model, dir, opts.hub, opts.signal);
      },
    });
    resolved.push(orig);
    const quant = await resolveGGUF(opts.quantized, { role: "quantized", method: opts.method });
    resolved.push(quant);
    const original = EngineModel.load(orig.path);
    models.push(original);
    const quantized = EngineModel.load(quant.path);
    models.push(quantized);
    checkSameVocabulary(original, quantized);

    const report: ValidationReport = {
      perplexity: null,
      kld: null,
      mmlu: null,
      tokens: 0,
      original: {
        path: orig.path,
        label: opts.originalLabel ?? (orig.convertedFrom ? `${orig.convertedFrom}, converted to F16 for this run` : orig.path),
        ...(orig.method ? { method: orig.method } : {}),
      },
      quantized: { path: quant.path, ...(quant.method ? { method: quant.method } : {}), ...(quant.artifactDir ? { artifactDir: quant.artifactDir } : {}) },
      text: null,
      mmluSource: mcq ? { source: mcq.source, available: mcq.available } : null,
      ctx: null,
      chunks: null,
      tokensScored: 0,
      details: {},
      seconds: 0,
    };

    if (metrics.has("perplexity") || metrics.has("kld")) {
      const text = await evalText(opts);
      report.text = { source: text.source, bytes: text.bytes.byteLength, sha256: text.sha256 };
      const plan = planForModel(original, tokenizeForEval(original, text.bytes), opts);
      report.ctx = plan.nCtx;
      report.chunks = plan.nChunks;
      if (metrics.has("kld")) {
        const kld = await klDivergenceOfPlan(original, quantized, plan, {
          threads: opts.threads,
          base16Bit: opts.base16Bit,
          signal: opts.signal,
          onProgress: opts.onProgress && ((e) => opts.onProgress!({ stage: "kld", ...e })),
        });
        report.details.kld = kld;
        report.kld = { mean: kld.kld.mean, median: kld.kld.median, p99: kld.kld.p99, max: kld.kld.max, sameTopPct: kld.sameTopPct, rmsDpPct: kld.rmsDpPct };
        report.perplexity = ppl(kld.perplexity.original, kld.perplexity.quantized);
        report.tokens = kld.tokensEvaluated;
        report.tokensScored = kld.tokensScored;
      } else {
        const a = await perplexityOfPlan(original, plan, {
          threads: opts.threads,
          signal: opts.signal,
          onProgress: opts.onProgress && ((e) => opts.onProgress!({ stage: "perplexity-original", ...e })),
        });
        const b = await perplexityOfPlan(quantized, plan, {
          threads: opts.threads,
          signal: opts.signal,
          onProgress: opts.onProgress && ((e) => opts.onProgress!({ stage: "perplexity-quantized", ...e })),
        });
        report.details.perplexityOriginal = a;
        report.details.perplexityQuantized = b;
        report.perplexity = ppl(a.perplexity, b.perplexity);
        report.tokens = a.tokensEvaluated;
        report.tokensScored = a.tokensScored;
      }
    }

    if (mcq) {
      const questions = mcq.questions;
      const run = (m: EngineModel, stage: "mmlu-original" | "mmlu-quantized") =>
        multipleChoiceAccuracy(m, {
          questions,
          threads: opts.threads,
          signal: opts.signal,
          onProgress: opts.onProgress && ((done, total) => opts.onProgress!({ stage, done, total })),
        });
      const a = await run(original, "mmlu-original");
      const b = await run(quantized, "mmlu-quantized");
      report.mmlu = { original: a.accuracy, quantized: b.accuracy, questions: a.questions };
    }

    report.seconds = (performance.now() - started) / 1000;
    if (quant.artifactDir && opts.updateArtifact !== false) {
      report.manifestPath = await writeManifestValidation(quant.artifactDir, manifestValidation(report));
      report.reportPath = join(quant.artifactDir, VALIDATION_REPORT_FILE);
      await writeFile(report.reportPath, formatValidationReport(report, { markdown: true }));
    }
    return report;
  } finally {
    for (const m of models) m.free();
    for (const r of resolved) await r.cleanup();
  }
}

function ppl(original: number, quantized: number): ValidationSummary["perplexity"] {
  return { original, quantized, increasePct: (quantized / original - 1) * 100 };
}

/** The `--json` shape. */
export function validationSummary(r: ValidationSummary): ValidationSummary {
  return { perplexity: r.perplexity, kld: r.kld, mmlu: r.mmlu, tokens: r.tokens };
}

/** The manifest's `validation` block (fields that were measured). */
export function manifestValidation(r: ValidationReport): ManifestValidation {
  const v: ManifestValidation = {};
  if (r.perplexity) {
    v.perplexity_fp16 = round(r.perplexity.original, 4);
    v.perplexity_quantized = round(r.perplexity.quantized, 4);
    v.increase_pct = round(r.perplexity.increasePct, 3);
  }
  if (r.kld) {
    v.kld_mean = round(r.kld.mean, 6);
    v.same_top_pct = round(r.kld.sameTopPct, 3);
  }
  if (r.mmlu) {
    v.mmlu_fp16 = round(r.mmlu.original, 2);
    v.mmlu_quantized = round(r.mmlu.quantized, 2);
  }
  if (r.tokens > 0) v.tokens = r.tokens;
  if (r.text) v.text_sha256 = r.text.sha256;
  return v;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Replaces the `validation` block of an artifact's manifest.json (write to a temp file, then rename). */
export async function writeManifestValidation(artifactDir: string, validation: ManifestValidation): Promise<string> {
  const path = join(artifactDir, MANIFEST_FILE);
  const raw = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  parseManifest(raw, path); // still a valid manifest
  raw.validation = validation;
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(raw, null, 2) + "\n");
  await rename(tmp, path);
  return path;
}

/** A readable report (plain text, or Markdown for validation.md). */
export function formatValidationReport(r: ValidationReport, opts: { markdown?: boolean } = {}): string {
  const rows: [string, string][] = [];
  const f = (x: number, d: number) => x.toFixed(d);
  rows.push(["original", `${r.original.label}${r.original.method ? ` (${r.original.method})` : ""}`]);
  rows.push(["quantized", `${r.quantized.path}${r.quantized.method ? ` (${r.quantized.method})` : ""}`]);
  if (r.text) rows.push(["text", `${r.text.source}, ${r.text.bytes} bytes, sha256 ${r.text.sha256.slice(0, 16)}…`]);
  if (r.ctx !== null) rows.push(["windows", `${r.chunks} x ${r.ctx} tokens (${r.tokens} decoded per model, ${r.tokensScored} scored)`]);
  const d = r.details;
  if (r.perplexity) {
    const po = d.kld?.perplexity.originalUncertainty ?? d.perplexityOriginal?.uncertainty;
    const pq = d.kld?.perplexity.quantizedUncertainty ?? d.perplexityQuantized?.uncertainty;
    rows.push(["perplexity (original)", `${f(r.perplexity.original, 4)}${po !== undefined ? ` ± ${f(po, 4)}` : ""}`]);
    rows.push(["perplexity (quantized)", `${f(r.perplexity.quantized, 4)}${pq !== undefined ? ` ± ${f(pq, 4)}` : ""}`]);
    rows.push(["perplexity increase", `${r.perplexity.increasePct >= 0 ? "+" : ""}${f(r.perplexity.increasePct, 3)} %`]);
  }
  if (r.kld && d.kld) {
    const k = d.kld.kld;
    rows.push(["mean KLD", `${f(k.mean, 6)} ± ${f(k.meanUncertainty, 6)}`]);
    rows.push(["median / 99% / max KLD", `${f(k.median, 6)} / ${f(k.p99, 6)} / ${f(k.max, 6)}`]);
    rows.push(["same top token", `${f(r.kld.sameTopPct, 3)} %`]);
    rows.push(["RMS Δp", `${f(r.kld.rmsDpPct, 3)} %`]);
  }
  if (r.mmlu) {
    const from = r.mmluSource ? ` of ${r.mmluSource.available}, ${r.mmluSource.source}` : "";
    rows.push(["multiple choice", `${f(r.mmlu.original, 2)} % original, ${f(r.mmlu.quantized, 2)} % quantized (${r.mmlu.questions} questions${from})`]);
  }
  rows.push(["time", `${f(r.seconds, 1)} s`]);
  if (opts.markdown) {
    return `# Validation\n\n| | |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v.replace(/\|/g, "\\|")} |`).join("\n")}\n`;
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n") + "\n";
}
