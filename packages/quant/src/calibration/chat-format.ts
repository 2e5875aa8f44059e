// `--calibration-chat-template`: calibration text as a chat model meets it. The text is cut at
// line ends into pieces of about CHAT_TURN_BYTES, and each piece becomes one user turn rendered
// with the model's own chat template (tokenizer.chat_template, a Jinja template, rendered by
// @huggingface/jinja as transformers.js does), so the importance matrix also sees the
// template's special tokens and role headers. The turns are joined and then windowed as any
// text: each window gets its BOS from the chunk schedule, so bos_token renders empty here.

import { createHash } from "node:crypto";
import { Template } from "@huggingface/jinja";
import { InputError } from "@llama-pajamas/artifact";
import type { CalibrationText } from "./text.js";

/** Bytes of text per user turn (about 250 tokens: two turns to a 512-token window). */
export const CHAT_TURN_BYTES = 1024;

/** The text cut at line ends into pieces of at least `turnBytes` (the last may be shorter), blank pieces dropped. */
export function chatTurns(text: string, turnBytes = CHAT_TURN_BYTES): string[] {
  const turns: string[] = [];
  let cur = "";
  for (const line of text.split(/(?<=\n)/)) {
    cur += line;
    if (Buffer.byteLength(cur) >= turnBytes) {
      if (cur.trim() !== "") turns.push(cur.trim());
      cur = "";
    }
  }
  if (cur.trim() !== "") turns.push(cur.trim());
  return turns;
}

export interface ChatFormatOptions {
  /** The Jinja chat template (GGUF tokenizer.chat_template). */
  template: string;
  /** Spelling of the EOS token, for templates that write {{ eos_token }}. */
  eosToken: string;
  turnBytes?: number;
}

/** Each piece of `text` as a user turn of the template, joined. */
export function formatAsChat(text: string, opts: ChatFormatOptions): string {
  let template: Template;
  try {
    template = new Template(opts.template);
  } catch (e) {
    throw new InputError(`the model's chat template cannot be parsed: ${(e as Error).message}; drop --calibration-chat-template`, { code: "E_TEMPLATE", cause: e });
  }
  return chatTurns(text, opts.turnBytes)
    .map((content, i) => {
      try {
        return template.render({ messages: [{ role: "user", content }], add_generation_prompt: false, bos_token: "", eos_token: opts.eosToken });
      } catch (e) {
        throw new InputError(`the model's chat template cannot render calibration turn ${i + 1}: ${(e as Error).message}; drop --calibration-chat-template`, {
          code: "E_TEMPLATE",
          cause: e,
        });
      }
    })
    .join("");
}

/** `t` formatted as chat turns, its record saying so (bytes and sha256 of the formatted text). */
export function chatFormattedText(t: CalibrationText, opts: ChatFormatOptions): CalibrationText {
  const text = Buffer.from(formatAsChat(Buffer.from(t.text).toString("utf8"), opts), "utf8");
  return {
    ...t,
    text,
    name: `${t.name} (as chat turns)`,
    info: { ...t.info, chatTemplate: true, bytes: text.byteLength, sha256: createHash("sha256").update(text).digest("hex") },
  };
}
