// The request fields chat and text completions share: sampling, stop strings, streaming, and
// the check that the prompt plus max_tokens fits the context (a 400 giving both numbers, never
// a silent truncation).
import type { InferenceConfig } from "../config.js";
import { Fields } from "./body.js";
import { HttpError, invalidField } from "./errors.js";

/** Stop strings a request may give (OpenAI allows 4; llama-server more). */
const MAX_STOP_STRINGS = 16;
const MAX_TOP_LOGPROBS = 20;

export interface SamplingRequest {
  config: InferenceConfig;
  /** max_completion_tokens or max_tokens, when given. */
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
}

/** Reads the sampling fields into an InferenceConfig (maxTokens and logprobs are set by the caller). */
export function readSampling(body: Fields): SamplingRequest {
  const config: InferenceConfig = {};
  const temperature = body.number("temperature", { min: 0, max: 2 });
  const topP = body.number("top_p", { min: 0, max: 1 });
  if (temperature !== undefined) config.temperature = temperature;
  // top_p 0 keeps only the likeliest token: greedy.
  if (topP === 0) config.temperature = 0;
  else if (topP !== undefined) config.topP = topP;
  // llama-server's extensions.
  const topK = body.number("top_k", { min: 0, integer: true });
  const minP = body.number("min_p", { min: 0, max: 1 });
  const repeatPenalty = body.number("repeat_penalty", { min: 0, minExclusive: true });
  if (topK !== undefined) config.topK = topK;
  if (minP !== undefined) config.minP = minP;
  if (repeatPenalty !== undefined) config.repeatPenalty = repeatPenalty;
  const presence = body.number("presence_penalty", { min: -2, max: 2 });
  const frequency = body.number("frequency_penalty", { min: -2, max: 2 });
  if (presence !== undefined) config.presencePenalty = presence;
  if (frequency !== undefined) config.frequencyPenalty = frequency;
  const seed = body.number("seed", { integer: true });
  // llama.cpp seeds are 32-bit; OpenAI's are any integer.
  if (seed !== undefined) config.seed = ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const stop = readStop(body);
  if (stop.length > 0) config.stop = stop;

  const n = body.number("n", { integer: true, min: 1 });
  if (n !== undefined && n !== 1) throw invalidField("n", `n must be 1 (one choice per request), got ${n}`, "unsupported_value");
  const bias = body.object("logit_bias");
  if (bias !== undefined && Object.keys(bias.obj).length > 0) throw invalidField("logit_bias", "logit_bias is not supported by this server", "unsupported_parameter");

  const maxTokens = body.number("max_completion_tokens", { integer: true, min: 1 }) ?? body.number("max_tokens", { integer: true, min: 1 });
  const stream = body.boolean("stream") ?? false;
  const options = body.object("stream_options");
  if (options !== undefined && !stream) throw invalidField("stream_options", "stream_options is only allowed when stream is true");
  return { config, maxTokens, stream, includeUsage: options?.boolean("include_usage") ?? false };
}

function readStop(body: Fields): string[] {
  const v = body.raw("stop");
  if (v === undefined) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) body.fail("stop", "a string or an array of strings");
  if (list.length > MAX_STOP_STRINGS) throw invalidField("stop", `stop has ${list.length} strings; at most ${MAX_STOP_STRINGS}`);
  // OpenAI ignores empty stop strings.
  return (list as string[]).filter((s) => s.length > 0);
}

/** top_logprobs for chat (`logprobs: true` plus 0-20 alternatives); undefined when not asked. */
export function readChatLogprobs(body: Fields): number | undefined {
  const on = body.boolean("logprobs") ?? false;
  const top = body.number("top_logprobs", { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  if (top !== undefined && !on) throw invalidField("top_logprobs", "top_logprobs needs logprobs: true");
  return on ? (top ?? 0) : undefined;
}

/**
 * The completion budget: max_tokens when the prompt plus it fits the context, else a 400 that
 * gives both numbers. Without max_tokens, whatever room the prompt leaves (at least one token).
 */
export function completionBudget(options: { contextSize: number; promptTokens: number; maxTokens: number | undefined; what: "messages" | "prompt" }): number {
  const { contextSize, promptTokens, maxTokens, what } = options;
  const limit = `This model's maximum context length is ${contextSize} tokens (--ctx-size, per slot).`;
  if (maxTokens !== undefined && promptTokens + maxTokens > contextSize) {
    throw new HttpError(
      400,
      `${limit} However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the ${what}, ${maxTokens} in the completion). ` +
        `Please reduce the length of the ${what} or the completion (max_tokens).`,
      { param: what, code: "context_length_exceeded" },
    );
  }
  if (promptTokens >= contextSize) {
    throw new HttpError(400, `${limit} However, your ${what} resulted in ${promptTokens} tokens, which leaves no room for a completion. Please reduce the length of the ${what}.`, {
      param: what,
      code: "context_length_exceeded",
    });
  }
  return maxTokens ?? contextSize - promptTokens;
}
