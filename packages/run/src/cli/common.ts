import { readFile } from "node:fs/promises";
import { InputError, UsageError } from "@llama-pajamas/artifact";
import { parseBackend, type InferenceConfig, type RuntimeOptions } from "../config.js";
import type { GenerationResult } from "../generation.js";
import type { Runtime } from "../runtime.js";
import { optionalInt, optionalNumber, optionalString, type OptionSpec, requireString, stringList, type Values } from "./args.js";

/** Flags every command that loads a model takes; names follow llama.cpp's. */
export const MODEL_OPTIONS: OptionSpec = {
  model: { type: "string", short: "m" },
  backend: { type: "string" },
  "ctx-size": { type: "string", short: "c" },
  "gpu-layers": { type: "string" },
  threads: { type: "string", short: "t" },
  "batch-size": { type: "string", short: "b" },
  "flash-attn": { type: "string" },
  method: { type: "string" },
  verify: { type: "boolean" },
  verbose: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
};

export const MODEL_USAGE = `Model options:
  -m, --model PATH        a .gguf file, an artifact directory (manifest.json) or an MLX
                          directory (run through a GGUF transcode made once and cached) [required]
  --backend NAME          auto (default), cpu, cuda, vulkan, metal, mlx
  -c, --ctx-size N        context size in tokens (default: min(4096, the model's))
  --gpu-layers N          layers on the GPU: a number, max or auto (default auto)
  -t, --threads N         compute threads for prompts and generation (default: the CPU's
                          math cores; on cpu they form one persistent threadpool)
  -b, --batch-size N      prompt tokens per decode call (default: min(ctx-size, 512))
  --flash-attn MODE       on, off or auto (default auto: on where the backend supports it)
  --method NAME           in an artifact with several files, which one (e.g. Q4_K_M; mlx or
                          the MLX method, e.g. 4bit, for its mlx/ directory)
  --verify                check the file's sha256 against the artifact before loading
  --verbose               print llama.cpp's log lines to stderr
  -q, --quiet             no transcoding progress or summary on stderr`;

export const SAMPLING_OPTIONS: OptionSpec = {
  "max-tokens": { type: "string", short: "n" },
  temperature: { type: "string" },
  "top-p": { type: "string" },
  "top-k": { type: "string" },
  "min-p": { type: "string" },
  "repeat-penalty": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
};

export const SAMPLING_USAGE = `Sampling options:
  -n, --max-tokens N      tokens to generate at most (default 256)
  --temperature T         0 = greedy (default 0.8)
  --top-k N               (default 40; 0 = off)
  --top-p P               (default 0.95; 1 = off)
  --min-p P               (default 0.05; 0 = off)
  --repeat-penalty P      over the last 64 tokens (default 1 = off)
  --seed N                sampling seed (default random)
  --stop TEXT             end generation at TEXT (repeatable)`;

export function runtimeOptions(values: Values, usage: string, overrides: Partial<RuntimeOptions> = {}): RuntimeOptions {
  const gpuLayersRaw = optionalString(values, "gpu-layers");
  let gpuLayers: RuntimeOptions["gpuLayers"];
  if (gpuLayersRaw === "max" || gpuLayersRaw === "auto") gpuLayers = gpuLayersRaw;
  else if (gpuLayersRaw !== undefined) gpuLayers = optionalInt(values, "gpu-layers", 0);
  const opts: RuntimeOptions = {
    modelPath: requireString(values, "model", usage),
    backend: parseBackend(optionalString(values, "backend") ?? "auto"),
    verify: values.verify === true,
    ...overrides,
  };
  const set = <K extends keyof RuntimeOptions>(k: K, v: RuntimeOptions[K] | undefined) => {
    if (v !== undefined) opts[k] = v;
  };
  set("ctxSize", optionalInt(values, "ctx-size"));
  set("gpuLayers", gpuLayers);
  set("threads", optionalInt(values, "threads"));
  set("batchSize", optionalInt(values, "batch-size"));
  set("method", optionalString(values, "method"));
  set("flashAttention", flashAttention(optionalString(values, "flash-attn")));
  if (values.verbose === true) opts.onLog = (level, message) => process.stderr.write(`llama.cpp ${level}: ${message}\n`);
  if (values.quiet !== true && process.stderr.isTTY) {
    opts.onTranscodeProgress = (p) => {
      const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
      process.stderr.write(`\rtranscoding MLX to GGUF: tensor ${p.tensorIndex}/${p.tensorCount} (${pct}%)\x1b[K${p.tensorIndex === p.tensorCount ? "\n" : ""}`);
    };
  }
  return opts;
}

function flashAttention(v: string | undefined): RuntimeOptions["flashAttention"] {
  if (v === undefined) return undefined;
  const modes: Record<string, "auto" | boolean> = { on: true, off: false, auto: "auto" };
  const mode = modes[v];
  if (mode === undefined) throw new UsageError(`--flash-attn must be on, off or auto, got ${JSON.stringify(v)}`);
  return mode;
}

export function inferenceConfig(values: Values): InferenceConfig {
  const config: InferenceConfig = {};
  const set = <K extends keyof InferenceConfig>(k: K, v: InferenceConfig[K] | undefined) => {
    if (v !== undefined) config[k] = v;
  };
  set("maxTokens", optionalInt(values, "max-tokens"));
  set("temperature", optionalNumber(values, "temperature"));
  set("topP", optionalNumber(values, "top-p"));
  set("topK", optionalInt(values, "top-k", 0));
  set("minP", optionalNumber(values, "min-p"));
  set("repeatPenalty", optionalNumber(values, "repeat-penalty"));
  set("seed", optionalInt(values, "seed", 0));
  const stop = stringList(values, "stop");
  if (stop.some((s) => s.length === 0)) throw new UsageError("--stop needs non-empty text");
  if (stop.length > 0) config.stop = stop;
  return config;
}

/** Reads stdin to the end (for `--prompt -`). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`, { path, cause: e });
  }
}

/** One line for stderr: token counts, speeds, why it stopped. */
export function speedLine(r: GenerationResult): string {
  return (
    `[${r.promptTokens} prompt tokens, ${r.completionTokens} generated; ` +
    `prompt ${r.promptTokensPerSecond.toFixed(1)} tok/s, generation ${r.tokensPerSecond.toFixed(1)} tok/s; ` +
    `finish: ${r.finishReason}]`
  );
}

/** Ctrl-C stops generation (the text so far is kept); a second Ctrl-C is Node's default. */
export function abortOnSigint(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const handler = () => {
    process.off("SIGINT", handler);
    controller.abort();
  };
  process.on("SIGINT", handler);
  return { signal: controller.signal, dispose: () => process.off("SIGINT", handler) };
}

/**
 * One stderr line after a fresh MLX transcode: what each part became and, where not exact, the
 * measured error (printed unless --quiet; a cached transcode says nothing).
 */
export function transcodeSummary(runtime: Runtime, values: Values): void {
  const t = runtime.transcode;
  if (!t || t.cached || values.quiet === true) return;
  const parts = t.report.types
    .filter((g) => g.from !== "generated")
    .map((g) => `${g.from} -> ${g.type} ${g.exact ? "exact" : `rms err ${((g.relativeRmsError ?? 0) * 100).toFixed(3)}%`} (${g.tensors})`);
  process.stderr.write(`transcoded ${t.report.source} to GGUF in ${t.report.seconds.toFixed(1)} s: ${parts.join(", ")}; cached at ${t.path}\n`);
}
