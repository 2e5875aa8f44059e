import type { ResolvedSampling } from "./config.js";
import type { GrammarSpec, LoadedModel, TokenLogprob } from "./backends/types.js";

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationResult {
  /** The generated text, without the prompt and without a matched stop string. */
  text: string;
  /** Generated token ids (all of them, including any that spelled a stop string). */
  tokens: number[];
  promptTokens: number;
  completionTokens: number;
  /** Decode speed: tokens after the first over the time after the first, as llama.cpp's "eval time". */
  tokensPerSecond: number;
  /** Prompt speed: prompt tokens evaluated (not reused from the cache) over the time to the first token. */
  promptTokensPerSecond: number;
  promptSeconds: number;
  generationSeconds: number;
  /** "stop": end-of-generation token or a stop string; "length": maxTokens or the context is full; "abort": the signal fired or the consumer stopped reading. */
  finishReason: FinishReason;
  /** One entry per generated token, when the config asked for logprobs. */
  logprobs?: TokenLogprob[];
}

/** How many tokens may wait for the rest of a UTF-8 character before they are shown anyway. */
const MAX_PENDING_TOKENS = 8;
/** Tokens of left context given to the detokenizer (SentencePiece decides leading spaces from it). */
const CONTEXT_TOKENS = 8;

/**
 * Turns tokens into text pieces that are safe to show: it holds back incomplete UTF-8
 * characters and any tail that could be the start of a stop string, and cuts the text at the
 * first stop string.
 */
class TextAssembler {
  private pending: number[] = [];
  private context: number[];
  private full = "";
  private emitted = 0;
  stopped = false;

  constructor(
    private readonly model: LoadedModel,
    promptTokens: readonly number[],
    private readonly stops: readonly string[],
  ) {
    this.context = promptTokens.slice(-CONTEXT_TOKENS);
  }

  get text(): string {
    return this.full;
  }

  push(token: number): string {
    this.pending.push(token);
    const piece = this.model.detokenize(this.pending, this.context);
    if (piece.endsWith("\uFFFD") && this.pending.length < MAX_PENDING_TOKENS) return "";
    this.context = [...this.context, ...this.pending].slice(-CONTEXT_TOKENS);
    this.pending = [];
    this.full += piece;
    return this.release(false);
  }

  flush(): string {
    if (this.pending.length > 0 && !this.stopped) {
      this.full += this.model.detokenize(this.pending, this.context);
      this.pending = [];
    }
    return this.release(true);
  }

  private release(final: boolean): string {
    if (this.stopped) return "";
    let safe = this.full.length;
    if (this.stops.length > 0) {
      const longest = Math.max(...this.stops.map((s) => s.length));
      const from = Math.max(0, this.emitted - longest + 1);
      let hit = -1;
      for (const s of this.stops) {
        const i = this.full.indexOf(s, from);
        if (i >= 0 && (hit < 0 || i < hit)) hit = i;
      }
      if (hit >= 0) {
        this.stopped = true;
        this.full = this.full.slice(0, hit);
        safe = hit;
      } else if (!final) {
        safe -= this.heldBack();
      }
    }
    const out = this.full.slice(this.emitted, safe);
    this.emitted = Math.max(this.emitted, safe);
    return out;
  }

  /** Length of the longest text tail that is a proper prefix of some stop string. */
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.full.length); k > hold; k--) {
        if (this.full.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }
}

export interface GenerationRequest {
  promptTokens: number[];
  sampling: ResolvedSampling;
  reusePrefix: boolean;
  signal: AbortSignal | undefined;
  /** The engine sequence (slot) to run on; default 0. */
  sequence?: number;
  grammar?: GrammarSpec;
  /** Alternatives to record per token; undefined = no logprobs. */
  logprobs?: number;
}

/** What a generation has done so far; a result can be built from it at any point. */
export class GenerationState {
  tokens: number[] = [];
  text = "";
  finishReason: FinishReason | undefined;
  evaluatedPromptTokens = 0;
  readonly startMs = performance.now();
  firstTokenMs: number | undefined;
  endMs: number | undefined;
  /** Filled only when logprobs were asked for. */
  logprobs: TokenLogprob[] | undefined;

  constructor(readonly promptTokens: number) {}

  result(): GenerationResult {
    const end = this.endMs ?? performance.now();
    const first = this.firstTokenMs ?? end;
    const n = this.tokens.length;
    const decodeSeconds = (end - first) / 1000;
    const promptSeconds = (first - this.startMs) / 1000;
    return {
      text: this.text,
      tokens: [...this.tokens],
      promptTokens: this.promptTokens,
      completionTokens: n,
      tokensPerSecond: n > 1 && decodeSeconds > 0 ? (n - 1) / decodeSeconds : 0,
      promptTokensPerSecond: promptSeconds > 0 ? this.evaluatedPromptTokens / promptSeconds : 0,
      promptSeconds,
      generationSeconds: decodeSeconds,
      finishReason: this.finishReason ?? "abort",
      ...(this.logprobs !== undefined ? { logprobs: [...this.logprobs] } : {}),
    };
  }
}

/** The generation loop: yields text pieces and records everything in `state`. */
export async function* generatePieces(model: LoadedModel, req: GenerationRequest, state: GenerationState): AsyncGenerator<string, void, void> {
  const { sampling, signal } = req;
  if (signal?.aborted) {
    state.finishReason = "abort";
    state.endMs = performance.now();
    return;
  }
  const text = new TextAssembler(model, req.promptTokens, sampling.stop);
  const logprobs: TokenLogprob[] | undefined = req.logprobs === undefined ? undefined : (state.logprobs = []);
  const tokens = model.sample({
    tokens: req.promptTokens,
    sampling,
    reusePrefix: req.reusePrefix,
    onPrefill: (evaluated) => (state.evaluatedPromptTokens = evaluated),
    ...(req.sequence !== undefined ? { sequence: req.sequence } : {}),
    ...(req.grammar !== undefined ? { grammar: req.grammar } : {}),
    ...(logprobs !== undefined ? { logprobs: { top: req.logprobs!, onToken: (e: TokenLogprob) => logprobs.push(e) } } : {}),
  });
  let finish: FinishReason | undefined;
  try {
    for (;;) {
      const next = await tokens.next();
      if (next.done === true) {
        finish = next.value === "context-full" ? "length" : "stop";
        break;
      }
      state.firstTokenMs ??= performance.now();
      state.tokens.push(next.value);
      const piece = text.push(next.value);
      state.text = text.text;
      if (piece.length > 0) yield piece;
      if (text.stopped) finish = "stop";
      else if (state.tokens.length >= sampling.maxTokens) finish = "length";
      else if (signal?.aborted) finish = "abort";
      if (finish !== undefined) break;
    }
  } finally {
    // Ends the engine's generator (and its evaluation) when we stop early or the reader does.
    await tokens.return("eog");
    state.endMs = performance.now();
  }
  const rest = text.flush();
  state.text = text.text;
  state.finishReason = finish;
  if (rest.length > 0) yield rest;
}
