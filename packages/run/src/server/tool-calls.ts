// Function calling: `tools` go to the model's own chat template (as llama-server does with
// --jinja), and calls are parsed from the text it writes. The format is the Hermes one that
// Qwen 2.5/3 and Hermes templates teach: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
// (llama.cpp common/chat.cpp, Hermes 2 Pro parser). tool_choice "required" or a named
// function is enforced with a grammar for exactly that text.
import { randomBytes } from "node:crypto";
import type { GrammarSpec } from "../backends/types.js";
import type { Runtime } from "../runtime.js";
import { describe, Fields, isObject, type Json, type JsonObject } from "./body.js";
import { invalidField } from "./errors.js";
import { gbnfLiteral, JSON_OBJECT_GBNF, prefixRules } from "./grammar.js";
import { schemaGrammar } from "./response-format.js";

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";
/** OpenAI's rule for function names. */
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_TOOLS = 128;

export interface ToolDefinition {
  name: string;
  /** The tool as the template reads it: OpenAI's {type: "function", function: {...}}. */
  spec: JsonObject;
  parameters: JsonObject | undefined;
}

export type ToolChoice = { mode: "none" | "auto" | "required" } | { mode: "function"; name: string };

export interface ParsedToolCall {
  id: string;
  name: string;
  /** A JSON string, as OpenAI sends it. */
  arguments: string;
}

/** Reads `tools` and `tool_choice`; undefined when the request has no tools. */
export function readTools(body: Fields, chatTemplate: string | undefined): { tools: ToolDefinition[]; choice: ToolChoice } | undefined {
  const list = body.array("tools");
  const choice = readChoice(body);
  if (list === undefined || list.length === 0) {
    if (choice !== undefined && choice.mode !== "none" && choice.mode !== "auto") {
      throw invalidField("tool_choice", "tool_choice needs tools: give the functions in `tools`");
    }
    return undefined;
  }
  if (list.length > MAX_TOOLS) throw invalidField("tools", `tools has ${list.length} entries; at most ${MAX_TOOLS}`);
  const tools = list.map((t, i): ToolDefinition => {
    const path = `tools[${i}]`;
    if (!isObject(t)) throw invalidField(path, `${path} must be an object, got ${describe(t)}`);
    const f = new Fields(t, path);
    if (f.oneOf("type", ["function"] as const) === undefined) throw invalidField(f.name("type"), `${f.name("type")} must be "function"`);
    const fn = f.object("function");
    if (fn === undefined) throw invalidField(f.name("function"), `${f.name("function")} is required`, "missing_required_parameter");
    const name = fn.string("name", { required: true });
    if (!FUNCTION_NAME.test(name)) throw invalidField(fn.name("name"), `${fn.name("name")} must be 1-64 letters, digits, _ or -, got ${JSON.stringify(name)}`);
    fn.string("description");
    const parameters = fn.object("parameters")?.obj;
    return { name, spec: t, parameters };
  });
  const names = new Set<string>();
  for (const t of tools) {
    if (names.has(t.name)) throw invalidField("tools", `tools names the function ${JSON.stringify(t.name)} twice`);
    names.add(t.name);
  }
  const resolved = choice ?? { mode: "auto" };
  if (resolved.mode === "function" && !names.has(resolved.name)) {
    throw invalidField("tool_choice", `tool_choice names ${JSON.stringify(resolved.name)}, which is not in tools (${[...names].join(", ")})`);
  }
  if (resolved.mode !== "none" && !(chatTemplate ?? "").includes(OPEN)) {
    throw invalidField(
      "tools",
      `this model's chat template does not write tool calls as ${OPEN}...${CLOSE} (Qwen 2.5/3, Hermes), the one format this server parses; ` +
        `use a model with such a template, or give a template with --chat-template-file`,
      "unsupported_tools",
    );
  }
  return { tools, choice: resolved };
}

function readChoice(body: Fields): ToolChoice | undefined {
  const v = body.raw("tool_choice");
  if (v === undefined) return undefined;
  if (v === "none" || v === "auto" || v === "required") return { mode: v };
  if (isObject(v)) {
    const f = new Fields(v, "tool_choice");
    const name = f.object("function")?.string("name", { required: true });
    if (f.raw("type") === "function" && name !== undefined) return { mode: "function", name };
  }
  throw invalidField("tool_choice", `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}, got ${describe(v)}`);
}

/** For "required" or a named function: a grammar for one call of (one of) the allowed functions. */
export async function toolCallGrammar(tools: ToolDefinition[], choice: ToolChoice, runtime: Runtime): Promise<GrammarSpec | undefined> {
  if (choice.mode !== "required" && choice.mode !== "function") return undefined;
  const allowed = choice.mode === "function" ? tools.filter((t) => t.name === choice.name) : tools;
  const parts: string[] = [];
  const alternatives: string[] = [];
  for (const [i, tool] of allowed.entries()) {
    const args = tool.parameters === undefined ? { gbnf: JSON_OBJECT_GBNF } : await schemaGrammar(tool.parameters, `tools[${tools.indexOf(tool)}].function.parameters`, runtime);
    const prefix = `t${i}-`;
    parts.push(prefixRules(args.gbnf, prefix));
    alternatives.push(`${prefix}call`);
    const head = `${OPEN}\n{"name": ${JSON.stringify(tool.name)}, "arguments": `;
    parts.push(`${prefix}call ::= ${gbnfLiteral(head)} ${prefix}${args.rootRule ?? "root"} ${gbnfLiteral(`}\n${CLOSE}`)}`);
  }
  return { gbnf: `tool-calls ::= ${alternatives.join(" | ")}\n${parts.join("\n")}\n`, rootRule: "tool-calls" };
}

/** A call id as OpenAI writes them. */
export function newCallId(): string {
  return "call_" + randomBytes(18).toString("base64url").replace(/[-_]/g, "x").slice(0, 24);
}

/** The call in one <tool_call> block, or undefined when it is not {"name": string, "arguments"?: object|string}. */
function parseCall(inner: string): ParsedToolCall | undefined {
  let v: Json;
  try {
    v = JSON.parse(inner) as Json;
  } catch {
    return undefined;
  }
  if (!isObject(v) || typeof v.name !== "string") return undefined;
  const args = v.arguments ?? v.parameters ?? {};
  if (typeof args !== "string" && !isObject(args)) return undefined;
  return { id: newCallId(), name: v.name, arguments: typeof args === "string" ? args : JSON.stringify(args) };
}

/**
 * Splits streamed text into content and tool calls. Text that could be the start of a
 * <tool_call> is held back until it is known; a block that does not parse stays content.
 */
export class ToolCallParser {
  private buffer = "";
  private inCall = false;
  readonly calls: ParsedToolCall[] = [];

  /** Content that is safe to show, and calls completed by this piece. */
  push(piece: string): { content: string; calls: ParsedToolCall[] } {
    this.buffer += piece;
    return this.drain(false);
  }

  /** Everything left, at the end of generation (an unclosed block that parses still counts). */
  flush(): { content: string; calls: ParsedToolCall[] } {
    return this.drain(true);
  }

  private drain(final: boolean): { content: string; calls: ParsedToolCall[] } {
    let content = "";
    const calls: ParsedToolCall[] = [];
    for (;;) {
      if (!this.inCall) {
        const at = this.buffer.indexOf(OPEN);
        if (at >= 0) {
          content += this.buffer.slice(0, at);
          this.buffer = this.buffer.slice(at + OPEN.length);
          this.inCall = true;
          continue;
        }
        const keep = final ? 0 : heldPrefix(this.buffer, OPEN);
        content += this.buffer.slice(0, this.buffer.length - keep);
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        break;
      }
      const end = this.buffer.indexOf(CLOSE);
      if (end < 0 && !final) break;
      const inner = end < 0 ? this.buffer : this.buffer.slice(0, end);
      const call = parseCall(inner.trim());
      if (call !== undefined) calls.push(call);
      else content += OPEN + inner + (end < 0 ? "" : CLOSE);
      this.buffer = end < 0 ? "" : this.buffer.slice(end + CLOSE.length);
      this.inCall = false;
      if (end < 0) break;
    }
    this.calls.push(...calls);
    return { content, calls };
  }
}

/** Length of the longest tail of `text` that is a proper prefix of `marker`. */
function heldPrefix(text: string, marker: string): number {
  for (let k = Math.min(marker.length - 1, text.length); k > 0; k--) if (text.endsWith(marker.slice(0, k))) return k;
  return 0;
}

/** Whole-text split into content and calls (non-streaming responses). */
export function parseToolCalls(text: string): { content: string; calls: ParsedToolCall[] } {
  const p = new ToolCallParser();
  const a = p.push(text);
  const b = p.flush();
  return { content: a.content + b.content, calls: [...a.calls, ...b.calls] };
}
