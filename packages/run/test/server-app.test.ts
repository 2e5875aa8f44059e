// The HTTP app in process (app.fetch with web Requests, as Hono's app.request) on a real engine:
// qwen3-tiny converted by the pipeline, 4 slots. Every route, every error status, streaming,
// grammars, tools, logprobs, concurrency and disconnects.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runtime } from "../src/runtime.js";
import { ServerApp } from "../src/server/app.js";
import { convertFixture, makeTempDir, removeTempDir, THREADS } from "./helpers.js";
import { chatStreamText, json, readSse, request, sseData } from "./server-helpers.js";

const CTX = 256;
const PARALLEL = 4;
let tmp: string;
let runtime: Runtime;
let app: ServerApp;
let modelId: string;
const logged: string[] = [];

beforeAll(async () => {
  tmp = await makeTempDir();
  const q = await convertFixture("qwen3-tiny", tmp);
  runtime = await Runtime.load({ modelPath: q.gguf, backend: "cpu", threads: THREADS, ctxSize: CTX, parallel: PARALLEL });
  app = new ServerApp({ onLog: (level, m) => logged.push(`${level}: ${m}`) });
  app.attach(runtime);
  modelId = app.id;
});
afterAll(async () => {
  await runtime?.unload();
  await removeTempDir(tmp);
});

const user = (content: string) => [{ role: "user", content }];
const chat = (body: Record<string, unknown>, a = app) => request(a, "/v1/chat/completions", { body: { model: modelId, temperature: 0, ...body } });

/** Polls `check` (bounded) until it holds. */
async function eventually(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("health and models", () => {
  it("answers 503 until a model is attached, then 200", async () => {
    const loading = new ServerApp();
    const h = await request(loading, "/health");
    expect(h.status).toBe(503);
    expect(await json(h)).toEqual({ error: { message: "Loading model", type: "unavailable_error", param: null, code: "loading" } });
    expect((await request(loading, "/v1/models")).status).toBe(503);
    const ok = await request(app, "/health");
    expect([ok.status, await json(ok)]).toEqual([200, { status: "ok" }]);
  });

  it("lists the one model by its file name and retrieves it; another id is a 404", async () => {
    expect(modelId).toBe("qwen3-tiny-q8_0.gguf");
    const list = await json(await request(app, "/v1/models"));
    expect(list).toMatchObject({ object: "list", data: [{ id: modelId, object: "model", owned_by: "llama-pajamas", meta: { n_ctx: CTX, parallel: PARALLEL } }] });
    expect(await json(await request(app, `/v1/models/${modelId}`))).toMatchObject({ id: modelId });
    const missing = await request(app, "/v1/models/gpt-4o");
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ error: { param: "model", code: "model_not_found" } });
  });
});

describe("chat completions", () => {
  const messages = user("Tell me a story");

  it("answers like Runtime.chat, with OpenAI's shape and usage", async () => {
    const expected = await runtime.chat(messages, { temperature: 0, maxTokens: 6 });
    const r = await chat({ messages, max_tokens: 6 });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    const body = await json(r);
    expect(body).toMatchObject({
      object: "chat.completion",
      model: modelId,
      choices: [{ index: 0, message: { role: "assistant", content: expected.text }, logprobs: null, finish_reason: "length" }],
      usage: { prompt_tokens: runtime.applyChatTemplate(messages).tokens.length, completion_tokens: 6, total_tokens: expected.promptTokens + 6 },
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(typeof body.created).toBe("number");
  });

  it("streams chunks that add up to the same text, then usage and [DONE]", async () => {
    const whole = (await json(await chat({ messages, max_tokens: 6 }))).choices[0].message.content;
    const r = await chat({ messages, max_tokens: 6, stream: true, stream_options: { include_usage: true } });
    expect(r.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readSse(r);
    expect(events.at(-1)).toBe("[DONE]");
    expect(events[0].choices[0].delta).toEqual({ role: "assistant", content: "", refusal: null });
    expect(events.slice(0, -1).every((e) => e.object === "chat.completion.chunk" && e.id === events[0].id)).toBe(true);
    expect(chatStreamText(events)).toEqual({ text: whole, finish: "length" });
    expect(events.at(-2)).toMatchObject({ choices: [], usage: { completion_tokens: 6 } });
  });

  it("reuses a slot's cached prefix across turns and still matches a fresh evaluation", async () => {
    const first = user("Hi there");
    const r1 = await json(await chat({ messages: first, max_tokens: 8 }));
    const second = [...first, { role: "assistant", content: r1.choices[0].message.content }, ...user("And then?")];
    const r2 = await json(await chat({ messages: second, max_tokens: 8 }));
    const fresh = await runtime.generate(runtime.applyChatTemplate(second).tokens, { temperature: 0, maxTokens: 8, cachePrompt: false });
    expect(r2.choices[0].message.content).toBe(fresh.text);
    expect(r2.usage.prompt_tokens).toBe(fresh.promptTokens);
  });

  it("cuts at a stop string (finish_reason stop) and reads developer roles and text parts", async () => {
    const full = (await json(await chat({ messages, max_tokens: 12 }))).choices[0].message.content as string;
    const stop = full.trim().split(/\s+/)[2]!;
    const cut = await json(await chat({ messages, max_tokens: 12, stop }));
    expect(cut.choices[0]).toMatchObject({ message: { content: full.slice(0, full.indexOf(stop)) }, finish_reason: "stop" });
    const a = await json(await chat({ messages: [{ role: "system", content: "Be brief.\nNo lists." }, ...messages], max_tokens: 1 }));
    const b = await json(await chat({ messages: [{ role: "developer", content: [{ type: "text", text: "Be brief." }, { type: "text", text: "No lists." }] }, ...messages], max_tokens: 1 }));
    expect(b.usage.prompt_tokens).toBe(a.usage.prompt_tokens);
  });

  it("reports logprobs with top alternatives; greedy picks the top one", async () => {
    const body = await json(await chat({ messages, max_tokens: 4, logprobs: true, top_logprobs: 3 }));
    const content = body.choices[0].logprobs.content;
    expect(content).toHaveLength(4);
    expect(content.map((c: any) => c.token).join("")).toBe(body.choices[0].message.content);
    for (const c of content) {
      expect(c.logprob).toBeLessThanOrEqual(0);
      expect(c.bytes).toEqual([...Buffer.from(c.token)]);
      expect(c.top_logprobs).toHaveLength(3);
      expect(c.top_logprobs[0]).toEqual({ token: c.token, logprob: c.logprob, bytes: c.bytes });
    }
    const streamed = await readSse(await chat({ messages, max_tokens: 4, logprobs: true, stream: true }));
    const entries = streamed.filter((e) => e !== "[DONE]").flatMap((e) => e.choices[0]?.logprobs?.content ?? []);
    expect(entries.map((e: any) => e.logprob)).toEqual(content.map((c: any) => c.logprob));
  });

  it("follows a json_schema (grammar): the answer parses and validates", async () => {
    const schema = {
      type: "object",
      properties: { color: { enum: ["red", "green", "blue"] }, ok: { type: "boolean" }, count: { type: "integer" } },
      required: ["color", "ok", "count"],
      additionalProperties: false,
    };
    const body = await json(await chat({ messages: user("Pick a color"), max_tokens: 64, response_format: { type: "json_schema", json_schema: { name: "pick", schema, strict: true } } }));
    expect(body.choices[0].finish_reason).toBe("stop");
    const value = JSON.parse(body.choices[0].message.content);
    expect(Object.keys(value).sort()).toEqual(["color", "count", "ok"]);
    expect(["red", "green", "blue"]).toContain(value.color);
    expect(typeof value.ok).toBe("boolean");
    expect(Number.isInteger(value.count)).toBe(true);
    const obj = await json(await chat({ messages: user("Give me json"), max_tokens: 48, response_format: { type: "json_object" } }));
    expect(obj.choices[0].finish_reason).toBe("stop");
    expect(typeof JSON.parse(obj.choices[0].message.content)).toBe("object");
  });

  const weather = { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] } }, required: ["city"] } } };
  const clock = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } };

  it("calls a named tool (grammar-forced), streamed or not", async () => {
    const body = await json(await chat({ messages: user("Weather in Paris?"), max_tokens: 64, tools: [weather, clock], tool_choice: { type: "function", function: { name: "get_weather" } } }));
    const choice = body.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toHaveLength(1);
    const call = choice.message.tool_calls[0];
    expect(call).toMatchObject({ type: "function", function: { name: "get_weather" } });
    expect(["Paris", "Oslo"]).toContain(JSON.parse(call.function.arguments).city);
    const events = await readSse(await chat({ messages: user("Weather in Paris?"), max_tokens: 64, tools: [weather, clock], tool_choice: { type: "function", function: { name: "get_weather" } }, stream: true }));
    const deltas = events.filter((e) => e !== "[DONE]").flatMap((e) => e.choices[0]?.delta?.tool_calls ?? []);
    expect(deltas).toHaveLength(1);
    expect(deltas[0]).toMatchObject({ index: 0, type: "function", function: { name: "get_weather", arguments: call.function.arguments } });
    expect(chatStreamText(events)).toEqual({ text: "", finish: "tool_calls" });
    // "required" with one tool: that one, whatever the model would rather say.
    const required = await json(await chat({ messages: user("Hi!"), max_tokens: 64, tools: [weather], tool_choice: "required" }));
    expect(required.choices[0]).toMatchObject({ finish_reason: "tool_calls", message: { tool_calls: [{ function: { name: "get_weather" } }] } });
  });

  it("renders tool results back into the prompt", async () => {
    const history = [
      ...user("Weather in Paris?"),
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" },
    ];
    const r = await chat({ messages: history, max_tokens: 2, tools: [weather] });
    expect(r.status).toBe(200);
    const rendered = runtime.applyChatTemplate(
      [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: "", tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }] },
        { role: "tool", content: "sunny, 21 C", tool_call_id: "call_1" },
      ],
      { tools: [weather] },
    );
    expect(rendered.text).toContain('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>');
    expect(rendered.text).toContain("<tool_response>\nsunny, 21 C\n</tool_response>");
    expect((await json(r)).usage.prompt_tokens).toBe(rendered.tokens.length);
  });

  it.each([
    [{ messages: "hi" }, 400, "messages", "messages must be an array, got string \"hi\""],
    [{}, 400, "messages", "messages is required"],
    [{ messages: [] }, 400, "messages", "messages must hold at least one message"],
    [{ messages: [{ role: "robot", content: "x" }] }, 400, "messages[0].role", 'messages[0].role must be one of "system", "developer", "user", "assistant", "tool", "function", got string "robot"'],
    [{ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, 400, "messages[0].content[0].type", "this server reads only text parts"],
    [{ messages: user("x"), temperature: 3 }, 400, "temperature", "temperature must be a number >= 0 and <= 2, got number 3"],
    [{ messages: user("x"), max_tokens: 0 }, 400, "max_tokens", "max_tokens must be an integer >= 1, got number 0"],
    [{ messages: user("x"), n: 2 }, 400, "n", "n must be 1"],
    [{ messages: user("x"), top_logprobs: 2 }, 400, "top_logprobs", "top_logprobs needs logprobs: true"],
    [{ messages: user("x"), stream_options: { include_usage: true } }, 400, "stream_options", "stream_options is only allowed when stream is true"],
    [{ messages: user("x"), max_tokens: 300 }, 400, "messages", /However, you requested 309 tokens \(9 in the messages, 300 in the completion\)/],
    [{ messages: user("word ".repeat(300)) }, 400, "messages", /However, your messages resulted in \d+ tokens, which leaves no room/],
    [{ messages: user("x"), model: "gpt-4o" }, 404, "model", "The model `gpt-4o` does not exist"],
    [{ messages: user("x"), response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "string", pattern: "^a" } } } }, 400, "response_format.json_schema.schema.pattern", 'the JSON Schema keyword "pattern" cannot be enforced'],
    [{ messages: user("x"), response_format: { type: "xml" } }, 400, "response_format.type", 'response_format.type must be one of "text", "json_object", "json_schema"'],
    [{ messages: user("x"), tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } }, 400, "tool_choice", 'tool_choice names "nope", which is not in tools (get_weather)'],
    [{ messages: user("x"), tools: [{ type: "function", function: { name: "bad name" } }] }, 400, "tools[0].function.name", "must be 1-64 letters"],
  ])("refuses %j with %i", async (body, status, param, message) => {
    const r = await request(app, "/v1/chat/completions", { body });
    expect(r.status).toBe(status);
    const { error } = await json(r);
    expect(error.param).toBe(param);
    expect(error.type).toBe("invalid_request_error");
    if (typeof message === "string") expect(error.message).toContain(message);
    else expect(error.message).toMatch(message);
  });
});

describe("text completions", () => {
  const prompt = "Once upon a time";

  it("continues prompts like Runtime.generate: a string, an array (one choice each), token ids", async () => {
    const one = await runtime.generate(prompt, { temperature: 0, maxTokens: 5 });
    const two = await runtime.generate("The sea", { temperature: 0, maxTokens: 5 });
    const body = await json(await request(app, "/v1/completions", { body: { prompt: [prompt, "The sea"], max_tokens: 5, temperature: 0 } }));
    expect(body).toMatchObject({
      object: "text_completion",
      choices: [
        { index: 0, text: one.text, finish_reason: "length", logprobs: null },
        { index: 1, text: two.text, finish_reason: "length" },
      ],
      usage: { prompt_tokens: one.promptTokens + two.promptTokens, completion_tokens: 10 },
    });
    const ids = await json(await request(app, "/v1/completions", { body: { prompt: runtime.tokenize(prompt), max_tokens: 5, temperature: 0, echo: true } }));
    expect(ids.choices[0].text).toBe(prompt + one.text);
    // OpenAI's default max_tokens for this endpoint is 16.
    expect((await json(await request(app, "/v1/completions", { body: { prompt, temperature: 0 } }))).usage.completion_tokens).toBe(16);
  });

  it("streams, with legacy logprobs", async () => {
    const whole = await json(await request(app, "/v1/completions", { body: { prompt, max_tokens: 5, temperature: 0, logprobs: 2 } }));
    const lp = whole.choices[0].logprobs;
    expect(lp.tokens.join("")).toBe(whole.choices[0].text);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.text_offset[0]).toBe(0);
    expect(lp.top_logprobs.every((t: Record<string, number>) => Object.keys(t).length === 2)).toBe(true);
    const events = await readSse(await request(app, "/v1/completions", { body: { prompt, max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } } }));
    expect(chatStreamText(events)).toEqual({ text: whole.choices[0].text, finish: "length" });
    expect(events.at(-2)).toMatchObject({ choices: [], usage: { completion_tokens: 5 } });
  });

  it.each([
    [{}, "prompt", "prompt is required"],
    [{ prompt: [] }, "prompt", "prompt must be a string, an array of strings, or token ids"],
    [{ prompt: [1, -2] }, "prompt", "prompt must hold token ids"],
    [{ prompt: [10_000_000] }, null, "the prompt must be a string or token ids from 0 to 151935"],
    [{ prompt: "x", suffix: "y" }, "suffix", "suffix (insertion) is not supported"],
    [{ prompt: "x", max_tokens: 256 }, "prompt", "However, you requested 257 tokens (1 in the prompt, 256 in the completion)"],
  ])("refuses %j", async (body, param, message) => {
    const r = await request(app, "/v1/completions", { body });
    expect(r.status).toBe(400);
    const { error } = await json(r);
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });
});

describe("embeddings", () => {
  it("gives unit vectors of the model's width, as floats or base64", async () => {
    const body = await json(await request(app, "/v1/embeddings", { body: { input: ["hello world", "hello world", "the sea"] } }));
    expect(body).toMatchObject({ object: "list", model: modelId, usage: { prompt_tokens: 2 + 2 + 2, total_tokens: 6 } });
    const [a, b, c] = body.data.map((d: any) => d.embedding as number[]);
    expect(body.data.map((d: any) => [d.object, d.index])).toEqual([["embedding", 0], ["embedding", 1], ["embedding", 2]]);
    expect(a).toHaveLength(runtime.info.embeddingSize);
    expect(Math.hypot(...a!)).toBeCloseTo(1, 6);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    const b64 = await json(await request(app, "/v1/embeddings", { body: { input: "hello world", encoding_format: "base64" } }));
    const buf = Buffer.from(b64.data[0].embedding, "base64");
    const floats = [...new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4)];
    expect(floats).toEqual(a!.map((x) => Math.fround(x)));
  });

  it.each([
    [{}, "input", "input is required"],
    [{ input: [] }, "input", "input must be a string or a non-empty array of strings"],
    [{ input: [1, 2] }, "input", "token ids are not supported"],
    [{ input: ["ok", ""] }, "input[1]", "input[1] is empty"],
    [{ input: "x", dimensions: 3 }, "dimensions", "this model's embeddings have 256 dimensions"],
    [{ input: "x", encoding_format: "int8" }, "encoding_format", 'encoding_format must be one of "float", "base64"'],
  ])("refuses %j", async (body, param, message) => {
    const r = await request(app, "/v1/embeddings", { body });
    expect(r.status).toBe(400);
    const { error } = await json(r);
    expect([error.param, error.message]).toEqual([param, expect.stringContaining(message)]);
  });
});

describe("keys, routes, limits, CORS, errors", () => {
  it("asks for the API key on /v1 and /metrics, not on /health", async () => {
    const secured = new ServerApp({ apiKey: "s3cret" });
    secured.attach(runtime);
    const none = await request(secured, "/v1/models");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await json(none)).toMatchObject({ error: { type: "authentication_error", code: "invalid_api_key" } });
    expect((await request(secured, "/v1/models", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await request(secured, "/v1/nope", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await request(secured, "/metrics")).status).toBe(401);
    expect((await request(secured, "/v1/models", { headers: { authorization: "Bearer s3cret" } })).status).toBe(200);
    expect((await request(secured, "/health")).status).toBe(200);
  });

  it("answers unknown routes 404, wrong methods 405, bad JSON 400, big bodies 413", async () => {
    const unknown = await request(app, "/v1/nope", { body: {} });
    expect(unknown.status).toBe(404);
    expect(await json(unknown)).toMatchObject({ error: { type: "not_found_error", code: "unknown_url", message: expect.stringContaining("Invalid URL (POST /v1/nope)") } });
    expect((await request(app, "/")).status).toBe(404);
    const wrong = await request(app, "/v1/chat/completions");
    expect([wrong.status, wrong.headers.get("allow")]).toEqual([405, "POST"]);
    const bad = await request(app, "/v1/chat/completions", { body: "{not json" });
    expect([bad.status, (await json(bad)).error.code]).toEqual([400, "invalid_json"]);
    expect((await json(await request(app, "/v1/chat/completions", { body: "[1]" }))).error.message).toBe("the request body must be a JSON object, got an array of 1");
    const small = new ServerApp({ maxBodyBytes: 1000 });
    small.attach(runtime);
    const big = { messages: user("x".repeat(2000)) };
    for (const headers of [{}, { "content-length": String(JSON.stringify(big).length) }]) {
      const r = await request(small, "/v1/chat/completions", { body: big, headers });
      expect(r.status).toBe(413);
      expect(await json(r)).toMatchObject({ error: { code: "request_too_large", message: expect.stringContaining("over the server's limit of 1000") } });
    }
  });

  it("sends CORS headers only when enabled", async () => {
    expect((await request(app, "/v1/models", { headers: { origin: "http://a.example" } })).headers.get("access-control-allow-origin")).toBeNull();
    const open = new ServerApp({ corsOrigin: "*" });
    open.attach(runtime);
    const pre = await request(open, "/v1/chat/completions", { method: "OPTIONS", headers: { origin: "http://a.example", "access-control-request-method": "POST" } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toContain("authorization");
    expect((await request(open, "/v1/models", { headers: { origin: "http://a.example" } })).headers.get("access-control-allow-origin")).toBe("*");
  });

  it("answers 503 with Retry-After when every slot is taken and the queue is full", async () => {
    const tight = new ServerApp({ maxQueue: 1 });
    tight.attach(runtime);
    // Streams that are not read hold their place without generating.
    const held = await Promise.all(Array.from({ length: PARALLEL + 1 }, () => chat({ messages: user("hold"), max_tokens: 4, stream: true }, tight)));
    const refused = await chat({ messages: user("one more"), max_tokens: 4 }, tight);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await json(refused)).toMatchObject({ error: { type: "server_error", code: "server_busy" } });
    await Promise.all(held.map((r) => r.body!.cancel()));
    expect(tight.inFlight).toBe(0);
    expect((await chat({ messages: user("now"), max_tokens: 2 }, tight)).status).toBe(200);
    expect(tight.metrics.render(runtime.occupancy)).toContain("llamapajamas_requests_rejected_total 1");
  });

  it("answers 500 without internals, logging the stack", async () => {
    const broken = new ServerApp({ onLog: (level, m) => logged.push(`${level}: ${m}`) });
    broken.attach(
      new Proxy(runtime, {
        get: (target, key) => (key === "applyChatTemplate" ? () => { throw new TypeError("boom in /secret/dir/file.js"); } : Reflect.get(target, key, target)),
      }),
    );
    const r = await chat({ messages: user("x") }, broken);
    expect(r.status).toBe(500);
    const text = await r.text();
    expect(text).not.toContain("secret");
    expect(JSON.parse(text)).toEqual({ error: { message: expect.stringContaining("The server had an error"), type: "server_error", param: null, code: null } });
    expect(logged.some((l) => l.startsWith("error: POST /v1/chat/completions: TypeError: boom in /secret/dir/file.js"))).toBe(true);
  });

  it("exposes Prometheus metrics", async () => {
    const text = await (await request(app, "/metrics")).text();
    expect(text).toMatch(/^llamapajamas_requests_total\{route="\/v1\/chat\/completions",status="200"\} \d+$/m);
    expect(text).toMatch(/^llamapajamas_completion_tokens_total [1-9]\d*$/m);
    expect(text).toMatch(/^llamapajamas_requests_waiting 0$/m);
    expect(text).toMatch(/^llamapajamas_slots 4$/m);
    expect(text).toMatch(/^llamapajamas_time_to_first_token_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^llamapajamas_request_duration_seconds_bucket\{route="\/v1\/embeddings",le="\+Inf"\} \d+$/m);
    expect(text).toMatch(/^# TYPE llamapajamas_completion_tokens_per_second gauge$/m);
  });
});

describe("concurrency", () => {
  const topics = ["the sea", "a city", "the sky", "a forest", "a robot", "the moon", "a river", "a cat"];

  // llama.cpp's CPU matmul picks its kernel by batch size (llamafile_sgemm needs n >= 2, so a
  // lone decode token goes through ggml_vec_dot and a batched one through tinyBLAS), so batched
  // logits differ from one-at-a-time logits in the last bits, and a near tie can flip. Each
  // output must therefore equal its one-at-a-time run, or leave it only where that run's two
  // likeliest tokens were within TIE_LOGPROB of each other, taking the runner-up: noise, never
  // another request's text.
  const TIE_LOGPROB = 0.05;

  it("runs 8 streaming requests at once (4 slots, 4 queued); greedy outputs equal one-at-a-time runs", async () => {
    const tokensOf = (choice: any) => (choice.logprobs?.content ?? []).map((c: any) => c.token as string);
    const ask = (t: string, extra: Record<string, unknown> = {}) => chat({ messages: user(`Tell me about ${t}`), max_tokens: 12, logprobs: true, ...extra });
    const alone: string[][] = [];
    for (const t of topics) alone.push(tokensOf((await json(await ask(t))).choices[0]));
    let maxRunning = 0;
    let maxWaiting = 0;
    const together = await Promise.all(
      topics.map(async (t) => {
        const events: any[] = [];
        for await (const e of sseData(await ask(t, { stream: true }))) {
          events.push(e);
          maxRunning = Math.max(maxRunning, runtime.occupancy.running);
          maxWaiting = Math.max(maxWaiting, runtime.occupancy.waiting);
        }
        const tokens = events.filter((e) => e !== "[DONE]").flatMap((e) => (e.choices[0] ? tokensOf(e.choices[0]) : []));
        return { ...chatStreamText(events), tokens };
      }),
    );
    let exact = 0;
    for (const [i, got] of together.entries()) {
      expect(got.tokens.join("")).toBe(got.text);
      if (got.tokens.join("\u0000") === alone[i]!.join("\u0000")) {
        exact++;
        continue;
      }
      // Where they part, the one-at-a-time run must have been at a near tie.
      const at = got.tokens.findIndex((tok, k) => tok !== alone[i]![k]);
      const ref = await json(await ask(topics[i]!, { top_logprobs: 2 }));
      const [first, second] = ref.choices[0].logprobs.content[at].top_logprobs;
      const context = `request ${i}: ${JSON.stringify(got.text)} vs one at a time ${JSON.stringify(ref.choices[0].message.content)}, first difference at token ${at}`;
      expect(first.logprob - second.logprob, context).toBeLessThan(TIE_LOGPROB);
      expect(got.tokens[at], context).toBe(second.token);
    }
    expect(exact).toBeGreaterThanOrEqual(topics.length / 2);
    expect(together.every((t) => t.finish === "length")).toBe(true);
    expect(maxRunning).toBe(PARALLEL);
    expect(maxWaiting).toBeGreaterThan(0);
    await eventually(() => runtime.occupancy.running === 0, "every slot to be free");
  });

  it("frees a disconnected client's slot at once for the next request", async () => {
    const disconnectsBefore = /llamapajamas_client_disconnects_total (\d+)/.exec(app.metrics.render(runtime.occupancy))![1];
    // Fill every slot with a long generation and pause each after its first piece of text.
    const streams = await Promise.all(topics.slice(0, PARALLEL).map((t) => chat({ messages: user(`Tell me about ${t}`), max_tokens: 200, stream: true })));
    const readers = streams.map((r) => sseData(r));
    for (const it of readers) {
      for (;;) {
        const e = (await it.next()).value;
        if (e?.choices?.[0]?.delta?.content) break;
      }
    }
    expect(runtime.occupancy).toMatchObject({ running: PARALLEL, waiting: 0 });
    // One client goes away: its generation stops and the slot serves a new request.
    await readers[0]!.return();
    await streams[0]!.body!.cancel();
    const next = await json(await chat({ messages: user("Hello"), max_tokens: 3 }));
    expect(next.usage.completion_tokens).toBe(3);
    expect(runtime.occupancy.running).toBe(PARALLEL - 1);
    expect(app.metrics.render(runtime.occupancy)).toContain(`llamapajamas_client_disconnects_total ${Number(disconnectsBefore) + 1}`);
    for (const [i, it] of readers.entries()) {
      if (i === 0) continue;
      await it.return();
      await streams[i]!.body!.cancel();
    }
    await eventually(() => runtime.occupancy.running === 0 && app.inFlight === 0, "the paused streams to end");
  });

  it("stops a non-streaming generation whose client goes away", async () => {
    const controller = new AbortController();
    const pending = request(app, "/v1/completions", { body: { prompt: "Once", max_tokens: 200, temperature: 0 }, signal: controller.signal });
    await eventually(() => runtime.occupancy.running === 1, "the generation to start");
    controller.abort();
    const r = await pending;
    expect(r.status).toBe(503);
    expect(runtime.occupancy.running).toBe(0);
  });

  it("drains on shutdown: new requests get 503, in-flight streams are cancelled with an error event", async () => {
    const closing = new ServerApp();
    closing.attach(runtime);
    const r = await chat({ messages: user("Tell me a long story"), max_tokens: 200, stream: true }, closing);
    const it = sseData(r);
    await it.next();
    closing.drain();
    const refused = await chat({ messages: user("x") }, closing);
    expect([refused.status, (await json(refused)).error.message]).toEqual([503, "the server is shutting down"]);
    closing.abortAll();
    const rest: any[] = [];
    for await (const e of { [Symbol.asyncIterator]: () => it }) rest.push(e);
    expect(rest.at(-1)).toEqual({ error: { message: "the server is shutting down; the generation was cancelled", type: "unavailable_error", param: null, code: "unavailable" } });
    await closing.idle();
    expect(runtime.occupancy.running).toBe(0);
  });
});
