import type { TranscodeProgress } from "./mlx/transcode.js";
import { UsageError } from "@llama-pajamas/artifact";
import type { GrammarSpec } from "./backends/types.js";

/** Backends a caller may ask for; `auto` picks the best one available. */
export const BACKEND_NAMES = ["auto", "cpu", "cuda", "vulkan", "metal", "mlx"] as const;
export type BackendRequest = (typeof BACKEND_NAMES)[number];
export type BackendName = Exclude<BackendRequest, "auto">;

/** How to load a model. Names follow llama.cpp's flags (ctx-size, gpu-layers, threads, batch-size). */
export interface RuntimeOptions {
  /** A .gguf file, an artifact directory (with manifest.json) or an MLX directory. */
  modelPath: string;
  /** Default "auto". */
  backend?: BackendRequest;
  /** Context window in tokens; default min(4096, the model's training context), as llama.cpp's default. */
  ctxSize?: number;
  /**
   * Flash attention (llama.cpp's --flash-attn); default "auto", which llama.cpp turns on where
   * the backend supports it. Its results differ slightly between llama.cpp builds (see README).
   */
  flashAttention?: "auto" | boolean;
  /** Layers offloaded to the GPU: a count, "max" or "auto" (default; 0 on cpu). */
  gpuLayers?: number | "max" | "auto";
  /**
   * Compute threads for prompts and generation. Default: the CPU's math cores, as llama.cpp's
   * `cpu_get_num_math()`; on the cpu backend they form one persistent ggml threadpool
   * (backends/llama-direct.ts).
   */
  threads?: number;
  /** Tokens per llama_decode call while reading a prompt (n_batch = n_ubatch); default min(ctxSize, 512). */
  batchSize?: number;
  /** Check the chosen file's sha256 against the artifact's manifest (or gguf/metadata.json). */
  verify?: boolean;
  /** In an artifact with several GGUF files, the quantization method to load ("Q4_K_M"); default the first listed. */
  method?: string;
  /** A Jinja chat template that replaces the model's own (tokenizer.chat_template). */
  chatTemplate?: string;
  /**
   * Generations that run at once (llama.cpp's --parallel): one context with this many
   * sequences, each of ctxSize tokens, batched together; more calls wait. Default 1.
   */
  parallel?: number;
  /**
   * Run every llama_decode on the JS thread, however long (the cpu and cuda backends): a few
   * percent faster on CUDA than a worker thread, but the event loop waits meanwhile. For
   * command-line tools; default off: decodes that take more than a few ms go to a worker.
   */
  mainThreadDecodes?: boolean;
  /** Progress of transcoding an MLX model to GGUF (first load on a machine without MLX only). */
  onTranscodeProgress?: (p: TranscodeProgress) => void;
  /** llama.cpp's log lines (the library itself never prints). */
  onLog?: (level: LogLevel, message: string) => void;
  signal?: AbortSignal;
}

export type LogLevel = "error" | "warn" | "info" | "debug";

/** Sampling and stopping, the seed's InferenceConfig. Defaults follow llama.cpp's common_params_sampling. */
export interface InferenceConfig {
  /** Default 256; generation also stops when the context is full (finishReason "length"). */
  maxTokens?: number;
  /** 0 = greedy. Default 0.8. */
  temperature?: number;
  /** Default 0.95 (1 disables). */
  topP?: number;
  /** Default 40 (0 disables). */
  topK?: number;
  /** Default 0.05 (0 disables). */
  minP?: number;
  /** Penalty on the last 64 tokens; default 1 (off), as llama.cpp's penalty_repeat. */
  repeatPenalty?: number;
  /** Sampling seed; default random. */
  seed?: number;
  /** Strings that end generation; they are not included in the text. */
  stop?: string[];
  /** Subtracted from the logit of every token seen in the last 64 (prompt and output); default 0 (off). */
  presencePenalty?: number;
  /** Subtracted per occurrence in the last 64 tokens; default 0 (off). */
  frequencyPenalty?: number;
  /** Only text the grammar allows is generated (see Runtime.jsonSchemaGrammar). */
  grammar?: GrammarSpec;
  /** Record each generated token's log-probability and this many likeliest alternatives (0-20) in `result.logprobs`. */
  logprobs?: number;
  /** Keep the KV cache of a prefix shared with an earlier call (llama-server's cache_prompt); default: chat yes, generate no. */
  cachePrompt?: boolean;
  /** Return an async iterable of text pieces instead of a result. */
  stream?: boolean;
  /** Ends generation early with finishReason "abort" and the text so far. */
  signal?: AbortSignal;
}

/** Chat adds the variables some templates read (Qwen3's enable_thinking, ...). */
export interface ChatConfig extends InferenceConfig {
  chatTemplateKwargs?: Record<string, unknown>;
}

export interface ResolvedSampling {
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repeatPenalty: number;
  repeatLastN: number;
  seed: number | undefined;
  stop: string[];
  /** Present only when set (0 = off). */
  presencePenalty?: number;
  frequencyPenalty?: number;
}

export const DEFAULT_MAX_TOKENS = 256;
/** llama.cpp's penalty_last_n. */
const REPEAT_LAST_N = 64;

function check(name: string, v: number | undefined, ok: (n: number) => boolean, expected: string): void {
  if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || !ok(v))) {
    throw new UsageError(`${name} must be ${expected}, got ${JSON.stringify(v)}`);
  }
}

/** Fills defaults and rejects out-of-range values with a UsageError naming the field. */
export function resolveSampling(config: InferenceConfig = {}): ResolvedSampling {
  check("maxTokens", config.maxTokens, (n) => Number.isInteger(n) && n >= 1, "an integer >= 1");
  check("temperature", config.temperature, (n) => n >= 0, ">= 0");
  check("topP", config.topP, (n) => n > 0 && n <= 1, "in (0, 1]");
  check("topK", config.topK, (n) => Number.isInteger(n) && n >= 0, "an integer >= 0");
  check("minP", config.minP, (n) => n >= 0 && n <= 1, "in [0, 1]");
  check("repeatPenalty", config.repeatPenalty, (n) => n > 0, "> 0");
  check("seed", config.seed, (n) => Number.isInteger(n) && n >= 0, "an integer >= 0");
  check("presencePenalty", config.presencePenalty, (n) => n >= -2 && n <= 2, "in [-2, 2]");
  check("frequencyPenalty", config.frequencyPenalty, (n) => n >= -2 && n <= 2, "in [-2, 2]");
  const stop = config.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string" || s.length === 0)) {
    throw new UsageError(`stop must be an array of non-empty strings, got ${JSON.stringify(config.stop)}`);
  }
  return {
    maxTokens: config.maxTokens ?? DEFAULT_MAX_TOKENS,
    temperature: config.temperature ?? 0.8,
    topP: config.topP ?? 0.95,
    topK: config.topK ?? 40,
    minP: config.minP ?? 0.05,
    repeatPenalty: config.repeatPenalty ?? 1,
    repeatLastN: REPEAT_LAST_N,
    seed: config.seed,
    stop,
    ...(config.presencePenalty ? { presencePenalty: config.presencePenalty } : {}),
    ...(config.frequencyPenalty ? { frequencyPenalty: config.frequencyPenalty } : {}),
  };
}

export function parseBackend(value: string): BackendRequest {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendRequest;
  throw new UsageError(`unknown backend ${JSON.stringify(value)}; backends: ${BACKEND_NAMES.join(", ")}`);
}
