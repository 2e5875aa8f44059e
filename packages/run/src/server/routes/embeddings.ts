// POST /v1/embeddings: one L2-normalized vector per input text (llama-server normalizes the
// same way), as float arrays or as base64 of little-endian float32 (the openai client's default).
import type { RouteContext } from "../app.js";
import { describe } from "../body.js";
import { HttpError, invalidField } from "../errors.js";

/** Inputs one request may embed (OpenAI allows 2048). */
const MAX_INPUTS = 2048;

export async function embeddings(ctx: RouteContext): Promise<Response> {
  const { runtime } = ctx;
  const body = await ctx.body();
  const input = body.raw("input");
  if (input === undefined) throw invalidField("input", "input is required", "missing_required_parameter");
  const texts = typeof input === "string" ? [input] : input;
  if (!Array.isArray(texts) || texts.length === 0 || texts.some((t) => typeof t !== "string")) {
    throw invalidField("input", `input must be a string or a non-empty array of strings (token ids are not supported), got ${describe(input)}`);
  }
  if (texts.length > MAX_INPUTS) throw invalidField("input", `input holds ${texts.length} texts; at most ${MAX_INPUTS}`);
  const format = body.oneOf("encoding_format", ["float", "base64"] as const) ?? "float";
  const width = runtime.info.embeddingSize;
  const dimensions = body.number("dimensions", { integer: true, min: 1 });
  if (dimensions !== undefined && dimensions !== width) throw invalidField("dimensions", `this model's embeddings have ${width} dimensions; dimensions ${dimensions} is not supported`, "unsupported_value");
  const counts = (texts as string[]).map((t, i) => {
    if (t.length === 0) throw invalidField(`input[${i}]`, `input[${i}] is empty; give text to embed`);
    const n = runtime.tokenize(t).length;
    if (n > runtime.info.contextSize - 1) {
      throw new HttpError(400, `input[${i}] is ${n} tokens, but this model's context holds ${runtime.info.contextSize} (--ctx-size); shorten it`, {
        param: `input[${i}]`,
        code: "context_length_exceeded",
      });
    }
    return n;
  });
  const vectors = await runtime.embed(texts as string[]);
  const tokens = counts.reduce((a, b) => a + b, 0);
  ctx.metrics.tokens(tokens, 0);
  return Response.json({
    object: "list",
    data: vectors.map((v, index) => {
      const unit = normalize(v);
      return { object: "embedding", index, embedding: format === "base64" ? Buffer.from(new Float32Array(unit).buffer).toString("base64") : unit };
    }),
    model: ctx.modelId,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

function normalize(v: number[]): number[] {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}
