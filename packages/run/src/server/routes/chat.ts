// POST /v1/chat/completions: the model's chat template over the messages (and tools), then
// one generation on a slot; a JSON body or SSE chunks.
import type { GrammarSpec } from "../../backends/types.js";
import type { GenerationResult } from "../../generation.js";
import type { RouteContext } from "../app.js";
import { invalidField } from "../errors.js";
import { chatLogprobs, type ChatLogprob, TokenTexts } from "../logprobs.js";
import { readMessages } from "../messages.js";
import { responseFormatGrammar } from "../response-format.js";
import { completionBudget, readChatLogprobs, readSampling } from "../sampling.js";
import { sseResponse } from "../sse.js";
import { type ParsedToolCall, parseToolCalls, readTools, ToolCallParser, toolCallGrammar } from "../tool-calls.js";
import { collect, finishReason, newId, nowSeconds, recordResult, SYSTEM_FINGERPRINT, usageOf } from "./common.js";

export async function chatCompletions(ctx: RouteContext): Promise<Response> {
  const { runtime } = ctx;
  const body = await ctx.body();
  const messages = readMessages(body);
  const sampling = readSampling(body);
  const logprobs = readChatLogprobs(body);
  const tools = readTools(body, runtime.chatTemplate);
  const kwargs = { ...(body.object("chat_template_kwargs")?.obj ?? {}), ...(tools !== undefined ? { tools: tools.tools.map((t) => t.spec) } : {}) };

  let grammar: GrammarSpec | undefined = await responseFormatGrammar(body, runtime);
  const callGrammar = tools === undefined ? undefined : await toolCallGrammar(tools.tools, tools.choice, runtime);
  if (callGrammar !== undefined) {
    if (grammar !== undefined) throw invalidField("response_format", "response_format cannot be combined with a tool_choice that forces a call");
    grammar = callGrammar;
  }
  const parseCalls = tools !== undefined && tools.choice.mode !== "none";

  const rendered = runtime.applyChatTemplate(messages, kwargs);
  const maxTokens = completionBudget({ contextSize: runtime.info.contextSize, promptTokens: rendered.tokens.length, maxTokens: sampling.maxTokens, what: "messages" });
  const stream = runtime.generate(rendered.tokens, {
    ...sampling.config,
    maxTokens,
    signal: ctx.signal,
    cachePrompt: true,
    stream: true,
    ...(grammar !== undefined ? { grammar } : {}),
    ...(logprobs !== undefined ? { logprobs } : {}),
  });
  const id = newId("chatcmpl");
  const created = nowSeconds();
  const texts = logprobs !== undefined ? new TokenTexts(runtime) : undefined;
  const head = { id, object: "chat.completion.chunk", created, model: ctx.modelId, system_fingerprint: SYSTEM_FINGERPRINT };

  if (!sampling.stream) {
    const r = await collect(ctx, stream);
    const { content, calls } = parseCalls ? parseToolCalls(r.text) : { content: r.text, calls: [] };
    const finish = calls.length > 0 ? "tool_calls" : finishReason(r);
    return Response.json({
      id,
      object: "chat.completion",
      created,
      model: ctx.modelId,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: calls.length > 0 && content.trim() === "" ? null : content,
            ...(calls.length > 0 ? { tool_calls: calls.map(toolCallJson) } : {}),
            refusal: null,
          },
          logprobs: texts !== undefined ? { content: chatLogprobs(r.logprobs ?? [], texts), refusal: null } : null,
          finish_reason: finish,
        },
      ],
      usage: usageOf([r]),
    });
  }

  const end = ctx.keepOpen();
  const usageField = sampling.includeUsage ? { usage: null } : {};
  const chunk = (delta: Record<string, unknown>, lp: ChatLogprob[] | undefined, finish: string | null = null) => ({
    ...head,
    choices: [{ index: 0, delta, logprobs: lp !== undefined ? { content: lp, refusal: null } : null, finish_reason: finish }],
    ...usageField,
  });
  async function* events(): AsyncGenerator<unknown, void, void> {
    let result: GenerationResult | undefined;
    let ttft: number | undefined;
    try {
      yield chunk({ role: "assistant", content: "", refusal: null }, undefined);
      const parser = parseCalls ? new ToolCallParser() : undefined;
      let sentLogprobs = 0;
      const newLogprobs = () => {
        const all = stream.progress.logprobs ?? [];
        const fresh = all.slice(sentLogprobs);
        sentLogprobs = all.length;
        return chatLogprobs(fresh, texts!);
      };
      let callIndex = 0;
      const out = function* (content: string, calls: ParsedToolCall[], lp: ChatLogprob[] | undefined) {
        if (content.length > 0 || (lp !== undefined && lp.length > 0)) yield chunk({ content }, lp);
        for (const c of calls) yield chunk({ tool_calls: [{ index: callIndex++, ...toolCallJson(c) }] }, undefined);
      };
      for await (const piece of stream) {
        ttft ??= (performance.now() - ctx.startMs) / 1000;
        const { content, calls } = parser !== undefined ? parser.push(piece) : { content: piece, calls: [] };
        yield* out(content, calls, texts !== undefined ? newLogprobs() : undefined);
      }
      result = await stream.result;
      if (parser !== undefined) {
        const rest = parser.flush();
        yield* out(rest.content, rest.calls, texts !== undefined ? newLogprobs() : undefined);
      }
      const finish = parser !== undefined && parser.calls.length > 0 ? "tool_calls" : finishReason(result);
      yield chunk({}, undefined, finish);
      if (sampling.includeUsage) yield { ...head, choices: [], usage: usageOf([result]) };
    } finally {
      result ??= stream.progress.tokens.length > 0 ? await stream.result.catch(() => undefined) : undefined;
      if (result !== undefined) recordResult(ctx, result, ttft);
      end();
    }
  }
  return sseResponse({ events: events(), onCancel: () => (ctx.abort(), end()), onError: (e) => ctx.errorBody(e) });
}

function toolCallJson(c: ParsedToolCall) {
  return { id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } };
}
