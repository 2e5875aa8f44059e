// The one module that touches node-llama-cpp's API. It serves the cuda, vulkan and metal
// backends: one engine whose GPU type is a load parameter, so the three are one file with a
// table rather than three copies. The cpu backend drives libllama directly (llama-direct.ts: a
// persistent threadpool, which node-llama-cpp's context lacks) and borrows two things from here:
// the Jinja renderer and the JSON-schema converter. node-llama-cpp is imported lazily so
// `--help` and usage errors never load native code.
import type { Llama, LlamaContext, LlamaContextSequence, LlamaEmbeddingContext, LlamaGpuType, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import { InputError } from "@llama-pajamas/artifact";
import type { BackendName, LogLevel } from "../config.js";
import { ContextOverflowError, ModelStateError } from "../errors.js";
import { BatchGatherer, serializeSampling } from "./llama-cpp-batching.js";
import { nativeContext, sequenceId, timeOneTokenDecodes } from "./llama-cpp-threads.js";
import type { Backend, GrammarSpec, LoadedModel, LoadOptions, ModelInfo, SampleRequest, TokenLogprob } from "./types.js";

export type LlamaCppBackendName = "cpu" | "cuda" | "vulkan" | "metal";
const GPU_TYPE: Record<LlamaCppBackendName, LlamaGpuType> = { cpu: false, cuda: "cuda", vulkan: "vulkan", metal: "metal" };
/** llama.cpp's default n_ctx; a model trained on less gets its own size. */
const DEFAULT_CTX_SIZE = 4096;
/** Recent llama.cpp warnings and errors, quoted when a load fails (llama.cpp says why only in its log). */
const RECENT_LOG_LINES = 8;
const LOG_SETTLE_MS = 50;
/** Parsed grammars kept for reuse (a server sees the same response_format again and again). */
const MAX_CACHED_GRAMMARS = 32;
/**
 * node-llama-cpp's JSON-schema grammars end in four newlines (its LlamaChat stops on them);
 * sampled directly, the grammar should end with the JSON so that only end-of-generation follows.
 */
const SCHEMA_GRAMMAR_TAIL = ' "\\n\\n\\n\\n" [\\n]*';

type NodeLlamaCpp = typeof import("node-llama-cpp");
let moduleP: Promise<NodeLlamaCpp> | undefined;
const nodeLlamaCpp = (): Promise<NodeLlamaCpp> => (moduleP ??= import("node-llama-cpp"));

// One Llama per GPU type, shared by every model: starting the binding takes about a second and
// its log hook is process-wide.
const llamas = new Map<LlamaCppBackendName, Promise<Llama>>();
const logListeners = new Set<(level: LogLevel, message: string) => void>();
const recentLog: string[] = [];

function onLlamaLog(level: string, message: string): void {
  const lvl: LogLevel = level === "fatal" || level === "error" ? "error" : level === "warn" ? "warn" : level === "debug" ? "debug" : "info";
  const text = message.trimEnd();
  if (lvl === "error" || lvl === "warn") {
    recentLog.push(text);
    if (recentLog.length > RECENT_LOG_LINES) recentLog.shift();
  }
  for (const l of logListeners) l(lvl, text);
}

let gpuTypesP: Promise<LlamaGpuType[]> | undefined;
/** GPU types whose prebuilt binaries and drivers are present (false = cpu). */
async function supportedGpuTypes(): Promise<LlamaGpuType[]> {
  gpuTypesP ??= nodeLlamaCpp().then((m) => m.getLlamaGpuTypes("supported"));
  return gpuTypesP;
}

async function getLlamaFor(name: LlamaCppBackendName): Promise<Llama> {
  let p = llamas.get(name);
  if (p === undefined) {
    p = nodeLlamaCpp().then((m) =>
      m.getLlama({
        gpu: GPU_TYPE[name],
        // Never download or compile: only prebuilt binaries that load as they are.
        build: "never",
        skipDownload: true,
        progressLogs: false,
        // Threads are set per context; no process-wide cap (its default, 4, would override --threads).
        maxThreads: 0,
        logLevel: m.LlamaLogLevel.warn,
        logger: onLlamaLog,
      }),
    );
    llamas.set(name, p);
    p.catch(() => llamas.delete(name));
  }
  return p;
}

export function llamaCppBackend(name: LlamaCppBackendName): Backend {
  return {
    name,
    format: "gguf",
    async unavailableReason() {
      const types = await supportedGpuTypes();
      if (!types.includes(GPU_TYPE[name])) return `node-llama-cpp has no working ${name} binary or driver on this machine`;
      return undefined;
    },
    async load(options) {
      let llama: Llama;
      try {
        llama = await getLlamaFor(name);
      } catch (e) {
        throw new InputError(`the ${name} backend failed to start: ${(e as Error).message}`, { cause: e, code: "E_BACKEND" });
      }
      return LlamaCppModel.load(name, llama, options);
    },
  };
}

/**
 * What llama.cpp said before a failure, or nothing. Its log lines reach JS through a
 * non-blocking thread-safe call, so they can arrive after the failed load's rejection: wait
 * briefly for them (failure path only).
 */
async function logContext(): Promise<string> {
  await new Promise((r) => setTimeout(r, LOG_SETTLE_MS));
  const lines = recentLog.splice(0).filter((l) => l.length > 0);
  return lines.length > 0 ? ` (llama.cpp: ${lines.slice(-3).join("; ")})` : "";
}

export interface JinjaRenderer {
  render(variables: Record<string, unknown>): string;
}

/** node-llama-cpp's Llama for a GPU type (shared; starts it on first use). */
export function llamaFor(name: LlamaCppBackendName): Promise<Llama> {
  return getLlamaFor(name);
}

/** A GBNF grammar for `schema` from node-llama-cpp's JSON-schema converter. */
export async function jsonSchemaGrammarWith(llama: Llama, schema: unknown): Promise<GrammarSpec> {
  let gbnf: string;
  try {
    gbnf = (await llama.createGrammarForJsonSchema(schema as never)).grammar;
  } catch (e) {
    throw new InputError(`the JSON schema cannot be turned into a grammar: ${(e as Error).message}`, { cause: e, code: "E_GRAMMAR" });
  }
  return { gbnf: gbnf.replace(SCHEMA_GRAMMAR_TAIL, "") };
}

/**
 * Renders with llama.cpp's own Jinja engine (common/jinja, the one llama-server uses), which
 * node-llama-cpp ships but exposes only on its bindings object; the package is pinned to
 * exactly 3.21.1. `renderers` caches the parsed templates.
 */
export function renderTemplateWith(llama: Llama, renderers: Map<string, JinjaRenderer>, template: string, variables: Record<string, unknown>): string {
  let r = renderers.get(template);
  try {
    if (r === undefined) {
      const bindings = (llama as unknown as { _bindings?: { AddonJinjaRenderer?: new (t: string) => JinjaRenderer } })._bindings;
      if (bindings?.AddonJinjaRenderer === undefined) throw new Error("node-llama-cpp has no native Jinja renderer");
      r = new bindings.AddonJinjaRenderer(template);
      renderers.set(template, r);
    }
    return r.render(variables);
  } catch (e) {
    throw new ModelStateError("E_TEMPLATE", `the chat template cannot be rendered: ${(e as Error).message}`, { cause: e });
  }
}

class LlamaCppModel implements LoadedModel {
  private embedContext: LlamaEmbeddingContext | undefined;
  private readonly renderers = new Map<string, JinjaRenderer>();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private constructor(
    readonly backend: BackendName,
    readonly info: ModelInfo,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    private readonly onLog: ((level: LogLevel, message: string) => void) | undefined,
    /** Every sequence of the context; [0] is `sequence`, which the benchmark primitives use. */
    private readonly sequences: readonly LlamaContextSequence[] = [sequence],
    /** With several sequences: batches their next tokens together (llama-cpp-batching.ts). */
    private readonly gatherer?: BatchGatherer,
  ) {}

  static async load(backend: LlamaCppBackendName, llama: Llama, opts: LoadOptions): Promise<LlamaCppModel> {
    if (opts.onLog) logListeners.add(opts.onLog);
    recentLog.length = 0;
    let model: LlamaModel | undefined;
    try {
      model = await llama.loadModel({
        modelPath: opts.modelFile,
        gpuLayers: backend === "cpu" ? 0 : (opts.gpuLayers ?? "auto"),
        ...(opts.signal ? { loadSignal: opts.signal } : {}),
      });
      const trainCtx = model.trainContextSize;
      const contextSize = opts.ctxSize ?? Math.min(DEFAULT_CTX_SIZE, trainCtx > 0 ? trainCtx : DEFAULT_CTX_SIZE);
      // llama.cpp's default thread count (cpu_get_num_math); node-llama-cpp's own default is max(that, 4).
      const threads = opts.threads ?? Math.max(1, llama.cpuMathCores);
      const gatherer = (opts.sequences ?? 1) > 1 ? new BatchGatherer() : undefined;
      const context = await model.createContext({
        contextSize,
        sequences: opts.sequences ?? 1,
        ...(gatherer !== undefined ? { batching: { itemPrioritizationStrategy: gatherer.strategy } } : {}),
        threads,
        ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
        flashAttention: opts.flashAttention ?? "auto",
        ...(opts.signal ? { createSignal: opts.signal } : {}),
      });
      const tok = (id: number | null, text: string | null) => (id === null ? undefined : { id, text: text ?? "" });
      const template = model.fileInfo.metadata.tokenizer?.chat_template;
      const info: ModelInfo = {
        architecture: String(model.fileInfo.metadata.general?.architecture ?? "unknown"),
        contextSize: context.contextSize,
        trainContextSize: trainCtx,
        embeddingSize: model.embeddingVectorSize,
        vocabularySize: model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0,
        parameterCount: model.fileInsights.totalParameters,
        threads: context.idealThreads,
        generationThreads: context.idealThreads,
        batchSize: context.batchSize,
        flashAttention: context.flashAttention,
        gpuLayers: model.gpuLayers,
        sizeBytes: model.size,
        chatTemplate: typeof template === "string" && template.length > 0 ? template : undefined,
        bosToken: tok(model.tokens.bos, model.tokens.bosString),
        eosToken: tok(model.tokens.eos, model.tokens.eosString),
        addBos: model.tokens.shouldPrependBosToken,
        sequences: context.totalSequences,
      };
      if (context.totalSequences > 1) serializeSampling(context);
      const sequences = Array.from({ length: context.totalSequences }, () => context.getSequence());
      return new LlamaCppModel(backend, info, llama, model, context, sequences[0]!, opts.onLog, sequences, gatherer);
    } catch (e) {
      if (opts.onLog) logListeners.delete(opts.onLog);
      await model?.dispose().catch(() => undefined);
      if (opts.signal?.aborted) throw new InputError(`loading ${opts.modelFile} was cancelled`, { path: opts.modelFile, cause: e, code: "E_ABORTED" });
      throw new InputError(`cannot load ${opts.modelFile}: ${(e as Error).message}${await logContext()}`, {
        path: opts.modelFile,
        cause: e,
        code: "E_MODEL_LOAD",
      });
    }
  }

  tokenize(text: string, special: boolean): number[] {
    return this.model.tokenize(text, special) as number[];
  }

  detokenize(tokens: readonly number[], previous?: readonly number[]): string {
    return this.model.detokenize(tokens as never[], false, previous as never[] | undefined);
  }

  /** node-llama-cpp shifts the context (drops its oldest tokens) once the last cell would be used. */
  get maxContextTokens(): number {
    return this.sequence.contextSize - 1;
  }

  async *sample({ tokens, sampling, reusePrefix, onPrefill, sequence = 0, grammar, logprobs }: SampleRequest): AsyncGenerator<number, "eog" | "context-full", void> {
    const seq = this.sequences[sequence];
    if (seq === undefined) throw new InputError(`sequence ${sequence} does not exist; the context has ${this.sequences.length}`, { code: "E_SEQUENCE" });
    const grammarState = grammar === undefined ? undefined : new (await nodeLlamaCpp()).LlamaGrammarEvaluationState({ model: this.model, grammar: await this.grammarFor(grammar) });
    // Keep the KV cache for the shared prefix, but always re-evaluate at least the last prompt
    // token: its logits pick the first generated token.
    const keep = reusePrefix ? Math.min(seq.compareContextTokens(tokens as never[]).firstDifferentIndex, tokens.length - 1) : 0;
    if (seq.nextTokenIndex > keep && this.gatherer?.eraseTail(seq, keep) !== true) await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    onPrefill?.(tokens.length - keep);
    // llama.cpp's penalty sampler sees the prompt and the output (llama-cli accepts prompt tokens into it).
    const history = [...tokens];
    const presencePenalty = sampling.presencePenalty ?? 0;
    const frequencyPenalty = sampling.frequencyPenalty ?? 0;
    const penalize = sampling.repeatPenalty !== 1 || presencePenalty !== 0 || frequencyPenalty !== 0;
    const options = {
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      minP: sampling.minP,
      ...(sampling.seed !== undefined ? { seed: sampling.seed } : {}),
      ...(penalize
        ? {
            repeatPenalty: {
              penalty: sampling.repeatPenalty,
              presencePenalty,
              frequencyPenalty,
              punishTokens: () => history.slice(-sampling.repeatLastN) as Token[],
              maxPunishTokens: sampling.repeatLastN,
            },
          }
        : {}),
      ...(grammarState !== undefined ? { grammarEvaluationState: grammarState } : {}),
    };
    const input = tokens.slice(keep) as Token[];
    const evaluation: AsyncGenerator<number, void, void> =
      logprobs === undefined
        ? seq.evaluate(input, options)
        : // Without alternatives, the chosen token's probability alone spares a vocabulary-sized map per token.
          withLogprobs(logprobs.top > 0 ? seq.evaluateWithMetadata(input, { probabilities: true }, options) : seq.evaluateWithMetadata(input, { confidence: true }, options), logprobs);
    const leave = this.gatherer?.join();
    try {
      for await (const token of evaluation) {
        history.push(token);
        yield token;
        // The token just yielded is evaluated on the next pull; stop before node-llama-cpp would
        // shift the context to make room for it.
        if (seq.nextTokenIndex >= this.maxContextTokens) return "context-full";
      }
      return "eog";
    } finally {
      leave?.();
    }
  }

  async embed(text: string): Promise<number[]> {
    // A second, embeddings-only context; node-llama-cpp sizes its batch (pooled embeddings need
    // the whole input in one batch).
    this.embedContext ??= await this.model.createEmbeddingContext({ contextSize: this.info.contextSize, threads: this.info.threads });
    const n = this.embedContext.calculateInputLength(text);
    if (n > this.maxContextTokens) {
      throw new ContextOverflowError(
        `the text to embed is ${n} tokens, but the context holds ${this.info.contextSize}; shorten it or raise --ctx-size`,
        { promptTokens: n, contextSize: this.info.contextSize },
      );
    }
    return [...(await this.embedContext.getEmbeddingFor(text)).vector];
  }

  jsonSchemaGrammar(schema: unknown): Promise<GrammarSpec> {
    return jsonSchemaGrammarWith(this.llama, schema);
  }

  private grammarFor(spec: GrammarSpec): Promise<LlamaGrammar> {
    const key = `${spec.rootRule ?? "root"}\n${spec.gbnf}`;
    let g = this.grammars.get(key);
    if (g === undefined) {
      g = this.llama.createGrammar({ grammar: spec.gbnf, ...(spec.rootRule !== undefined ? { rootRuleName: spec.rootRule } : {}) }).catch((e: unknown) => {
        this.grammars.delete(key);
        throw new InputError(`the grammar cannot be parsed: ${(e as Error).message}`, { cause: e, code: "E_GRAMMAR" });
      });
      if (this.grammars.size >= MAX_CACHED_GRAMMARS) this.grammars.delete(this.grammars.keys().next().value!);
      this.grammars.set(key, g);
    }
    return g;
  }

  renderTemplate(template: string, variables: Record<string, unknown>): string {
    return renderTemplateWith(this.llama, this.renderers, template, variables);
  }

  async timePromptProcessing(tokens: number[]): Promise<number> {
    await this.sequence.clearHistory();
    const t0 = performance.now();
    await this.sequence.evaluateWithoutGeneratingNewTokens(tokens as never[]);
    return (performance.now() - t0) / 1000;
  }

  async timeGeneration(count: number, nextToken: (i: number) => number): Promise<number> {
    await this.sequence.clearHistory();
    // Through the native context: node-llama-cpp's evaluate() must sample each token.
    return timeOneTokenDecodes(nativeContext(this.context), { sequence: sequenceId(this.sequence), count, nextToken });
  }

  async dispose(): Promise<void> {
    if (this.onLog) logListeners.delete(this.onLog);
    await this.embedContext?.dispose();
    this.grammars.clear();
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** Token ids from evaluateWithMetadata, reporting each one's probability and the likeliest `top`. */
async function* withLogprobs(
  evaluation: AsyncGenerator<{ token: Token; probabilities?: Map<Token, number>; confidence?: number }, void, void | Token | Token[]>,
  logprobs: NonNullable<SampleRequest["logprobs"]>,
): AsyncGenerator<number, void, void> {
  try {
    for await (const { token, probabilities, confidence } of evaluation) {
      // The map is sorted from the likeliest down (node-llama-cpp's SequenceEvaluateOutput).
      const top: TokenLogprob["top"] = [];
      for (const [t, p] of probabilities ?? []) {
        if (top.length >= logprobs.top) break;
        top.push({ token: t, logprob: Math.log(p) });
      }
      logprobs.onToken({ token, logprob: Math.log(probabilities?.get(token) ?? confidence ?? 0), top });
      yield token;
    }
  } finally {
    await evaluation.return();
  }
}

