import type { BackendName, LogLevel, ResolvedSampling } from "../config.js";

/**
 * The one backend interface. A Backend loads a model file into a LoadedModel; the Runtime
 * drives a LoadedModel with tokens and never sees the engine behind it (llama.cpp: libllama
 * driven directly for cpu/cuda, through node-llama-cpp's API for vulkan/metal; MLX later).
 */
export interface Backend {
  readonly name: BackendName;
  /** The artifact format this backend loads. */
  readonly format: "gguf" | "mlx";
  /** Undefined when the backend can run here, else why not (for error messages). */
  unavailableReason(): Promise<string | undefined>;
  load(options: LoadOptions): Promise<LoadedModel>;
}

export interface LoadOptions {
  modelFile: string;
  ctxSize?: number;
  gpuLayers?: number | "max" | "auto";
  threads?: number;
  batchSize?: number;
  flashAttention?: "auto" | boolean;
  onLog?: (level: LogLevel, message: string) => void;
  signal?: AbortSignal;
  /** Sequences (independent KV caches, "slots") on the one context, each of ctxSize tokens; default 1. */
  sequences?: number;
  /** See RuntimeOptions.mainThreadDecodes. */
  mainThreadDecodes?: boolean;
}

export interface ModelInfo {
  /** GGUF general.architecture ("llama", "qwen3"). */
  architecture: string;
  /** The context this runtime allocated, in tokens. */
  contextSize: number;
  trainContextSize: number;
  embeddingSize: number;
  vocabularySize: number;
  parameterCount: number;
  /** Threads for prompt batches (llama.cpp's n_threads_batch). */
  threads: number;
  /** Threads for generation steps, one token per sequence (llama.cpp's n_threads). */
  generationThreads: number;
  batchSize: number;
  flashAttention: "auto" | boolean;
  gpuLayers: number;
  sizeBytes: number;
  /** The model's Jinja chat template, if it has one. */
  chatTemplate: string | undefined;
  bosToken: { id: number; text: string } | undefined;
  eosToken: { id: number; text: string } | undefined;
  /** Whether tokenizing a prompt starts with BOS (GGUF tokenizer.ggml.add_bos_token). */
  addBos: boolean;
  /** Sequences on the context that can generate at once (each holds contextSize tokens). */
  sequences: number;
}

/** A GBNF grammar (llama.cpp's grammars/README.md syntax) that sampled text must follow. */
export interface GrammarSpec {
  gbnf: string;
  /** The start rule; default "root". */
  rootRule?: string;
}

/** One sampled token's log-probability and the most likely alternatives at that step. */
export interface TokenLogprob {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

/** What generation asks of the engine for each call. */
export interface SampleRequest {
  tokens: number[];
  sampling: ResolvedSampling;
  /** Keep the KV cache for the prefix shared with the previous call (chat turns). */
  reusePrefix: boolean;
  /** Told how many prompt tokens are evaluated (the rest came from the cache). */
  onPrefill?: (evaluatedTokens: number) => void;
  /** The sequence (slot) to run on, 0 <= sequence < info.sequences; default 0. */
  sequence?: number;
  /** Only tokens the grammar allows are sampled; once it is complete, only end-of-generation. */
  grammar?: GrammarSpec;
  /**
   * Called with each sampled token's log-probability and the `top` likeliest: the model's own
   * distribution (log-softmax of the logits) on cpu/cuda, the sampler chain's on vulkan/metal.
   */
  logprobs?: { top: number; onToken: (entry: TokenLogprob) => void };
}

export interface LoadedModel {
  readonly backend: BackendName;
  readonly info: ModelInfo;
  /** Text to token ids; `special` parses control-token text such as "<|im_start|>". Never adds BOS. */
  tokenize(text: string, special: boolean): number[];
  /** Token ids to text; `previous` gives the tokens before them (for SentencePiece's leading space). */
  detokenize(tokens: readonly number[], previous?: readonly number[]): string;
  /**
   * Evaluates `tokens` and yields sampled tokens, one per decode, until an end-of-generation
   * token ("eog") or a full context ("context-full"; never shifted: old tokens are not dropped).
   * The caller stops pulling for maxTokens, stop strings and aborts.
   */
  sample(request: SampleRequest): AsyncGenerator<number, "eog" | "context-full", void>;
  /** The most tokens a sequence holds: prompt plus generated tokens that were evaluated. */
  readonly maxContextTokens: number;
  /** A sentence embedding: the engine's pooled vector, or the last token's when it has no pooling. */
  embed(text: string): Promise<number[]>;
  /** A GBNF grammar for JSON that follows `schema` (the engine's JSON-schema subset); throws on what it cannot express. */
  jsonSchemaGrammar(schema: unknown): Promise<GrammarSpec>;
  /** Renders a Jinja template with the engine's own Jinja implementation. */
  renderTemplate(template: string, variables: Record<string, unknown>): string;
  /** Benchmark primitives: time to evaluate `tokens` in batches from an empty context (seconds). */
  timePromptProcessing(tokens: number[]): Promise<number>;
  /** Time to decode `count` tokens one at a time from an empty context, each with logits (seconds). */
  timeGeneration(count: number, nextToken: (i: number) => number): Promise<number>;
  dispose(): Promise<void>;
}
