import { UsageError } from "@llama-pajamas/artifact";
import type { CalibrateOptions } from "../calibration/calibrate.js";
import { parseCalibrationDataset } from "../calibration/text.js";
import type { ConvertValidateOptions } from "../calibration/convert-steps.js";
import type { ConvertResult } from "../pipeline.js";
import { parseMMLUSource } from "../validation/mmlu-source.js";
import { formatValidationReport, parseMetrics, validate, validationSummary, type ValidateProgress } from "../validation/validate.js";
import { type Command, optionalInt, requireString } from "./args.js";
import { downloadProgress } from "./download-progress.js";
import { formatSeconds } from "./progress.js";

const usage = `Usage: llama-pajamas-quant validate --original PATH --quantized PATH [options]

Measures how far a quantized model is from its original on the same tokens, through llama.cpp:
perplexity by llama-perplexity's method, KL divergence in one lockstep pass over both models,
and multiple-choice accuracy in MMLU's format. When --quantized is an artifact directory, the
results go into its manifest.json (validation block) and validation.md.

Required:
  --original PATH      the unquantized model: an F16/BF16/F32 GGUF, an artifact directory with
                       one, or a Hugging Face checkpoint directory or hub id (converted to F16
                       in a temporary directory first)
  --quantized PATH     the quantized GGUF, an artifact directory (its first quantized GGUF,
                       or the one --method names; --method mlx for its mlx/ directory), or an
                       MLX directory (run through the runtime's GGUF transcode, cached)

Optional:
  --metrics LIST       perplexity,kld,mmlu (default perplexity,kld; kld gives both
                       perplexities in the same pass)
  --text FILE          evaluation text (default: built-in Python documentation text)
  --ctx N              window size in tokens (default 512)
  --chunks N           at most N windows (default: all the text holds)
  --batch N            logical batch (default 2048: four 512-token windows per decode)
  --threads N          CPU threads (default: all cores)
  --method NAME        which file of an artifact directory, e.g. Q4_K_M, or mlx (or its MLX
                       method, e.g. 4bit) for its mlx/ directory
  --mmlu SOURCE        multiple-choice questions: builtin (default, 40 questions), a file (JSONL
                       {question, choices, answer} or MMLU CSV question,A,B,C,D,answer), or a hub
                       dataset in cais/mmlu's layout, org/name[:config[:split]]: cais/mmlu is
                       config all, split test (14,042 questions), read through the dataset viewer
                       (HF_DATASETS_SERVER) and kept in HF_DATASETS_CACHE (default
                       HF_HOME/datasets); HF_HUB_OFFLINE=1 uses that cache only
  --mmlu-file FILE     the same as --mmlu FILE
  --mmlu-questions N   at most N questions, spread evenly over the set (every subject keeps its
                       share; from the hub, only the pages holding them are fetched)
  --mmlu-limit N       the same as --mmlu-questions N
  --llama-cpp-kld      read the original's log-probabilities through llama-perplexity's 16-bit
                       encoding, so the KLD figures equal llama.cpp's digit for digit
  --no-manifest        do not write the artifact's manifest.json / validation.md
  --quiet              no progress output
  --json               print {perplexity, kld, mmlu, tokens} as JSON on stdout`;

function progressLine(quiet: boolean): ((e: ValidateProgress) => void) & { done(): void } {
  const tty = process.stderr.isTTY === true && !quiet;
  let last = 0;
  const report = (e: ValidateProgress) => {
    if (!tty) return;
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    let line: string;
    if (e.stage === "convert") line = `converting ${e.model} to F16 ...`;
    else if ("done" in e) line = `${e.stage}: ${e.done}/${e.total} questions`;
    else {
      const eta = ((e.elapsedMs / 1000) * (e.chunks - e.chunk)) / Math.max(e.chunk, 1);
      line = `${e.stage}: chunk ${e.chunk}/${e.chunks}  PPL ${e.perplexity.toFixed(4)}  ETA ${formatSeconds(eta)}`;
    }
    process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
  };
  return Object.assign(report, {
    done() {
      if (tty) process.stderr.write("\r\x1b[2K");
    },
  });
}

export const validateCommand: Command = {
  name: "validate",
  summary: "perplexity, KL divergence and multiple choice of a quantized model vs its original",
  usage,
  options: {
    original: { type: "string" },
    quantized: { type: "string" },
    metrics: { type: "string" },
    text: { type: "string" },
    ctx: { type: "string" },
    chunks: { type: "string" },
    batch: { type: "string" },
    threads: { type: "string" },
    method: { type: "string" },
    mmlu: { type: "string" },
    "mmlu-file": { type: "string" },
    "mmlu-questions": { type: "string" },
    "mmlu-limit": { type: "string" },
    "llama-cpp-kld": { type: "boolean" },
    "no-manifest": { type: "boolean" },
    quiet: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`validate takes no positional arguments (got ${positionals.join(" ")})\n\n${usage}`);
    const original = requireString(values, "original", usage);
    const quantized = requireString(values, "quantized", usage);
    const metrics = parseMetrics(String(values.metrics ?? "perplexity,kld"));
    const mmluFlags = ["mmlu", "mmlu-file", "mmlu-questions", "mmlu-limit"].filter((k) => values[k] !== undefined);
    if (mmluFlags.length > 0 && !metrics.includes("mmlu")) {
      throw new UsageError(`--${mmluFlags[0]} applies to the mmlu metric; add it to --metrics`);
    }
    if (values.mmlu !== undefined && values["mmlu-file"] !== undefined) throw new UsageError("give either --mmlu or --mmlu-file, not both");
    if (values["mmlu-questions"] !== undefined && values["mmlu-limit"] !== undefined) {
      throw new UsageError("give either --mmlu-questions or --mmlu-limit (the same thing), not both");
    }
    const mmluSource = typeof values.mmlu === "string" ? await parseMMLUSource(values.mmlu) : { path: values["mmlu-file"] as string | undefined };
    const mmluLimit = optionalInt(values, "mmlu-questions") ?? optionalInt(values, "mmlu-limit");
    const evalFlags = ["text", "ctx", "chunks", "batch", "llama-cpp-kld"].filter((k) => values[k] !== undefined);
    if (evalFlags.length > 0 && !metrics.includes("perplexity") && !metrics.includes("kld")) {
      throw new UsageError(`--${evalFlags[0]} applies to perplexity and kld; add one of them to --metrics`);
    }
    const quiet = values.quiet === true || values.json === true;
    const progress = progressLine(quiet);
    const downloads = downloadProgress({ quiet });
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once("SIGINT", onSigint);
    process.once("SIGTERM", onSigint);
    try {
      const report = await validate({
        original,
        quantized,
        method: values.method as string | undefined,
        metrics,
        textPath: values.text as string | undefined,
        ctx: optionalInt(values, "ctx", 4),
        chunks: optionalInt(values, "chunks"),
        batch: optionalInt(values, "batch"),
        threads: optionalInt(values, "threads"),
        mmlu: metrics.includes("mmlu") ? { ...mmluSource, limit: mmluLimit } : undefined,
        base16Bit: values["llama-cpp-kld"] === true,
        updateArtifact: values["no-manifest"] !== true,
        onProgress: progress,
        signal: abort.signal,
        hub: { onEvent: downloads },
      });
      progress.done();
      if (values.json === true) {
        process.stdout.write(JSON.stringify(validationSummary(report), null, 2) + "\n");
      } else if (values.quiet !== true) {
        process.stdout.write(formatValidationReport(report));
        if (report.manifestPath) process.stdout.write(`validation written to ${report.manifestPath} and ${report.reportPath}\n`);
      }
      return 0;
    } finally {
      progress.done();
      downloads.done();
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigint);
    }
  },
};

// ---------------------------------------------------------------------------------------------
// The flags `convert` takes for its calibrate / validate steps (calibration/convert-steps.ts).

export const CONVERT_STEP_USAGE = `  --calibrate          compute an importance matrix with llama.cpp on an F16 GGUF of the model
                       first (llama-imatrix's method), quantize every GGUF type with it, and
                       keep it as imatrix.gguf in the artifact
  --calibration-file F calibration text (default: built-in Python documentation text)
  --calibration-dataset wikitext|c4
                       calibration text from the Hugging Face hub: wikitext = Salesforce/wikitext
                       wikitext-2-raw-v1 train (wiki.train.raw), c4 = allenai/c4 en validation;
                       only the rows that samples x ctx tokens need, read through the dataset
                       viewer (HF_DATASETS_SERVER) and kept in HF_DATASETS_CACHE (default
                       HF_HOME/datasets), so the next run needs no network; HF_HUB_OFFLINE=1
                       uses that cache only
  --calibration-chat-template
                       put the calibration text through the model's chat template first, as
                       user turns of about 1 KiB (special tokens parsed), for chat models
  --calibration-samples N  windows of calibration text (default 128)
  --calibration-ctx N  tokens per window (default 512)
  --validate           after writing, measure the first quantized GGUF against F16 (perplexity,
                       KL divergence) into the manifest's validation block and validation.md
  --validate-text F    evaluation text (default: built-in)
  --validate-chunks N  at most N windows of 512 tokens`;

export const CONVERT_STEP_OPTIONS = {
  calibrate: { type: "boolean" },
  "calibration-file": { type: "string" },
  "calibration-dataset": { type: "string" },
  "calibration-samples": { type: "string" },
  "calibration-ctx": { type: "string" },
  "calibration-chat-template": { type: "boolean" },
  validate: { type: "boolean" },
  "validate-text": { type: "string" },
  "validate-chunks": { type: "string" },
} as const;

export function convertStepOptions(values: Record<string, string | boolean | undefined>): {
  calibrate?: CalibrateOptions;
  validate?: ConvertValidateOptions;
} {
  const calibrationFlags = ["calibration-file", "calibration-dataset", "calibration-samples", "calibration-ctx", "calibration-chat-template"].filter((k) => values[k] !== undefined);
  if (calibrationFlags.length > 0 && values.calibrate !== true) throw new UsageError(`--${calibrationFlags[0]} applies with --calibrate`);
  const validateFlags = ["validate-text", "validate-chunks"].filter((k) => values[k] !== undefined);
  if (validateFlags.length > 0 && values.validate !== true) throw new UsageError(`--${validateFlags[0]} applies with --validate`);
  if (values.calibrate === true && values.imatrix !== undefined) throw new UsageError("--calibrate computes the importance matrix; drop --imatrix, or drop --calibrate");
  if (values["calibration-file"] !== undefined && values["calibration-dataset"] !== undefined) {
    throw new UsageError("give either --calibration-file or --calibration-dataset, not both");
  }
  if (typeof values["calibration-dataset"] === "string") parseCalibrationDataset(values["calibration-dataset"]);
  return {
    calibrate:
      values.calibrate === true
        ? {
            file: values["calibration-file"] as string | undefined,
            dataset: values["calibration-dataset"] as string | undefined,
            samples: optionalInt(values, "calibration-samples"),
            ctx: optionalInt(values, "calibration-ctx", 4),
            ...(values["calibration-chat-template"] === true ? { chatTemplate: true } : {}),
          }
        : undefined,
    validate:
      values.validate === true
        ? { textPath: values["validate-text"] as string | undefined, chunks: optionalInt(values, "validate-chunks") }
        : undefined,
  };
}

/** The lines `convert` prints about its calibrate / validate steps. */
export function convertStepSummary(result: ConvertResult): string {
  let out = "";
  const c = result.calibration;
  if (c) {
    out += `imatrix  ${c.chunks} chunks, ${c.tokens} tokens, calibration PPL ${c.perplexity.toFixed(4)}  ${c.imatrixPath}\n`;
    const t = c.text;
    const what = t.source === "dataset" ? `${t.dataset} (${t.config}, ${t.split}), rows 0-${t.rows! - 1}` : t.source === "file" ? t.path : "built-in";
    out += `         calibration text: ${what}${t.chatTemplate ? " as chat turns" : ""}, ${t.bytes} bytes, sha256 ${t.sha256.slice(0, 16)}…\n`;
    for (const u of c.unroutedExperts) out += `warning: no calibration token reached experts ${u.experts.join(", ")} of ${u.tensor} (importance 1 there)\n`;
  }
  if (result.validation) out += formatValidationReport(result.validation);
  return out;
}
