// CPU threads by default (no --threads): prompt batches on every math core, generation steps on
// the count llama-cpp-threads.ts picks, against the real engine. The other engine tests pass
// --threads 1; these load with the runtime's defaults.
import { getLlama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nativeContext, splitThreads, timeOneTokenDecodes } from "../src/backends/llama-cpp-threads.js";
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
  it("prompt batches on every math core; one thread for a tiny model's generation on a few cores", async () => {
    const { threads, generationThreads } = runtime.info;
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
    expect(threads).toBe(Math.max(1, llama.cpuMathCores));
    expect([1, threads]).toContain(generationThreads);
    // A one-token decode of llama-tiny takes well under a millisecond on one thread.
    if (threads <= 4) expect(generationThreads).toBe(1);
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

describe("splitThreads on a node-llama-cpp context", () => {
  it("decodes one token per sequence with the generation count and larger batches with the batch count", async () => {
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: 0 });
    const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
    try {
      const context = await model.createContext({ contextSize: 64, sequences: 1, threads: 3 });
      const native = nativeContext(context);
      splitThreads(native, { generationThreads: 1, batchThreads: 3, generationBatchTokens: 1 });
      const seq = context.getSequence();
      await seq.evaluateWithoutGeneratingNewTokens(LLAMA_GREEDY.promptTokens as Token[]);
      expect(native.getThreads()).toBe(3);
      await seq.evaluateWithoutGeneratingNewTokens([LLAMA_GREEDY.tokens[0]!] as Token[]);
      expect(native.getThreads()).toBe(1);
      await seq.clearHistory();
      // The benchmark's raw decodes leave the sequence empty: evaluating from position 0 works.
      expect(await timeOneTokenDecodes(native, { sequence: 0, count: 4, nextToken: (i) => LLAMA_GREEDY.tokens[i]! })).toBeGreaterThan(0);
      expect(native.getThreads()).toBe(1);
      await seq.evaluateWithoutGeneratingNewTokens(LLAMA_GREEDY.promptTokens as Token[]);
      expect(seq.nextTokenIndex).toBe(LLAMA_GREEDY.promptTokens.length);
    } finally {
      await model.dispose();
    }
  });
});
