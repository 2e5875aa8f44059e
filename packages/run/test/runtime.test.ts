// The runtime against the real engine: fixtures converted by the pipeline, loaded once each.
// Greedy tokens are compared with llama.cpp's own on the same GGUF and prompt; the chat
// template with Hugging Face's Jinja on the checkpoint's tokenizer_config.json.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContextOverflowError, ModelStateError } from "../src/errors.js";
import { Runtime } from "../src/runtime.js";
import { convertFixture, FIXTURES, makeTempDir, removeTempDir, THREADS } from "./helpers.js";
import { LLAMA_GREEDY, QWEN_GREEDY } from "./reference/greedy.js";

const CTX = 256;
let tmp: string;
let qwen: Runtime;
let llama: Runtime;
let llamaArtifact: string;
const ggufSha256: Record<string, string> = {};

beforeAll(async () => {
  tmp = await makeTempDir();
  const q = await convertFixture("qwen3-tiny", tmp);
  const l = await convertFixture("llama-tiny", tmp);
  llamaArtifact = l.dir;
  for (const [name, file] of [["qwen3-tiny", q.gguf], ["llama-tiny", l.gguf]] as const) {
    ggufSha256[name] = createHash("sha256").update(await readFile(file)).digest("hex");
  }
  // qwen3 from its .gguf file, llama from its artifact directory (manifest.json). Flash
  // attention off, as in the llama.cpp reference (see reference/greedy.ts for why).
  const common = { threads: THREADS, ctxSize: CTX, flashAttention: false } as const;
  qwen = await Runtime.load({ modelPath: q.gguf, backend: "cpu", ...common });
  llama = await Runtime.load({ modelPath: l.dir, ...common });
});
afterAll(async () => {
  await qwen?.unload();
  await llama?.unload();
  await removeTempDir(tmp);
});

describe("loading", () => {
  it("loads an artifact directory's GGUF on cpu (auto)", () => {
    expect(llama.backend).toBe("cpu");
    expect(llama.source.kind).toBe("artifact");
    expect(llama.modelFile).toBe(join(llamaArtifact, "gguf", "llama-tiny-q8_0.gguf"));
    expect(llama.method).toBe("Q8_0");
    expect(llama.info).toMatchObject({ architecture: "llama", contextSize: CTX, threads: THREADS, addBos: true });
    expect(qwen.info).toMatchObject({ architecture: "qwen3", embeddingSize: 256, addBos: false });
  });
});

describe("greedy generation matches llama.cpp", () => {
  for (const [name, ref] of [["qwen3-tiny", QWEN_GREEDY], ["llama-tiny", LLAMA_GREEDY]] as const) {
    it(`${name} Q8_0: ${JSON.stringify(ref.prompt)}`, async () => {
      const rt = name === "qwen3-tiny" ? qwen : llama;
      expect(rt.tokenize(ref.prompt)).toEqual(ref.promptTokens);
      const r = await rt.generate(ref.prompt, { temperature: 0, maxTokens: ref.tokens.length });
      const hint =
        ggufSha256[name] === ref.ggufSha256
          ? "same GGUF as the reference"
          : `the pipeline's Q8_0 GGUF changed (sha256 ${ggufSha256[name]}, reference made from ${ref.ggufSha256}): remake the reference as reference/greedy.ts says`;
      expect(r.tokens, hint).toEqual(ref.tokens);
      expect(r.text).toBe(ref.text);
      expect(r).toMatchObject({ promptTokens: ref.promptTokens.length, completionTokens: ref.tokens.length, finishReason: "length" });
      expect(r.tokensPerSecond).toBeGreaterThan(0);
    });
  }
});

describe("generate", () => {
  it("streams pieces that add up to the result, with the same tokens", async () => {
    const stream = llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 12, stream: true });
    const pieces: string[] = [];
    for await (const p of stream) pieces.push(p);
    const r = await stream.result;
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(r.text);
    expect(r.tokens).toEqual(LLAMA_GREEDY.tokens.slice(0, 12));
  });

  it("samples through llama.cpp's sampler chain: a seed repeats its tokens, another seed draws others", async () => {
    const opts = { temperature: 1.5, topK: 0, topP: 1, minP: 0, maxTokens: 24 } as const;
    const a = await qwen.generate(QWEN_GREEDY.prompt, { ...opts, seed: 7 });
    const b = await qwen.generate(QWEN_GREEDY.prompt, { ...opts, seed: 7 });
    const c = await qwen.generate(QWEN_GREEDY.prompt, { ...opts, seed: 8 });
    expect(a.tokens).toHaveLength(24);
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    // temperature 0 is greedy whatever the seed
    expect((await qwen.generate(QWEN_GREEDY.prompt, { temperature: 0, seed: 7, maxTokens: 8 })).tokens).toEqual(QWEN_GREEDY.tokens.slice(0, 8));
  });

  it("a generation stopped early leaves the cache as it was evaluated: the next one still gives llama.cpp's tokens", async () => {
    for (const n of [1, 2, 5]) expect((await llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: n })).tokens).toEqual(LLAMA_GREEDY.tokens.slice(0, n));
    expect((await llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 16 })).tokens).toEqual(LLAMA_GREEDY.tokens.slice(0, 16));
  });

  it("cuts the text at a stop string, streamed or not", async () => {
    const cut = LLAMA_GREEDY.text.indexOf(LLAMA_GREEDY.stop);
    expect(cut).toBeGreaterThan(0);
    const r = await llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 32, stop: [LLAMA_GREEDY.stop, "never appears"] });
    expect(r.text).toBe(LLAMA_GREEDY.text.slice(0, cut));
    expect(r.finishReason).toBe("stop");
    const stream = llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 32, stop: [LLAMA_GREEDY.stop], stream: true });
    let streamed = "";
    for await (const p of stream) streamed += p;
    expect(streamed).toBe(r.text);
  });

  it("stops on an AbortSignal with the text so far", async () => {
    const controller = new AbortController();
    const stream = llama.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 64, stream: true, signal: controller.signal });
    for await (const _ of stream) controller.abort();
    const r = await stream.result;
    expect(r.finishReason).toBe("abort");
    expect(r.completionTokens).toBeLessThan(64);
    expect(LLAMA_GREEDY.text.startsWith(r.text)).toBe(true);
  });

  it("refuses a prompt longer than the context, saying both lengths", async () => {
    const long = "word ".repeat(400);
    const err = await llama.generate(long, { maxTokens: 4 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextOverflowError);
    expect((err as Error).message).toMatch(/^the prompt is \d{3} tokens, but the context holds 256 \(--ctx-size\), which leaves room for prompts of up to 255/);
  });

  it("ends with finishReason length when the context fills up", async () => {
    const prompt = "word ".repeat(250);
    const n = llama.tokenize(prompt).length;
    expect(n).toBeLessThan(CTX);
    const r = await llama.generate(prompt, { temperature: 0, maxTokens: 100 });
    expect(r.finishReason).toBe("length");
    expect(r.completionTokens).toBe(CTX - n);
  });
});

describe("chat", () => {
  const tokenizerConfig = async () => JSON.parse(await readFile(join(FIXTURES, "qwen3-tiny", "tokenizer_config.json"), "utf8"));
  const conversations: [string, { role: string; content: string }[], Record<string, unknown>?][] = [
    ["one user turn", [{ role: "user", content: "Hi there" }]],
    ["system and user", [{ role: "system", content: "You are terse." }, { role: "user", content: "What is 2+2?" }]],
    [
      "earlier turns with reasoning",
      [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "<think>\nThey greet me.\n</think>\n\nHello!" },
        { role: "user", content: "Bye <b>now</b>" },
      ],
    ],
    ["enable_thinking=false", [{ role: "user", content: "Quick one" }], { enable_thinking: false }],
  ];

  for (const [label, messages, kwargs] of conversations) {
    it(`renders the Qwen3 template as Hugging Face's Jinja does: ${label}`, async () => {
      const cfg = await tokenizerConfig();
      // What transformers' apply_chat_template passes: the special tokens, messages, the flag, kwargs.
      const expected = new Template(cfg.chat_template).render({
        bos_token: cfg.bos_token ?? "",
        eos_token: cfg.eos_token,
        pad_token: cfg.pad_token,
        ...kwargs,
        messages,
        add_generation_prompt: true,
      });
      const rendered = qwen.applyChatTemplate(messages, kwargs);
      expect(rendered.text).toBe(expected);
      // Control-token text becomes the control tokens (<|im_start|> = 151644), and nothing else is added.
      const imStart = rendered.tokens.filter((t) => t === 151644).length;
      expect(imStart).toBe(expected.split("<|im_start|>").length - 1);
      expect(rendered.tokens).toEqual(qwen.tokenize(expected));
    });
  }

  it("feeds the model exactly the rendered tokens and reuses the cache on the next turn", async () => {
    const first = [{ role: "user", content: "Hi there" }];
    const r1 = await qwen.chat(first, { temperature: 0, maxTokens: 8 });
    expect(r1.promptTokens).toBe(qwen.applyChatTemplate(first).tokens.length);
    const second = [...first, { role: "assistant", content: r1.text }, { role: "user", content: "And then?" }];
    const r2 = await qwen.chat(second, { temperature: 0, maxTokens: 8 });
    const rendered = qwen.applyChatTemplate(second);
    expect(r2.promptTokens).toBe(rendered.tokens.length);
    // The same tokens as a fresh raw evaluation of the rendered prompt (no BOS for Qwen3).
    const fresh = await qwen.generate(rendered.text, { temperature: 0, maxTokens: 8 });
    expect(r2.tokens).toEqual(fresh.tokens);
  });

  it("refuses chat on a model without a chat template", async () => {
    const err = await llama.chat([{ role: "user", content: "hi" }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelStateError);
    expect((err as ModelStateError).code).toBe("E_NO_CHAT_TEMPLATE");
  });
});

describe("embed", () => {
  it("gives deterministic vectors of the model's width, equal for equal inputs", async () => {
    const [a, b, c] = await qwen.embed(["hello world", "hello world", "a different sentence"]);
    expect(a).toHaveLength(qwen.info.embeddingSize);
    expect(a!.every(Number.isFinite)).toBe(true);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    const [again] = await qwen.embed(["hello world"]);
    expect(again).toEqual(a);
  });
});
