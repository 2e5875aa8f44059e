// The cpu and cuda backends: libllama driven directly (koffi, @llama-pajamas/gguf's llama.ts)
// from the libraries node-llama-cpp ships or built (its CUDA local build or prebuilt package),
// as llama-cli and llama-server drive it.
//
// Why not node-llama-cpp's own context on the CPU: its prebuilt CPU backends have no OpenMP
// and its context attaches no ggml threadpool, so every llama_decode starts and joins fresh
// worker threads whose barriers spin (llama-cpp-threads.ts has the details); one-token decodes
// on more than one thread then crawl (llama-tiny Q4_K_M, 2 cores: ~70 tok/s on 2 threads, ~1,700
// on 1, llama-bench 2,430). Here the context gets a persistent threadpool
// (llama_attach_threadpool), decodes of small steps run on this thread (no libuv hop) and
// sampling is llama.cpp's sampler chain called in place: the same 2-thread decode loop gives
// 2,200-2,500 tok/s. Parallel sequences share one decode per step, as llama-server's slots do.
//
// On CUDA the same path removes node-llama-cpp's per-decode round trip (a libuv worker and a
// promise per token: ~0.2 ms, 5% of an 8B model's decode on an H200).
//
// What stays with node-llama-cpp: its Jinja renderer (chat templates) and its JSON-schema to
// GBNF converter, both pure functions of the loaded binding; and the whole cuda backend when
// this process already uses another build's libraries (one process holds one llama.cpp).
import type { Llama } from "node-llama-cpp";
import { InputError } from "@llama-pajamas/artifact";
import { EngineContext, EngineModel, EngineSampler } from "@llama-pajamas/gguf/llama.js";
import { locateGpuLibraries, locateNativeLibraries, useNativeLibraryDir } from "@llama-pajamas/gguf";
import type { BackendName } from "../config.js";
import { ContextOverflowError } from "../errors.js";
import { type JinjaRenderer, jsonSchemaGrammarWith, llamaCppBackend, llamaFor, renderTemplateWith } from "./llama-cpp.js";
import type { Backend, GrammarSpec, LoadedModel, LoadOptions, ModelInfo, SampleRequest, TokenLogprob } from "./types.js";

/** llama.cpp's default n_ctx; a model trained on less gets its own size. */
const DEFAULT_CTX_SIZE = 4096;
/** node-llama-cpp's and llama.cpp's default logical batch. */
const DEFAULT_BATCH_SIZE = 512;
/**
 * A step whose last decode took less than this runs on the JS thread (no worker hop: the
 * hop costs more than a tiny model's whole decode); slower ones go to a libuv worker so that
 * the server's I/O keeps moving.
 */
const SYNC_DECODE_MAX_MS = 8;
/** Tokens before the new ones that detokenize() looks at for SentencePiece's leading space. */
const DETOKENIZE_CONTEXT_TOKENS = 4;

/** The cpu backend: node-llama-cpp's CPU libraries. */
export const directCpuBackend: Backend = {
  name: "cpu",
  format: "gguf",
  async unavailableReason() {
    try {
      locateNativeLibraries();
      return undefined;
    } catch (e) {
      return (e as Error).message;
    }
  },
  async load(options) {
    return DirectModel.load(options, "cpu");
  },
};

/**
 * The cuda backend: node-llama-cpp's CUDA build, driven directly; through node-llama-cpp's API
 * when this process already loaded other llama.cpp libraries.
 */
export const directCudaBackend: Backend = {
  name: "cuda",
  format: "gguf",
  async unavailableReason() {
    return llamaCppBackend("cuda").unavailableReason();
  },
  async load(options) {
    const libs = locateGpuLibraries("cuda");
    if (libs === undefined || !useNativeLibraryDir(libs.dir)) return llamaCppBackend("cuda").load(options);
    return DirectModel.load(options, "cuda");
  },
};

/** One sequence's KV cache as the engine holds it: the tokens evaluated so far. */
interface SequenceState {
  tokens: number[];
}

/** One sequence's request to the scheduler: evaluate `tokens`, then draw from the last one's logits. */
interface Step {
  seq: number;
  tokens: readonly number[];
  /** First token not yet in a batch. */
  offset: number;
  /** Position of tokens[0] in the sequence. */
  pos: number;
  draw: (batchIndex: number) => number;
  resolve: (token: number) => void;
  reject: (e: unknown) => void;
  /** Part of the batch being decoded. */
  inFlight: boolean;
}

/** A queued step: its drawn token, or cancel() while it has not reached a batch. */
interface StepHandle {
  token: Promise<number>;
  /** Takes the step out of the queue; false once a batch holds it (await `token` then). */
  cancel(): boolean;
}

/**
 * Gathers every sequence's pending tokens into shared llama_decode batches (generation steps
 * first, then prompt chunks, up to n_batch tokens), then draws each finished sequence's next
 * token from its logits. The next batch starts as soon as every sequence that just drew has
 * queued its next step (or ended), before their callers stream the tokens: the decode then
 * runs on a worker while the streaming happens here, as llama-server's slot loop runs beside
 * its HTTP threads. New requests join the next batch.
 */
class StepScheduler {
  private readonly queue: Step[] = [];
  /** A batch is being decoded or drawn from. */
  private decoding = false;
  /** Sequences that drew and have not queued their next step yet; the next batch waits for them (one event-loop turn at most). */
  private waiting: Set<number> | null = null;
  private scheduled = false;
  private held = false;
  private lastStepMs = 0;
  private lastWasSync = false;
  private readonly tokens: Int32Array;
  private readonly pos: Int32Array;
  private readonly seq: Int32Array;
  private readonly out: Uint8Array;

  constructor(
    private readonly ctx: EngineContext,
    private readonly nBatch: number,
    /** Every decode on this thread (RuntimeOptions.mainThreadDecodes). */
    private readonly mainThread: boolean,
  ) {
    this.tokens = new Int32Array(nBatch);
    this.pos = new Int32Array(nBatch);
    this.seq = new Int32Array(nBatch);
    this.out = new Uint8Array(nBatch);
  }

  step(seq: number, tokens: readonly number[], pos: number, draw: (batchIndex: number) => number): StepHandle {
    let step!: Step;
    const token = new Promise<number>((resolve, reject) => {
      step = { seq, tokens, offset: 0, pos, draw, resolve, reject, inFlight: false };
      this.queue.push(step);
    });
    this.release(seq);
    return {
      token,
      cancel: () => {
        if (step.inFlight || step.offset > 0 || !this.queue.includes(step)) return false;
        this.remove(step);
        return true;
      },
    };
  }

  /** `seq` queued its next step or ended: the next batch need not wait for it. */
  release(seq: number): void {
    if (this.waiting !== null && this.waiting.delete(seq) && this.waiting.size === 0) {
      this.waiting = null;
      // After a decode on this thread, the next goes through the event loop: back-to-back
      // synchronous decodes would starve the server's I/O.
      if (this.lastWasSync) this.kick();
      else this.pump();
    } else {
      this.kick();
    }
  }

  /** Runs `f` with the context to itself (benchmark): after the batch in progress, with no step queued. */
  async exclusive<T>(f: () => Promise<T> | T): Promise<T> {
    while (this.held || this.decoding || this.queue.length > 0) await new Promise((r) => setTimeout(r, 1));
    this.held = true;
    try {
      return await f();
    } finally {
      this.held = false;
      this.kick();
    }
  }

  /** One decode: on this thread when asked to or when the last one-token step was quick, else on a worker. */
  async decode(batch: { tokens: Int32Array; pos: Int32Array; seq: Int32Array; logits: Uint8Array }, stepOnly: boolean): Promise<void> {
    const t0 = performance.now();
    this.lastWasSync = this.mainThread || (stepOnly && this.lastStepMs < SYNC_DECODE_MAX_MS);
    if (this.lastWasSync) this.ctx.decode(batch);
    else await this.ctx.decodeAsync(batch);
    if (stepOnly) this.lastStepMs = performance.now() - t0;
  }

  /** Starts the next batch after this event-loop turn (other requests queue in the meantime). */
  private kick(): void {
    if (this.scheduled || this.decoding || this.waiting !== null || this.held || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.decoding || this.held || this.queue.length === 0) return;
    this.waiting = null;
    // Which steps: generation steps (one token) before prompt chunks, each in queue order, up to n_batch.
    const order = [...this.queue].sort((a, b) => Number(a.tokens.length - a.offset > 1) - Number(b.tokens.length - b.offset > 1));
    const chosen: { step: Step; count: number }[] = [];
    let room = this.nBatch;
    for (const s of order) {
      if (room === 0) break;
      const count = Math.min(s.tokens.length - s.offset, room);
      chosen.push({ step: s, count });
      room -= count;
    }
    // In the batch, by sequence id: with a KV cache per sequence, llama.cpp puts only sequences of
    // consecutive increasing ids into one micro-batch (llama_batch_allocr::split_equal), so steps
    // in queue order (3, 0, 1, ...) would be decoded as several micro-batches, each reading all
    // the weights again (seen: 8 slots' steps at 17-23 ms instead of 10-11).
    chosen.sort((a, b) => a.step.seq - b.step.seq);
    const parts: { step: Step; index: number; count: number }[] = [];
    let n = 0;
    for (const { step: s, count } of chosen) {
      for (let k = 0; k < count; k++) {
        const at = s.offset + k;
        this.tokens[n + k] = s.tokens[at]!;
        this.pos[n + k] = s.pos + at;
        this.seq[n + k] = s.seq;
        this.out[n + k] = at === s.tokens.length - 1 ? 1 : 0;
      }
      s.inFlight = true;
      parts.push({ step: s, index: n, count });
      n += count;
    }
    this.decoding = true;
    const batch = { tokens: this.tokens.subarray(0, n), pos: this.pos.subarray(0, n), seq: this.seq.subarray(0, n), logits: this.out.subarray(0, n) };
    this.decode(batch, n === parts.length).then(
      () => this.finish(parts, undefined),
      (e: unknown) => this.finish(parts, e ?? new Error("llama_decode failed")),
    );
  }

  private finish(parts: { step: Step; index: number; count: number }[], error: unknown): void {
    this.decoding = false;
    const drew = new Set<number>();
    for (const { step, index, count } of parts) {
      step.inFlight = false;
      if (error !== undefined) {
        this.remove(step).reject(error);
        continue;
      }
      step.offset += count;
      if (step.offset < step.tokens.length) continue;
      this.remove(step);
      try {
        step.resolve(step.draw(index + count - 1));
        drew.add(step.seq);
      } catch (e) {
        step.reject(e);
      }
    }
    if (drew.size === 0) return this.kick();
    const waiting = (this.waiting = drew);
    // at the latest after one event-loop turn, whoever has queued goes
    setImmediate(() => {
      if (this.waiting === waiting) {
        this.waiting = null;
        this.pump();
      }
    });
  }

  private remove(step: Step): Step {
    const i = this.queue.indexOf(step);
    if (i >= 0) this.queue.splice(i, 1);
    return step;
  }
}

class DirectModel implements LoadedModel {
  private readonly renderers = new Map<string, JinjaRenderer>();
  private readonly sequences: SequenceState[];
  private readonly scheduler: StepScheduler;
  private readonly busy = new Set<number>();
  private embedContext: EngineContext | undefined;

  private constructor(
    readonly backend: BackendName,
    readonly info: ModelInfo,
    private readonly model: EngineModel,
    private readonly ctx: EngineContext,
    private readonly llama: Llama,
    mainThreadDecodes: boolean,
  ) {
    this.sequences = Array.from({ length: info.sequences }, () => ({ tokens: [] }));
    this.scheduler = new StepScheduler(ctx, info.batchSize, mainThreadDecodes);
  }

  static async load(opts: LoadOptions, backend: "cpu" | "cuda"): Promise<DirectModel> {
    const cancelled = () => new InputError(`loading ${opts.modelFile} was cancelled`, { path: opts.modelFile, code: "E_ABORTED" });
    if (opts.signal?.aborted) throw cancelled();
    const llama = await llamaFor(backend).catch((e: unknown) => {
      throw new InputError(`the ${backend} backend failed to start: ${(e as Error).message}`, { cause: e, code: "E_BACKEND" });
    });
    // llama.cpp counts the output layer too: n_layer + 1 is "all"; a negative value also means all
    const gpuLayers = backend === "cpu" ? 0 : typeof opts.gpuLayers === "number" ? opts.gpuLayers : -1;
    let model: EngineModel;
    try {
      model = EngineModel.load(opts.modelFile, { gpuLayers });
    } catch (e) {
      const why = (e as Error).message.replace(/^llama\.cpp cannot load [^:]*: /, "");
      throw new InputError(`cannot load ${opts.modelFile}: ${why}`, { path: opts.modelFile, cause: e, code: "E_MODEL_LOAD" });
    }
    let ctx: EngineContext | undefined;
    try {
      if (opts.signal?.aborted) throw cancelled();
      const m = model.info;
      const sequences = opts.sequences ?? 1;
      const contextSize = opts.ctxSize ?? Math.min(DEFAULT_CTX_SIZE, m.nCtxTrain > 0 ? m.nCtxTrain : DEFAULT_CTX_SIZE);
      // llama.cpp's default thread count (cpu_get_num_math)
      const threads = opts.threads ?? Math.max(1, llama.cpuMathCores);
      const batchSize = Math.min(opts.batchSize ?? DEFAULT_BATCH_SIZE, contextSize * sequences);
      const fa = opts.flashAttention ?? "auto";
      try {
        ctx = new EngineContext(model, {
          nCtx: contextSize * sequences,
          nBatch: batchSize,
          nUbatch: batchSize,
          nSeqMax: sequences,
          threads,
          threadpool: true,
          flashAttention: fa === "auto" ? -1 : fa ? 1 : 0,
        });
      } catch (e) {
        throw new InputError(`cannot load ${opts.modelFile}: ${(e as Error).message}`, { path: opts.modelFile, cause: e, code: "E_MODEL_LOAD" });
      }
      const tok = (id: number) => (id < 0 ? undefined : { id, text: model.piece(id) });
      const info: ModelInfo = {
        architecture: m.architecture || "unknown",
        contextSize,
        trainContextSize: m.nCtxTrain,
        embeddingSize: m.nEmbd,
        vocabularySize: m.nVocab,
        parameterCount: m.nParams,
        threads,
        generationThreads: threads,
        batchSize,
        flashAttention: fa,
        gpuLayers: gpuLayers < 0 ? m.nLayer + 1 : Math.min(gpuLayers, m.nLayer + 1),
        sizeBytes: m.sizeBytes,
        chatTemplate: m.chatTemplate !== undefined && m.chatTemplate.length > 0 ? m.chatTemplate : undefined,
        bosToken: tok(m.bos),
        eosToken: tok(m.eos),
        addBos: m.addBos,
        sequences,
      };
      return new DirectModel(backend, info, model, ctx, llama, opts.mainThreadDecodes ?? false);
    } catch (e) {
      ctx?.free();
      model.free();
      throw e;
    }
  }

  get maxContextTokens(): number {
    return this.info.contextSize - 1;
  }

  tokenize(text: string, special: boolean): number[] {
    return Array.from(this.model.tokenize(text, { addSpecial: false, parseSpecial: special }));
  }

  /** As node-llama-cpp's detokenize with lastTokens: the text the tokens add after `previous`. */
  detokenize(tokens: readonly number[], previous?: readonly number[]): string {
    if (tokens.length === 0) return "";
    const before = previous?.slice(-DETOKENIZE_CONTEXT_TOKENS) ?? [];
    if (before.length === 0) return this.model.detokenize(tokens);
    const prefix = this.model.detokenize(before);
    if (prefix === "") return this.model.detokenize(tokens);
    const text = this.model.detokenize([...before, ...tokens]);
    return text.startsWith(prefix) ? text.slice(prefix.length) : this.model.detokenize(tokens);
  }

  async *sample({ tokens, sampling, reusePrefix, onPrefill, sequence = 0, grammar, logprobs }: SampleRequest): AsyncGenerator<number, "eog" | "context-full", void> {
    const state = this.sequences[sequence];
    if (state === undefined) throw new InputError(`sequence ${sequence} does not exist; the context has ${this.sequences.length}`, { code: "E_SEQUENCE" });
    if (this.busy.has(sequence)) throw new InputError(`sequence ${sequence} is already generating`, { code: "E_SEQUENCE" });
    // (Runtime has already refused prompts longer than maxContextTokens.)
    if (tokens.length === 0) throw new InputError("the prompt has no tokens", { code: "E_PROMPT" });
    const presence = sampling.presencePenalty ?? 0;
    const frequency = sampling.frequencyPenalty ?? 0;
    const penalize = sampling.repeatPenalty !== 1 || presence !== 0 || frequency !== 0;
    const sampler = new EngineSampler(this.model, {
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      minP: sampling.minP,
      ...(sampling.seed !== undefined ? { seed: sampling.seed } : {}),
      ...(penalize ? { penalties: { lastN: sampling.repeatLastN, repeat: sampling.repeatPenalty, frequency, presence } } : {}),
      ...(grammar !== undefined ? { grammar: { gbnf: grammar.gbnf, root: grammar.rootRule ?? "root" } } : {}),
    });
    this.busy.add(sequence);
    try {
      // llama.cpp's penalty sampler sees the prompt and the output (llama-cli accepts prompt tokens into it).
      if (penalize) sampler.acceptHistory(tokens.slice(-sampling.repeatLastN));
      // Keep the KV cache for the shared prefix, but always re-evaluate at least the last prompt
      // token: its logits pick the first generated token.
      let keep = 0;
      if (reusePrefix) {
        const limit = Math.min(state.tokens.length, tokens.length - 1);
        while (keep < limit && state.tokens[keep] === tokens[keep]) keep++;
      }
      if (state.tokens.length > keep) {
        this.ctx.seqRm(sequence, keep, -1);
        state.tokens.length = keep;
      }
      onPrefill?.(tokens.length - keep);
      let drawn: TokenLogprob | undefined;
      const draw = (i: number): number => {
        const row = logprobs === undefined ? undefined : this.ctx.logits(i);
        const token = sampler.sample(this.ctx, i);
        if (row !== undefined) drawn = tokenLogprob(row, token, logprobs!.top);
        return token;
      };
      // The step that decodes a drawn token is queued before the token is yielded: the engine
      // decodes it (on a worker) while the caller streams the token, as llama-server's slots
      // run beside its HTTP threads. When the caller stops, that step is cancelled if it has
      // not started, else finished (its token is in the KV cache; what it drew is dropped).
      // `outstanding`: the tokens of the step queued and not yet awaited.
      let outstanding: readonly number[] | null = tokens.slice(keep);
      let step = this.scheduler.step(sequence, outstanding, state.tokens.length, draw);
      try {
        for (;;) {
          const token = await step.token;
          state.tokens.push(...outstanding!);
          outstanding = null;
          const entry = drawn;
          if (this.model.isEog(token)) return "eog";
          const full = state.tokens.length >= this.maxContextTokens;
          if (full) {
            this.scheduler.release(sequence);
          } else {
            outstanding = [token];
            step = this.scheduler.step(sequence, outstanding, state.tokens.length, draw);
          }
          if (entry !== undefined) logprobs!.onToken(entry);
          yield token;
          if (full) return "context-full";
        }
      } finally {
        if (outstanding !== null && !step.cancel()) {
          if (await step.token.then(() => true, () => false)) {
            state.tokens.push(...outstanding);
          } else {
            // a failed decode leaves the sequence's cells unknown: start it afresh
            this.ctx.seqRm(sequence, 0, -1);
            state.tokens.length = 0;
          }
        }
      }
    } finally {
      this.busy.delete(sequence);
      this.scheduler.release(sequence);
      sampler.free();
    }
  }

  async embed(text: string): Promise<number[]> {
    const ids = this.model.tokenize(text, { addSpecial: true, parseSpecial: false });
    if (ids.length > this.maxContextTokens) {
      throw new ContextOverflowError(`the text to embed is ${ids.length} tokens, but the context holds ${this.info.contextSize}; shorten it or raise --ctx-size`, {
        promptTokens: ids.length,
        contextSize: this.info.contextSize,
      });
    }
    if (ids.length === 0) return new Array<number>(this.info.embeddingSize).fill(0);
    // A second, embeddings-only context whose batch holds a whole input (pooling needs it in one).
    const size = this.info.contextSize;
    this.embedContext ??= new EngineContext(this.model, { nCtx: size, nBatch: size, nUbatch: size, threads: this.info.threads, threadpool: true, embeddings: true });
    const ctx = this.embedContext;
    ctx.clear();
    const n = ids.length;
    await ctx.decodeAsync({ tokens: ids, pos: Int32Array.from({ length: n }, (_, i) => i), seq: new Int32Array(n), logits: new Uint8Array(n).fill(1) });
    const v = ctx.embedding(0, n - 1);
    ctx.clear();
    return Array.from(v);
  }

  jsonSchemaGrammar(schema: unknown): Promise<GrammarSpec> {
    return jsonSchemaGrammarWith(this.llama, schema);
  }

  renderTemplate(template: string, variables: Record<string, unknown>): string {
    return renderTemplateWith(this.llama, this.renderers, template, variables);
  }

  async timePromptProcessing(tokens: number[]): Promise<number> {
    return this.scheduler.exclusive(async () => {
      this.clearSequence(0);
      const t0 = performance.now();
      for (let at = 0; at < tokens.length; at += this.info.batchSize) {
        const chunk = tokens.slice(at, at + this.info.batchSize);
        const n = chunk.length;
        const ppBatch =
          {
            tokens: Int32Array.from(chunk),
            pos: Int32Array.from({ length: n }, (_, i) => at + i),
            seq: new Int32Array(n),
            logits: Uint8Array.from({ length: n }, (_, i) => (i === n - 1 ? 1 : 0)),
          };
        await this.scheduler.decode(ppBatch, false);
        // as llama-bench: a GPU decode returns before the device is done
        this.ctx.synchronize();
      }
      const seconds = (performance.now() - t0) / 1000;
      this.clearSequence(0);
      return seconds;
    });
  }

  /**
   * One-token decodes with logits from an empty sequence, as llama-bench's test_gen, through
   * the same decode path as generation steps (no sampling: the caller picks the tokens).
   */
  async timeGeneration(count: number, nextToken: (i: number) => number): Promise<number> {
    return this.scheduler.exclusive(async () => {
      this.clearSequence(0);
      const batch = { tokens: new Int32Array(1), pos: new Int32Array(1), seq: new Int32Array(1), logits: Uint8Array.of(1) };
      const t0 = performance.now();
      for (let i = 0; i < count; i++) {
        batch.tokens[0] = nextToken(i);
        batch.pos[0] = i;
        await this.scheduler.decode(batch, true);
        this.ctx.synchronize();
      }
      const seconds = (performance.now() - t0) / 1000;
      this.clearSequence(0);
      return seconds;
    });
  }

  private clearSequence(seq: number): void {
    this.ctx.seqRm(seq, 0, -1);
    this.sequences[seq]!.tokens.length = 0;
  }

  async dispose(): Promise<void> {
    await this.scheduler.exclusive(() => undefined);
    this.embedContext?.free();
    this.ctx.free();
    this.model.free();
  }
}

/** The drawn token's log-probability under the model (log-softmax of the raw logits) and the `top` likeliest. */
function tokenLogprob(logits: Float32Array, token: number, top: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const shift = max + Math.log(sum);
  const best: number[] = [];
  if (top > 0) {
    // the `top` largest, kept sorted (top is small)
    for (let i = 0; i < logits.length; i++) {
      if (best.length < top) best.push(i);
      else if (logits[i]! > logits[best[top - 1]!]!) best[top - 1] = i;
      else continue;
      for (let at = best.length - 1; at > 0 && logits[best[at - 1]!]! < logits[best[at]!]!; at--) {
        const t = best[at]!;
        best[at] = best[at - 1]!;
        best[at - 1] = t;
      }
    }
  }
  return { token, logprob: logits[token]! - shift, top: best.map((t) => ({ token: t, logprob: logits[t]! - shift })) };
}
