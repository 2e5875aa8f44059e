// CPU threads by default (no --threads), against the real engine: the cpu backend
// (llama-direct.ts) runs prompt batches and generation steps on every math core, on a
// persistent ggml threadpool. The other engine tests pass --threads 1; these load with the
// runtime's defaults, so on a machine of 2+ cores they cover the threadpool path.
import { getLlama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nativeContext, timeOneTokenDecodes } from "../src/backends/llama-cpp-threads.js";
import { Runtime } from "../src/runtime.js";
import { convertFixture, makeTempDir, removeTempDir } from "./helpers.js";
import { LLAMA_GREEDY } from "./reference/greedy.js";

let tmp: string;
let gguf: string;
let runtime: Runtime;

beforeAll(async () => {
  tmp = await makeTempDir();
  gguf = (await convertFixture("llama-tiny", tmp)).gguf;
  runtime = await Runtime.load({ modelPath: gguf, backend: "cpu", ctxSize: 256, flashAttention: false });
});
afterAll(async () => {
  await runtime?.unload();
  await removeTempDir(tmp);
});

describe("default threads", () => {
  it("prompt batches and generation steps on every math core", async () => {
    const { threads, generationThreads } = runtime.info;
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
    expect(threads).toBe(Math.max(1, llama.cpuMathCores));
    expect(generationThreads).toBe(threads);
  });

  it("generates llama.cpp's greedy tokens, also after a benchmark used the context", async () => {
    const first = await runtime.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 16 });
    expect(first.tokens).toEqual(LLAMA_GREEDY.tokens.slice(0, 16));
    const b = await runtime.benchmark({ promptTokens: 32, genTokens: 8, repeats: 1 });
    expect(b).toMatchObject({ threads: runtime.info.threads, generationThreads: runtime.info.generationThreads });
    expect(b.tg?.tokensPerSecond).toBeGreaterThan(0);
    const again = await runtime.generate(LLAMA_GREEDY.prompt, { temperature: 0, maxTokens: 16 });
    expect(again.tokens).toEqual(first.tokens);
  });
});

describe("node-llama-cpp's native context (the GPU backends' benchmark decodes)", () => {
  it("one-token decodes leave the sequence empty", async () => {
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: 0 });
    const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
    try {
      const context = await model.createContext({ contextSize: 64, sequences: 1, threads: 1 });
      const native = nativeContext(context);
      const seq = context.getSequence();
      expect(await timeOneTokenDecodes(native, { sequence: 0, count: 4, nextToken: (i) => LLAMA_GREEDY.tokens[i]! })).toBeGreaterThan(0);
      // evaluating from position 0 works afterwards, and gives llama.cpp's greedy continuation
      const out: number[] = [];
      for await (const t of seq.evaluate(LLAMA_GREEDY.promptTokens as Token[], { temperature: 0 })) {
        out.push(t);
        if (out.length === 4) break;
      }
      expect(out).toEqual(LLAMA_GREEDY.tokens.slice(0, 4));
    } finally {
      await model.dispose();
    }
  });
});
