// POST /v1/completions (OpenAI's legacy text completions): raw prompts, no chat template. A
// prompt is a string, an array of strings, token ids, or an array of token-id arrays; each
// prompt is one choice.
import type { GenerationResult } from "../../generation.js";
import type { GenerationStream } from "../../runtime.js";
import type { RouteContext } from "../app.js";
import { describe, Fields, type Json } from "../body.js";
import { invalidField } from "../errors.js";
import { completionLogprobs, TokenTexts } from "../logprobs.js";
import { responseFormatGrammar } from "../response-format.js";
import { completionBudget, readSampling } from "../sampling.js";
import { sseResponse } from "../sse.js";
import { collect, finishReason, newId, nowSeconds, recordResult, SYSTEM_FINGERPRINT, usageOf } from "./common.js";

/** OpenAI's default for this endpoint (chat's default is "until the context is full"). */
const DEFAULT_MAX_TOKENS = 16;
/** OpenAI allows 5 alternatives here; llama-server more. */
const MAX_LOGPROBS = 20;
const MAX_PROMPTS = 64;

export async function completions(ctx: RouteContext): Promise<Response> {
  const { runtime } = ctx;
  const body = await ctx.body();
  const prompts = readPrompts(body).map((p) => (typeof p === "string" ? runtime.tokenize(p) : p));
  const sampling = readSampling(body);
  const logprobs = body.number("logprobs", { integer: true, min: 0, max: MAX_LOGPROBS });
  const echo = body.boolean("echo") ?? false;
  if (body.has("suffix")) throw invalidField("suffix", "suffix (insertion) is not supported by this server", "unsupported_parameter");
  const grammar = await responseFormatGrammar(body, runtime);
  const budgets = prompts.map((tokens) =>
    completionBudget({ contextSize: runtime.info.contextSize, promptTokens: tokens.length, maxTokens: sampling.maxTokens ?? Math.min(DEFAULT_MAX_TOKENS, runtime.info.contextSize - tokens.length), what: "prompt" }),
  );
  const start = (i: number): GenerationStream =>
    runtime.generate(prompts[i]!, {
      ...sampling.config,
      maxTokens: budgets[i]!,
      signal: ctx.signal,
      cachePrompt: true,
      stream: true,
      ...(grammar !== undefined ? { grammar } : {}),
      ...(logprobs !== undefined ? { logprobs } : {}),
    });
  const id = newId("cmpl");
  const created = nowSeconds();
  const head = { id, object: "text_completion", created, model: ctx.modelId, system_fingerprint: SYSTEM_FINGERPRINT };
  const texts = logprobs !== undefined ? new TokenTexts(runtime) : undefined;
  const echoed = (i: number) => (echo ? runtime.detokenize(prompts[i]!) : "");

  if (!sampling.stream) {
    // Each prompt takes a slot of its own; they run side by side when --parallel allows.
    const streams = prompts.map((_, i) => start(i));
    const results = await Promise.all(streams.map((s) => collect(ctx, s)));
    return Response.json({
      ...head,
      choices: results.map((r, i) => {
        const prefix = echoed(i);
        return {
          text: prefix + r.text,
          index: i,
          logprobs: texts !== undefined ? completionLogprobs(r.logprobs ?? [], texts, prefix.length) : null,
          finish_reason: finishReason(r),
        };
      }),
      usage: usageOf(results),
    });
  }

  const end = ctx.keepOpen();
  const usageField = sampling.includeUsage ? { usage: null } : {};
  async function* events(): AsyncGenerator<unknown, void, void> {
    const results: GenerationResult[] = [];
    let current: GenerationStream | undefined;
    let ttft: number | undefined;
    try {
      // One prompt after another: choice 0's chunks, then choice 1's.
      for (let i = 0; i < prompts.length; i++) {
        const stream = (current = start(i));
        let offset = echoed(i).length;
        let sent = 0;
        if (offset > 0) yield { ...head, choices: [{ text: echoed(i), index: i, logprobs: null, finish_reason: null }], ...usageField };
        for await (const piece of stream) {
          ttft ??= (performance.now() - ctx.startMs) / 1000;
          let lp = null;
          if (texts !== undefined) {
            const all = stream.progress.logprobs ?? [];
            lp = completionLogprobs(all.slice(sent), texts, offset);
            sent = all.length;
          }
          offset += piece.length;
          yield { ...head, choices: [{ text: piece, index: i, logprobs: lp, finish_reason: null }], ...usageField };
        }
        const r = await stream.result;
        results.push(r);
        current = undefined;
        recordResult(ctx, r, i === 0 ? ttft : undefined);
        yield { ...head, choices: [{ text: "", index: i, logprobs: null, finish_reason: finishReason(r) }], ...usageField };
      }
      if (sampling.includeUsage) yield { ...head, choices: [], usage: usageOf(results) };
    } finally {
      if (current !== undefined && current.progress.tokens.length > 0) {
        const r = await current.result.catch(() => undefined);
        if (r !== undefined) recordResult(ctx, r, undefined);
      }
      end();
    }
  }
  return sseResponse({ events: events(), onCancel: () => (ctx.abort(), end()), onError: (e) => ctx.errorBody(e) });
}

type Prompt = string | number[];

function readPrompts(body: Fields): Prompt[] {
  const v = body.raw("prompt");
  if (v === undefined) throw invalidField("prompt", "prompt is required", "missing_required_parameter");
  if (typeof v === "string") return [v];
  if (!Array.isArray(v) || v.length === 0) body.fail("prompt", "a string, an array of strings, or token ids");
  if (v.every((x) => typeof x === "number")) return [tokenIds(v, "prompt")];
  if (v.length > MAX_PROMPTS) throw invalidField("prompt", `prompt holds ${v.length} prompts; at most ${MAX_PROMPTS}`);
  return v.map((p, i): Prompt => {
    if (typeof p === "string") return p;
    if (Array.isArray(p) && p.length > 0) return tokenIds(p, `prompt[${i}]`);
    throw invalidField(`prompt[${i}]`, `prompt[${i}] must be a string or an array of token ids, got ${describe(p)}`);
  });
}

function tokenIds(list: Json[], param: string): number[] {
  if (list.some((t) => typeof t !== "number" || !Number.isInteger(t) || t < 0)) throw invalidField(param, `${param} must hold token ids (integers >= 0)`);
  return list as number[];
}
