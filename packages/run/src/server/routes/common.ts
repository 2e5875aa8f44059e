// Pieces chat and text completions share: ids, usage, finish reasons, and running one
// generation with its metrics.
import { randomBytes } from "node:crypto";
import type { GenerationResult } from "../../generation.js";
import type { GenerationStream } from "../../runtime.js";
import { RUNTIME_NAME, RUNTIME_VERSION } from "../../version.js";
import type { RouteContext } from "../app.js";
import { HttpError } from "../errors.js";

export const SYSTEM_FINGERPRINT = `${RUNTIME_NAME}-${RUNTIME_VERSION}`;

export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(results: readonly GenerationResult[]): Usage {
  const prompt = results.reduce((n, r) => n + r.promptTokens, 0);
  const completion = results.reduce((n, r) => n + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * OpenAI's finish_reason. A generation the server cut short (shutdown) while the client was
 * still there is an error rather than a truncated answer that looks complete.
 */
export function finishReason(r: GenerationResult): "stop" | "length" {
  if (r.finishReason === "abort") throw new HttpError(503, "the server is shutting down; the generation was cancelled", { type: "unavailable_error", code: "unavailable" });
  return r.finishReason;
}

/** Reads a whole generation (non-streaming) and records its tokens and time to first token. */
export async function collect(ctx: RouteContext, stream: GenerationStream): Promise<GenerationResult> {
  const r = await stream.collect();
  recordResult(ctx, r, (performance.now() - ctx.startMs) / 1000 - r.generationSeconds);
  return r;
}

export function recordResult(ctx: RouteContext, r: GenerationResult, ttftSeconds: number | undefined): void {
  ctx.metrics.tokens(r.promptTokens, r.completionTokens);
  if (ttftSeconds !== undefined && r.completionTokens > 0) ctx.metrics.timeToFirstToken(ttftSeconds);
}
