import { UsageError } from "@llama-pajamas/artifact";
import type { LoadedModel } from "./backends/types.js";
import { ModelStateError } from "./errors.js";

/** One chat turn, as Hugging Face chat templates read it. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  content: string;
  /** An assistant turn's function calls (OpenAI's shape; templates that support tools read them). */
  tool_calls?: ChatToolCall[];
  /** A tool turn: the call it answers. */
  tool_call_id?: string;
  /** A tool turn: the function's name. */
  name?: string;
}

export interface ChatToolCall {
  id?: string;
  type: "function";
  /** `arguments` as an object: templates write it with `tojson` (a JSON string is kept as is). */
  function: { name: string; arguments: string | Record<string, unknown> };
}

export interface RenderedChat {
  /** The template's output, exactly what the model reads (BOS aside). */
  text: string;
  /** `text` tokenized with control tokens parsed, plus BOS where the model adds one. */
  tokens: number[];
}

/**
 * Renders messages with the model's Jinja chat template the way Hugging Face's
 * apply_chat_template does (messages, add_generation_prompt, bos_token, eos_token, plus any
 * kwargs such as Qwen3's enable_thinking) and tokenizes the whole text with control tokens
 * parsed, as llama-server does. A template that writes BOS itself gets no second one.
 */
export function renderChat(
  model: LoadedModel,
  options: { template: string | undefined; messages: readonly ChatMessage[]; kwargs?: Record<string, unknown>; modelName: string },
): RenderedChat {
  const { messages } = options;
  if (!Array.isArray(messages) || messages.length === 0) throw new UsageError("chat needs at least one message");
  messages.forEach((m, i) => {
    if (typeof m?.role !== "string" || typeof m.content !== "string") {
      throw new UsageError(`messages[${i}] must be {role: string, content: string}, got ${JSON.stringify(m)?.slice(0, 80)}`);
    }
  });
  const template = options.template;
  if (template === undefined) {
    throw new ModelStateError(
      "E_NO_CHAT_TEMPLATE",
      `${options.modelName} has no chat template (GGUF key tokenizer.chat_template); use generate for raw ` +
        `text, or give one (--chat-template-file, or the chatTemplate option)`,
    );
  }
  const { bosToken, eosToken, addBos } = model.info;
  const text = model.renderTemplate(template, {
    ...options.kwargs,
    messages: messages.map((m) => ({
      role: m.role,
      content: m.content,
      ...(m.tool_calls !== undefined ? { tool_calls: m.tool_calls } : {}),
      ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
      ...(m.name !== undefined ? { name: m.name } : {}),
    })),
    add_generation_prompt: true,
    bos_token: bosToken?.text ?? "",
    eos_token: eosToken?.text ?? "",
  });
  const tokens = model.tokenize(text, true);
  if (addBos && bosToken !== undefined && tokens[0] !== bosToken.id) tokens.unshift(bosToken.id);
  return { text, tokens };
}
