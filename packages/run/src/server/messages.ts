// Chat messages in OpenAI's shape to the runtime's ChatMessage: text content parts joined,
// "developer" read as "system", assistant tool calls and tool results kept for the template.
import type { ChatMessage, ChatToolCall } from "../chat-template.js";
import { describe, Fields, isObject, type Json } from "./body.js";
import { invalidField } from "./errors.js";

const ROLES = ["system", "developer", "user", "assistant", "tool", "function"] as const;

export function readMessages(body: Fields): ChatMessage[] {
  const list = body.array("messages");
  if (list === undefined) throw invalidField("messages", "messages is required", "missing_required_parameter");
  if (list.length === 0) throw invalidField("messages", "messages must hold at least one message");
  return list.map((m, i) => readMessage(m, `messages[${i}]`));
}

function readMessage(m: Json, path: string): ChatMessage {
  if (!isObject(m)) throw invalidField(path, `${path} must be an object, got ${describe(m)}`);
  const f = new Fields(m, path);
  const role = f.oneOf("role", ROLES);
  if (role === undefined) throw invalidField(f.name("role"), `${f.name("role")} is required`, "missing_required_parameter");
  const toolCalls = role === "assistant" ? readToolCalls(f) : undefined;
  const content = readContent(f, role === "assistant" && toolCalls !== undefined);
  const out: ChatMessage = { role: role === "developer" ? "system" : role === "function" ? "tool" : role, content };
  if (toolCalls !== undefined) out.tool_calls = toolCalls;
  if (role === "tool") {
    const id = f.string("tool_call_id");
    if (id !== undefined) out.tool_call_id = id;
  }
  const name = f.string("name");
  if (name !== undefined) out.name = name;
  return out;
}

function readContent(f: Fields, optional: boolean): string {
  const v = f.raw("content");
  if (v === undefined) {
    if (optional) return "";
    throw invalidField(f.name("content"), `${f.name("content")} is required`, "missing_required_parameter");
  }
  if (typeof v === "string") return v;
  if (!Array.isArray(v)) f.fail("content", "a string or an array of content parts");
  return v
    .map((part, i) => {
      const where = `${f.name("content")}[${i}]`;
      if (!isObject(part)) throw invalidField(where, `${where} must be a content part object, got ${describe(part)}`);
      const p = new Fields(part, where);
      const type = p.string("type", { required: true });
      if (type !== "text") throw invalidField(p.name("type"), `${p.name("type")} is ${JSON.stringify(type)}; this server reads only text parts`, "unsupported_content");
      return p.string("text", { required: true });
    })
    .join("\n");
}

function readToolCalls(f: Fields): ChatToolCall[] | undefined {
  const list = f.array("tool_calls");
  if (list === undefined || list.length === 0) return undefined;
  return list.map((c, i) => {
    const where = `${f.name("tool_calls")}[${i}]`;
    if (!isObject(c)) throw invalidField(where, `${where} must be an object, got ${describe(c)}`);
    const call = new Fields(c, where);
    const fn = call.object("function");
    if (fn === undefined) throw invalidField(call.name("function"), `${call.name("function")} is required`, "missing_required_parameter");
    const name = fn.string("name", { required: true });
    const args = fn.raw("arguments") ?? "{}";
    if (typeof args !== "string" && !isObject(args)) fn.fail("arguments", "a JSON string");
    // Templates write arguments with `tojson`, so they get the object (llama-server does the same).
    const parsed = typeof args === "string" ? parseObject(args) : (args as Record<string, unknown>);
    const id = call.string("id");
    return { ...(id !== undefined ? { id } : {}), type: "function" as const, function: { name, arguments: parsed ?? (args as string) } };
  });
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as Json;
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
