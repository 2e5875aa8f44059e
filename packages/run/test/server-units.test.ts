// The server's pure parts, no engine: tool-call parsing while streaming, GBNF composition, the
// context budget, the error envelope mapping.
import { UsageError } from "@llama-pajamas/artifact";
import { describe, expect, it } from "vitest";
import { ContextOverflowError } from "../src/errors.js";
import { SlotPool } from "../src/slot-pool.js";
import { HttpError, mapError } from "../src/server/errors.js";
import { gbnfLiteral, JSON_OBJECT_GBNF, prefixRules } from "../src/server/grammar.js";
import { completionBudget } from "../src/server/sampling.js";
import { parseToolCalls, ToolCallParser } from "../src/server/tool-calls.js";

describe("tool-call parsing", () => {
  const text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';

  it("splits content and calls, arguments as a JSON string", () => {
    const { content, calls } = parseToolCalls(text);
    expect(content.trim()).toBe("Let me check.");
    expect(calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ["get_weather", { city: "Oslo" }],
      ["get_time", {}],
    ]);
    expect(calls[0]!.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
  });

  it("gives the same result fed one character at a time, never showing part of a tag", () => {
    const p = new ToolCallParser();
    let content = "";
    const names: string[] = [];
    for (const ch of text) {
      const out = p.push(ch);
      content += out.content;
      names.push(...out.calls.map((c) => c.name));
      expect(content).not.toMatch(/<(t(o(o(l(_(c(a(l(l)?)?)?)?)?)?)?)?)?$/);
    }
    const rest = p.flush();
    expect((content + rest.content).trim()).toBe("Let me check.");
    expect([...names, ...rest.calls.map((c) => c.name)]).toEqual(["get_weather", "get_time"]);
  });

  it("keeps a block that is not a call as content, and releases a lone '<' at the end", () => {
    expect(parseToolCalls("a <tool_call>not json</tool_call> b")).toMatchObject({ content: "a <tool_call>not json</tool_call> b", calls: [] });
    expect(parseToolCalls("x <tool")).toMatchObject({ content: "x <tool", calls: [] });
    // A call cut off before its closing tag still counts when its JSON is whole.
    expect(parseToolCalls('<tool_call>{"name": "f", "arguments": {"a": 1}}').calls.map((c) => c.arguments)).toEqual(['{"a":1}']);
  });
});

describe("GBNF composition", () => {
  it("prefixes rule names but not literals, classes, counts or comments", () => {
    const g = 'root ::= "root" [a-z]{0,15} item # root\nitem ::= "\\"x\\"" | root-2\nroot-2 ::= [\\]] ws';
    expect(prefixRules(g, "p-")).toBe('p-root ::= "root" [a-z]{0,15} p-item # root\np-item ::= "\\"x\\"" | p-root-2\np-root-2 ::= [\\]] p-ws');
    expect(prefixRules(JSON_OBJECT_GBNF, "t0-")).toContain('t0-string ::= "\\"" ( [^"\\\\\\x7F\\x00-\\x1F] |');
  });

  it("escapes literals", () => {
    expect(gbnfLiteral('<tool_call>\n{"name": "a\\b"}\t')).toBe('"<tool_call>\\n{\\"name\\": \\"a\\\\b\\"}\\t"');
  });
});

describe("completionBudget", () => {
  it("refuses prompt plus max_tokens beyond the context, giving both numbers", () => {
    expect(() => completionBudget({ contextSize: 256, promptTokens: 200, maxTokens: 100, what: "messages" })).toThrow(
      "This model's maximum context length is 256 tokens (--ctx-size, per slot). However, you requested 300 tokens (200 in the messages, 100 in the completion).",
    );
    expect(completionBudget({ contextSize: 256, promptTokens: 200, maxTokens: 56, what: "messages" })).toBe(56);
    expect(completionBudget({ contextSize: 256, promptTokens: 200, maxTokens: undefined, what: "prompt" })).toBe(56);
    expect(() => completionBudget({ contextSize: 256, promptTokens: 256, maxTokens: undefined, what: "prompt" })).toThrow("your prompt resulted in 256 tokens");
  });
});

describe("mapError", () => {
  it("maps each error kind to OpenAI's envelope and status, hiding internals", () => {
    expect(mapError(new HttpError(404, "nope", { code: "model_not_found", param: "model" }))).toMatchObject({
      status: 404,
      body: { error: { message: "nope", type: "invalid_request_error", param: "model", code: "model_not_found" } },
    });
    expect(mapError(new ContextOverflowError("too long", { promptTokens: 9, contextSize: 8 }))).toMatchObject({ status: 400, body: { error: { code: "context_length_exceeded" } } });
    expect(mapError(new UsageError("topP must be in (0, 1]"))).toMatchObject({ status: 400, body: { error: { type: "invalid_request_error" } } });
    const internal = mapError(new TypeError("cannot read x of undefined at /secret/path.js"));
    expect(internal).toMatchObject({ status: 500, internal: true, body: { error: { type: "server_error", param: null, code: null } } });
    expect(JSON.stringify(internal.body)).not.toContain("secret");
  });
});

describe("SlotPool (the runtime's sequences behind --parallel)", () => {
  it("hands out free slots, prefers a cached prefix, and serves waiters in order", async () => {
    const pool = new SlotPool(2);
    const a = await pool.acquire();
    pool.release(a!, [1, 2, 3]);
    // Slot a holds [1, 2, 3]: a prompt starting with [1, 2] goes there.
    expect(await pool.acquire({ tokens: [1, 2, 9] })).toBe(a);
    const b = await pool.acquire();
    expect(b).not.toBe(a);
    expect([pool.busy, pool.waiting]).toEqual([2, 0]);
    const order: string[] = [];
    const first = pool.acquire().then((s) => (order.push("first"), s));
    const second = pool.acquire().then((s) => (order.push("second"), s));
    expect(pool.waiting).toBe(2);
    pool.release(b!);
    pool.release(a!);
    expect([await first, await second].sort()).toEqual([a, b].sort());
    expect(order).toEqual(["first", "second"]);
  });

  it("lets a waiter give up, and gives every slot to acquireAll once the calls before it are done", async () => {
    const pool = new SlotPool(2);
    const [a, b] = [await pool.acquire(), await pool.acquire()];
    const controller = new AbortController();
    const gaveUp = pool.acquire({ signal: controller.signal });
    const all = pool.acquireAll();
    const after = pool.acquire();
    controller.abort();
    expect(await gaveUp).toBeUndefined();
    pool.release(a!);
    // acquireAll is ahead of `after`, which must not take the freed slot.
    await new Promise((r) => setTimeout(r, 5));
    expect(pool.busy).toBe(2);
    pool.release(b!);
    const releaseAll = await all;
    expect(pool.busy).toBe(2);
    releaseAll();
    expect(await after).toBeTypeOf("number");
  });
});
