// Token log-probabilities in OpenAI's two shapes: chat's `logprobs.content` entries and the
// legacy completions object (tokens, token_logprobs, top_logprobs, text_offset).
import type { TokenLogprob } from "../backends/types.js";
import type { Runtime } from "../runtime.js";

/** What OpenAI writes for a probability that underflowed. */
const FLOOR = -9999;

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Token texts, looked up once per token id. */
export class TokenTexts {
  private readonly cache = new Map<number, string>();
  constructor(private readonly runtime: Runtime) {}

  text(token: number): string {
    let t = this.cache.get(token);
    if (t === undefined) this.cache.set(token, (t = this.runtime.detokenize([token])));
    return t;
  }
}

const clamp = (lp: number) => (Number.isFinite(lp) ? Math.max(lp, FLOOR) : FLOOR);
const bytes = (s: string) => [...Buffer.from(s, "utf8")];

export function chatLogprobs(entries: readonly TokenLogprob[], texts: TokenTexts): ChatLogprob[] {
  return entries.map((e) => {
    const token = texts.text(e.token);
    return {
      token,
      logprob: clamp(e.logprob),
      bytes: bytes(token),
      top_logprobs: e.top.map((t) => {
        const s = texts.text(t.token);
        return { token: s, logprob: clamp(t.logprob), bytes: bytes(s) };
      }),
    };
  });
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** `offset` is where the first token's text starts in the choice's text (after an echoed prompt). */
export function completionLogprobs(entries: readonly TokenLogprob[], texts: TokenTexts, offset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const e of entries) {
    const token = texts.text(e.token);
    out.tokens.push(token);
    out.token_logprobs.push(clamp(e.logprob));
    out.top_logprobs.push(Object.fromEntries(e.top.map((t) => [texts.text(t.token), clamp(t.logprob)])));
    out.text_offset.push(at);
    at += token.length;
  }
  return out;
}
