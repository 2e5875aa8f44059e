import { basename, resolve } from "node:path";
import { InputError, UsageError } from "@llama-pajamas/artifact";
import { selectBackend } from "./backends/select.js";
import type { GrammarSpec, LoadedModel, ModelInfo, TokenLogprob } from "./backends/types.js";
import { runBenchmark, type BenchmarkOptions, type BenchmarkResult } from "./benchmark.js";
import { type ChatMessage, renderChat, type RenderedChat } from "./chat-template.js";
import { type BackendName, type ChatConfig, type InferenceConfig, parseBackend, resolveSampling, type RuntimeOptions } from "./config.js";
import { ContextOverflowError, ModelStateError } from "./errors.js";
import { generatePieces, type GenerationRequest, type GenerationResult, GenerationState } from "./generation.js";
import { type ChosenFile, chooseFile, type ModelSource, openModelSource, verifyChecksum, verifyMLXFiles } from "./model-source.js";
import { mlxBackend } from "./backends/mlx.js";
import { ensureTranscoded, type TranscodedModel } from "./mlx/cache.js";
import { SlotPool } from "./slot-pool.js";

/** A sanity bound on --parallel: each sequence holds a whole context of KV cache. */
const MAX_PARALLEL = 256;
/** OpenAI's bound on top_logprobs. */
const MAX_TOP_LOGPROBS = 20;

/**
 * Text pieces as they are generated. `result` settles once the stream has been read to the
 * end (or the reader stopped early: finishReason "abort"); reading is what drives generation.
 */
export class GenerationStream implements AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
  private started = false;
  private settle!: { resolve: (r: GenerationResult) => void; reject: (e: unknown) => void };

  constructor(private readonly run: (state: GenerationState) => AsyncGenerator<string, void, void>, private readonly state: GenerationState) {
    this.result = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // A caller that only iterates must not get an unhandled rejection from `result`.
    this.result.catch(() => undefined);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string, void, void> {
    if (this.started) throw new InputError("a GenerationStream can be read only once", { code: "E_STREAM_REUSED" });
    this.started = true;
    let failed = false;
    try {
      yield* this.run(this.state);
    } catch (e) {
      failed = true;
      this.settle.reject(e);
      throw e;
    } finally {
      if (!failed) this.settle.resolve(this.state.result());
    }
  }

  /** What has been generated so far (live views, for callers that report per piece). */
  get progress(): { readonly tokens: readonly number[]; readonly logprobs: readonly TokenLogprob[] | undefined } {
    return { tokens: this.state.tokens, logprobs: this.state.logprobs };
  }

  /** Reads the whole stream and returns the result. */
  async collect(): Promise<GenerationResult> {
    for await (const _ of this) {
      // pieces are in the result's text
    }
    return this.result;
  }
}

/**
 * A loaded model on one backend: the seed's Runtime. Load with `Runtime.load` (loading is
 * async); generate raw continuations, chat with the model's template, embed, benchmark.
 * Generations run `parallel` at a time (default 1), each on its own sequence of the one
 * context, batched together by the engine; more wait their turn. Embeddings run one at a time.
 */
export class Runtime {
  private readonly slots: SlotPool;
  private embedQueue: Promise<void> = Promise.resolve();
  private unloaded = false;

  private constructor(
    private readonly engine: LoadedModel,
    private readonly options: RuntimeOptions,
    /** What the model path was (file, artifact, MLX directory). */
    readonly source: ModelSource,
    /** The file loaded (inside the artifact, for a directory). */
    readonly modelFile: string,
    /** Quantization method, when the artifact records it. */
    readonly method: string | undefined,
    /** Seconds spent loading (backend start, weights, context; transcoding an MLX model included). */
    readonly loadSeconds: number,
    /** For an MLX model run by llama.cpp: its GGUF transcode, whether it was cached, how it was made. */
    readonly transcode?: TranscodedModel,
  ) {
    this.slots = new SlotPool(engine.info.sequences);
  }

  static async load(options: RuntimeOptions): Promise<Runtime> {
    const t0 = performance.now();
    const source = await openModelSource(options.modelPath);
    // Without an MLX engine, llama.cpp backends run MLX models through a GGUF transcode.
    const mlxOnly = source.formats.includes("mlx") && !source.formats.includes("gguf");
    const offered = mlxOnly && (await mlxBackend.unavailableReason()) !== undefined ? [...source.formats, "gguf" as const] : source.formats;
    const backend = await selectBackend(parseBackend(options.backend ?? "auto"), offered);
    const parallel = options.parallel ?? 1;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) {
      throw new UsageError(`parallel must be an integer from 1 to ${MAX_PARALLEL}, got ${JSON.stringify(options.parallel)}`);
    }
    let chosen: ChosenFile;
    let transcoded: TranscodedModel | undefined;
    if (backend.format === "gguf" && (!source.formats.includes("gguf") || mlxMethod(source, options.method))) {
      // An MLX model on a llama.cpp backend: its GGUF transcode (made once, then cached).
      const mlx = await chooseFile(source, "mlx", options.method?.toLowerCase() === "mlx" ? undefined : options.method);
      if (options.verify === true) await verifyMLXFiles(mlx);
      transcoded = await ensureTranscoded(resolve(mlx.file), {
        ...(options.onTranscodeProgress ? { onProgress: options.onTranscodeProgress } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      chosen = { file: transcoded.path, ...(mlx.method !== undefined ? { method: mlx.method } : {}) };
    } else {
      chosen = await chooseFile(source, backend.format, options.method);
      if (options.verify === true) await verifyChecksum(chosen);
    }
    const engine = await backend.load({
      modelFile: chosen.file,
      ...pick(options, ["ctxSize", "gpuLayers", "threads", "batchSize", "flashAttention", "onLog", "signal", "mainThreadDecodes"]),
      ...(parallel > 1 ? { sequences: parallel } : {}),
    });
    return new Runtime(engine, options, source, chosen.file, chosen.method, (performance.now() - t0) / 1000, transcoded);
  }

  get backend(): BackendName {
    return this.engine.backend;
  }

  get info(): ModelInfo {
    return this.engine.info;
  }

  /** Generations running now, waiting for a sequence, and how many can run at once. */
  get occupancy(): { running: number; waiting: number; parallel: number } {
    return { running: this.slots.busy, waiting: this.slots.waiting, parallel: this.slots.size };
  }

  /** The Jinja chat template chat() renders: the chatTemplate option, else the model's own. */
  get chatTemplate(): string | undefined {
    return this.options.chatTemplate ?? this.engine.info.chatTemplate;
  }

  /** Model name for messages: the artifact directory or the file's name. */
  get name(): string {
    return basename(this.source.path);
  }

  /** Text to tokens as generate() reads a prompt: control-token text parsed, BOS where the model adds one. */
  tokenize(text: string): number[] {
    this.checkLoaded();
    const { bosToken, addBos } = this.engine.info;
    const tokens = this.engine.tokenize(text, true);
    return addBos && bosToken !== undefined ? [bosToken.id, ...tokens] : tokens;
  }

  detokenize(tokens: readonly number[]): string {
    this.checkLoaded();
    return this.engine.detokenize(tokens);
  }

  /** Continues `prompt` as raw text (no chat template); token ids are read as they are (no BOS added). */
  generate(prompt: string | readonly number[], config: InferenceConfig & { stream: true }): GenerationStream;
  generate(prompt: string | readonly number[], config?: InferenceConfig & { stream?: false }): Promise<GenerationResult>;
  generate(prompt: string | readonly number[], config?: InferenceConfig): GenerationStream | Promise<GenerationResult>;
  generate(prompt: string | readonly number[], config: InferenceConfig = {}): GenerationStream | Promise<GenerationResult> {
    return this.respond(config, () => {
      const tokens = typeof prompt === "string" ? this.tokenize(prompt) : this.checkTokens(prompt);
      if (tokens.length === 0) throw new InputError("the prompt is empty and this model adds no BOS token; give a prompt", { code: "E_PROMPT" });
      return { tokens, reusePrefix: config.cachePrompt ?? false };
    });
  }

  /** Answers the last message, using the model's chat template over the whole history. */
  chat(messages: readonly ChatMessage[], config: ChatConfig & { stream: true }): GenerationStream;
  chat(messages: readonly ChatMessage[], config?: ChatConfig & { stream?: false }): Promise<GenerationResult>;
  chat(messages: readonly ChatMessage[], config?: ChatConfig): GenerationStream | Promise<GenerationResult>;
  chat(messages: readonly ChatMessage[], config: ChatConfig = {}): GenerationStream | Promise<GenerationResult> {
    // Chat turns share their history's prefix, so its KV cache is kept between calls.
    return this.respond(config, () => ({ tokens: this.applyChatTemplate(messages, config.chatTemplateKwargs).tokens, reusePrefix: config.cachePrompt ?? true }));
  }

  /** The exact text and tokens chat() feeds the model for `messages`. */
  applyChatTemplate(messages: readonly ChatMessage[], kwargs?: Record<string, unknown>): RenderedChat {
    this.checkLoaded();
    return renderChat(this.engine, {
      template: this.options.chatTemplate ?? this.engine.info.chatTemplate,
      messages,
      ...(kwargs ? { kwargs } : {}),
      modelName: this.name,
    });
  }

  /** A grammar for JSON that follows `schema` (a JSON Schema subset), for InferenceConfig.grammar. */
  async jsonSchemaGrammar(schema: unknown): Promise<GrammarSpec> {
    this.checkLoaded();
    return this.engine.jsonSchemaGrammar(schema);
  }

  /** One vector per text, of the model's embedding width. */
  async embed(texts: readonly string[]): Promise<number[][]> {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) throw new InputError("embed takes an array of strings", { code: "E_PROMPT" });
    return this.embedExclusive(async () => {
      const out: number[][] = [];
      for (const t of texts) out.push(await this.engine.embed(t));
      return out;
    });
  }

  /** Prompt-processing and generation speed, llama-bench style. */
  async benchmark(options: BenchmarkOptions = {}): Promise<BenchmarkResult> {
    return this.exclusive(() => this.embedExclusive(() => runBenchmark(this.engine, { ...options, loadSeconds: this.loadSeconds, model: this.name })));
  }

  /** Frees the model and its context; later calls fail with E_UNLOADED. */
  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    const release = await this.slots.acquireAll();
    await this.embedQueue;
    release();
    await this.engine.dispose();
  }

  private respond(config: InferenceConfig, prepare: () => { tokens: number[]; reusePrefix: boolean }): GenerationStream | Promise<GenerationResult> {
    const make = (): GenerationStream => {
      this.checkLoaded();
      const sampling = resolveSampling(config);
      const { tokens, reusePrefix } = prepare();
      const room = this.engine.maxContextTokens;
      if (tokens.length > room) {
        const ctx = this.engine.info.contextSize;
        throw new ContextOverflowError(
          `the prompt is ${tokens.length} tokens, but the context holds ${ctx} (--ctx-size), which leaves room for ` +
            `prompts of up to ${room}; shorten the prompt or raise --ctx-size (the model was trained on ${this.engine.info.trainContextSize})`,
          { promptTokens: tokens.length, contextSize: ctx },
        );
      }
      if (config.logprobs !== undefined && (!Number.isInteger(config.logprobs) || config.logprobs < 0 || config.logprobs > MAX_TOP_LOGPROBS)) {
        throw new UsageError(`logprobs must be an integer from 0 to ${MAX_TOP_LOGPROBS}, got ${JSON.stringify(config.logprobs)}`);
      }
      const request = {
        promptTokens: tokens,
        sampling,
        reusePrefix,
        signal: config.signal,
        ...(config.grammar !== undefined ? { grammar: config.grammar } : {}),
        ...(config.logprobs !== undefined ? { logprobs: config.logprobs } : {}),
      };
      const run = (state: GenerationState) => this.slotStream(request, state);
      return new GenerationStream(run, new GenerationState(tokens.length));
    };
    if (config.stream === true) return make();
    return Promise.resolve().then(() => make().collect());
  }

  private checkTokens(tokens: readonly number[]): number[] {
    const vocab = this.engine.info.vocabularySize;
    if (!Array.isArray(tokens) || tokens.some((t) => !Number.isInteger(t) || t < 0 || (vocab > 0 && t >= vocab))) {
      throw new InputError(`the prompt must be a string or token ids from 0 to ${vocab - 1}`, { code: "E_PROMPT" });
    }
    return [...tokens];
  }

  private checkLoaded(): void {
    if (this.unloaded) throw new ModelStateError("E_UNLOADED", `${this.name} has been unloaded; load it again`);
  }

  /** Runs `fn` holding every sequence, after the generations before it have finished. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.checkLoaded();
    const release = await this.slots.acquireAll();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Runs `fn` after the embeddings before it (the one embedding context). */
  private async embedExclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.checkLoaded();
    const prev = this.embedQueue;
    let release!: () => void;
    this.embedQueue = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Generates on a sequence of its own, taken from the first piece until the stream ends or is
   * abandoned. A call whose signal fires while it waits ends at once (finishReason "abort").
   */
  private async *slotStream(request: GenerationRequest, state: GenerationState): AsyncGenerator<string, void, void> {
    this.checkLoaded();
    const slot = await this.slots.acquire({ tokens: request.promptTokens, signal: request.signal });
    try {
      if (slot !== undefined) this.checkLoaded();
      // Without a slot the signal has fired, and generatePieces returns before using the engine.
      yield* generatePieces(this.engine, { ...request, sequence: slot ?? 0 }, state);
    } finally {
      if (slot !== undefined) this.slots.release(slot, [...request.promptTokens, ...state.tokens]);
    }
  }
}

function pick<T extends object, K extends keyof T>(obj: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

/** Whether `method` names the artifact's MLX entry ("mlx" or its own method, e.g. "4bit"). */
function mlxMethod(source: ModelSource, method: string | undefined): boolean {
  if (method === undefined || source.manifest === undefined) return false;
  const m = method.toLowerCase();
  return source.manifest.formats.some((f) => f.type === "mlx" && (m === "mlx" || f.method.toLowerCase() === m));
}
