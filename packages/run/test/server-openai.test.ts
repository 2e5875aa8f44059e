// The server on a real port (127.0.0.1 only): driven by the official `openai` npm client
// unmodified, and the `serve` command as a child process with a graceful SIGTERM.
import { spawn } from "node:child_process";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runtime } from "../src/runtime.js";
import { ServerApp } from "../src/server/app.js";
import { listen, type RunningServer } from "../src/server/http.js";
import { CLI, convertFixture, makeTempDir, removeTempDir, REPO_ROOT, THREADS } from "./helpers.js";
import { chatStreamText } from "./server-helpers.js";

const KEY = "test-key-123";
let tmp: string;
let gguf: string;
let runtime: Runtime;
let app: ServerApp;
let server: RunningServer;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  tmp = await makeTempDir();
  gguf = (await convertFixture("qwen3-tiny", tmp)).gguf;
  runtime = await Runtime.load({ modelPath: gguf, backend: "cpu", threads: THREADS, ctxSize: 256, parallel: 2 });
  app = new ServerApp({ apiKey: KEY });
  app.attach(runtime);
  model = app.id;
  server = await listen(app, { host: "127.0.0.1", port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
});
afterAll(async () => {
  await server?.close({ graceMs: 0 });
  await runtime?.unload();
  await removeTempDir(tmp);
});

const messages = [{ role: "user" as const, content: "Tell me a story" }];

describe("the official openai client", () => {
  it("lists and retrieves the model", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([model]);
    expect((await client.models.retrieve(model)).id).toBe(model);
  });

  it("chats, streamed and not, with the same greedy text and usage", async () => {
    const r = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage).toMatchObject({ completion_tokens: 8 });
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(r.choices[0]!.message.content);
    expect(usage).toMatchObject({ completion_tokens: 8, prompt_tokens: r.usage!.prompt_tokens });
  });

  it("completes text", async () => {
    const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    expect(r.choices[0]!.text).toBe((await runtime.generate("Once upon a time", { temperature: 0, maxTokens: 5 })).text);
  });

  it("embeds (the client asks for base64 and decodes it)", async () => {
    const r = await client.embeddings.create({ model, input: ["hello world", "the sea"] });
    expect(r.data).toHaveLength(2);
    expect(r.data[0]!.embedding).toHaveLength(runtime.info.embeddingSize);
    expect(Math.hypot(...r.data[0]!.embedding)).toBeCloseTo(1, 5);
    const [raw] = await runtime.embed(["hello world"]);
    const norm = Math.hypot(...raw!);
    expect(r.data[0]!.embedding.map((x) => x.toFixed(5))).toEqual(raw!.map((x) => Math.fround(x / norm).toFixed(5)));
  });

  it("returns JSON that follows a json_schema", async () => {
    const schema = {
      type: "object",
      properties: { answer: { enum: ["yes", "no"] }, confidence: { type: "integer" }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 2 } },
      required: ["answer", "confidence", "tags"],
      additionalProperties: false,
    };
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Is the sky blue?" }],
      max_tokens: 80,
      temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "answer", schema, strict: true } },
    });
    const value = JSON.parse(r.choices[0]!.message.content!);
    expect(Object.keys(value).sort()).toEqual(["answer", "confidence", "tags"]);
    expect(["yes", "no"]).toContain(value.answer);
    expect(Number.isInteger(value.confidence)).toBe(true);
    expect(value.tags.length).toBeLessThanOrEqual(2);
    expect(value.tags.every((t: string) => t === "a" || t === "b")).toBe(true);
  });

  it("calls a tool", async () => {
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "What's the weather in Oslo?" }],
      max_tokens: 64,
      temperature: 0,
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] } }, required: ["city"] } } }],
      tool_choice: "required",
    });
    const call = r.choices[0]!.message.tool_calls![0]!;
    expect(r.choices[0]!.finish_reason).toBe("tool_calls");
    expect(call.type).toBe("function");
    if (call.type !== "function") return;
    expect(call.function.name).toBe("get_weather");
    expect(["Paris", "Oslo"]).toContain(JSON.parse(call.function.arguments).city);
  });

  it("returns logprobs", async () => {
    const r = await client.chat.completions.create({ model, messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(3);
    expect(content.every((c) => c.logprob <= 0 && c.top_logprobs.length === 2)).toBe(true);
  });

  it("surfaces errors as the client's typed errors", async () => {
    const wrongKey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await expect(wrongKey.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.chat.completions.create({ model: "gpt-4o", messages })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const tooLong = await client.chat.completions.create({ model, messages, max_tokens: 1000 }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
    expect((tooLong as Error).message).toMatch(/in the messages, 1000 in the completion/);
  });

  it("stops the generation of a client that hangs up mid-stream", async () => {
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 200, temperature: 0, stream: true });
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks === 3) break; // leaving the loop aborts the HTTP request
    }
    const until = performance.now() + 10_000;
    while ((runtime.occupancy.running > 0 || app.inFlight > 0) && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(runtime.occupancy.running).toBe(0);
    expect(app.metrics.render(runtime.occupancy)).toMatch(/llamapajamas_client_disconnects_total [1-9]/);
    // The freed slots serve the next request.
    expect((await client.chat.completions.create({ model, messages, max_tokens: 2 })).usage!.completion_tokens).toBe(2);
  });
});

describe("llama-pajamas-run serve", () => {
  it("serves on a real port, needs the key from the environment, and finishes a stream on SIGTERM before exiting 0", async () => {
    const child = spawn(process.execPath, [CLI, "serve", "--model", gguf, "--port", "0", "--threads", String(THREADS), "--ctx-size", "128", "--parallel", "2"], {
      cwd: REPO_ROOT,
      env: { ...process.env, LLAMA_PAJAMAS_API_KEY: KEY },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line: ${stderr}`)), 30_000);
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    try {
      for (let i = 0; (await fetch(`${url}/health`)).status !== 200; i++) {
        if (i > 300) throw new Error(`not healthy: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
      const auth = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
      const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: auth, body: JSON.stringify({ messages, max_tokens: 40, temperature: 0, stream: true }) });
      expect(r.status).toBe(200);
      const reader = r.body!.getReader();
      await reader.read();
      child.kill("SIGTERM");
      let rest = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        rest += new TextDecoder().decode(value);
      }
      expect(rest.trimEnd().endsWith("data: [DONE]")).toBe(true);
      const events = rest
        .split("\n\n")
        .filter((e) => e.startsWith("data: {"))
        .map((e) => JSON.parse(e.slice(6)));
      expect(chatStreamText(events).finish).toBe("length");
      expect(await exited).toBe(0);
      expect(stderr).toContain("SIGTERM: shutting down");
    } finally {
      child.kill("SIGKILL");
    }
  });
});
