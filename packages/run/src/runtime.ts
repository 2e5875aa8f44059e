import { basename } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import { selectBackend } from "./backends/select.js";
import type { LoadedModel, ModelInfo } from "./backends/types.js";
import { runBenchmark, type BenchmarkOptions, type BenchmarkResult } from "./benchmark.js";
import { type ChatMessage, renderChat, type RenderedChat } from "./chat-template.js";
import { type BackendName, type ChatConfig, type InferenceConfig, parseBackend, resolveSampling, type RuntimeOptions } from "./config.js";
import { ContextOverflowError, ModelStateError } from "./errors.js";
import { generatePieces, type GenerationResult, GenerationState } from "./generation.js";
import { chooseFile, type ModelSource, openModelSource, verifyChecksum } from "./model-source.js";

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
 * async); generate raw continuations, chat with the model's template, embed, benchmark. Calls
 * run one at a time (one KV cache); concurrent calls wait their turn.
 */
export class Runtime {
  private queue: Promise<void> = Promise.resolve();
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
    /** Seconds spent loading (backend start, weights, context). */
    readonly loadSeconds: number,
  ) {}

  static async load(options: RuntimeOptions): Promise<Runtime> {
    const t0 = performance.now();
    const source = await openModelSource(options.modelPath);
    const backend = await selectBackend(parseBackend(options.backend ?? "auto"), source.formats);
    const chosen = await chooseFile(source, backend.format, options.method);
    if (options.verify === true) await verifyChecksum(chosen);
    const engine = await backend.load({
      modelFile: chosen.file,
      ...pick(options, ["ctxSize", "gpuLayers", "threads", "batchSize", "flashAttention", "onLog", "signal"]),
    });
    return new Runtime(engine, options, source, chosen.file, chosen.method, (performance.now() - t0) / 1000);
  }

  get backend(): BackendName {
    return this.engine.backend;
  }

  get info(): ModelInfo {
    return this.engine.info;
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

  /** Continues `prompt` as raw text (no chat template). */
  generate(prompt: string, config: InferenceConfig & { stream: true }): GenerationStream;
  generate(prompt: string, config?: InferenceConfig & { stream?: false }): Promise<GenerationResult>;
  generate(prompt: string, config?: InferenceConfig): GenerationStream | Promise<GenerationResult>;
  generate(prompt: string, config: InferenceConfig = {}): GenerationStream | Promise<GenerationResult> {
    return this.respond(config, () => {
      if (typeof prompt !== "string") throw new InputError(`the prompt must be a string, got ${typeof prompt}`, { code: "E_PROMPT" });
      const tokens = this.tokenize(prompt);
      if (tokens.length === 0) throw new InputError("the prompt is empty and this model adds no BOS token; give a prompt", { code: "E_PROMPT" });
      return { tokens, reusePrefix: false };
    });
  }

  /** Answers the last message, using the model's chat template over the whole history. */
  chat(messages: readonly ChatMessage[], config: ChatConfig & { stream: true }): GenerationStream;
  chat(messages: readonly ChatMessage[], config?: ChatConfig & { stream?: false }): Promise<GenerationResult>;
  chat(messages: readonly ChatMessage[], config?: ChatConfig): GenerationStream | Promise<GenerationResult>;
  chat(messages: readonly ChatMessage[], config: ChatConfig = {}): GenerationStream | Promise<GenerationResult> {
    // Chat turns share their history's prefix, so its KV cache is kept between calls.
    return this.respond(config, () => ({ tokens: this.applyChatTemplate(messages, config.chatTemplateKwargs).tokens, reusePrefix: true }));
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

  /** One vector per text, of the model's embedding width. */
  async embed(texts: readonly string[]): Promise<number[][]> {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) throw new InputError("embed takes an array of strings", { code: "E_PROMPT" });
    return this.exclusive(async () => {
      const out: number[][] = [];
      for (const t of texts) out.push(await this.engine.embed(t));
      return out;
    });
  }

  /** Prompt-processing and generation speed, llama-bench style. */
  async benchmark(options: BenchmarkOptions = {}): Promise<BenchmarkResult> {
    return this.exclusive(() => runBenchmark(this.engine, { ...options, loadSeconds: this.loadSeconds, model: this.name }));
  }

  /** Frees the model and its context; later calls fail with E_UNLOADED. */
  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    await this.queue;
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
      const request = { promptTokens: tokens, sampling, reusePrefix, signal: config.signal };
      const run = (state: GenerationState) => this.exclusiveStream(() => generatePieces(this.engine, request, state));
      return new GenerationStream(run, new GenerationState(tokens.length));
    };
    if (config.stream === true) return make();
    return Promise.resolve().then(() => make().collect());
  }

  private checkLoaded(): void {
    if (this.unloaded) throw new ModelStateError("E_UNLOADED", `${this.name} has been unloaded; load it again`);
  }

  /** Runs `fn` after every earlier call has finished. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.checkLoaded();
    const prev = this.queue;
    let release!: () => void;
    this.queue = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Like exclusive(), holding the turn from the first piece until the stream ends or is abandoned. */
  private async *exclusiveStream(fn: () => AsyncGenerator<string, void, void>): AsyncGenerator<string, void, void> {
    this.checkLoaded();
    const prev = this.queue;
    let release!: () => void;
    this.queue = new Promise((r) => (release = r));
    try {
      await prev;
      this.checkLoaded();
      yield* fn();
    } finally {
      release();
    }
  }
}

function pick<T extends object, K extends keyof T>(obj: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}
