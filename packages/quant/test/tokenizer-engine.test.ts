// Engine test: llama.cpp (through node-llama-cpp) tokenizes eval.txt with our tokenizer KVs, and
// the count must be within 0.05% of the Hugging Face tokenizer's. The GGUF is vocab-only: the
// reference converter's non-tokenizer KVs (hyperparameters) plus our tokenizer.* KVs, no
// tensors; llama.cpp loads it with vocab_only, which reads exactly these keys. A full
// convert() output tokenizes the same (same KVs), without needing the weights here.
// node-llama-cpp first simulates a full load to estimate memory; on a file without tensors that
// logs "missing tensor 'token_embd.weight'" and falls back to its heuristic. That noise is harmless.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { GGUFValueType, type GGUFKV } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { buildTokenizerKV } from "@llama-pajamas/gguf/tokenizer/index.js";
import { EVAL_TEXT, FIXTURES, MODELS, REFERENCE, withTempDir } from "./helpers.js";

const TOLERANCE = 0.0005; // 0.05%

interface RefKV {
  type: number;
  value?: unknown;
  itemType?: number;
}

async function vocabOnlyGGUF(model: string, path: string): Promise<void> {
  const dir = join(FIXTURES, model);
  const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  const summary = JSON.parse(await readFile(join(REFERENCE, `${model}-f16.json`), "utf8")) as { kv: Record<string, RefKV> };
  const kvs: GGUFKV[] = [];
  for (const [key, r] of Object.entries(summary.kv)) {
    if (key.startsWith("tokenizer.") || r.value === undefined) continue;
    kvs.push(
      r.type === GGUFValueType.ARRAY
        ? ({ key, type: r.type, itemType: r.itemType, value: r.value } as GGUFKV)
        : ({ key, type: r.type, value: r.value } as GGUFKV),
    );
  }
  const ggufArch = String(summary.kv["general.architecture"]?.value);
  kvs.push(...(await buildTokenizerKV({ dir, config, ggufArch, modelType: String(config["model_type"]) })));
  const writer = new GGUFWriter();
  for (const kv of kvs) writer.addKV(kv);
  await writer.open(path);
  await writer.writeHeader();
  await writer.finish();
}

describe("llama.cpp tokenizes eval.txt like Hugging Face with our tokenizer KVs", () => {
  let llama: Llama;
  let text: string;
  let hfCounts: Record<string, { withSpecial: number; noSpecial: number }>;

  beforeAll(async () => {
    llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    text = await readFile(EVAL_TEXT, "utf8");
    hfCounts = JSON.parse(await readFile(join(REFERENCE, "hf-token-counts.json"), "utf8")) as typeof hfCounts;
  });
  afterAll(async () => {
    await llama?.dispose();
  });

  for (const model of MODELS) {
    it(`${model}: token count within 0.05% of Hugging Face`, async () => {
      await withTempDir(async (tmp) => {
        const path = join(tmp, `${model}-vocab.gguf`);
        await vocabOnlyGGUF(model, path);
        const m = await llama.loadModel({ modelPath: path, vocabOnly: true });
        try {
          // model.tokenize adds no BOS: compare with the count without special tokens.
          const ours = m.tokenize(text).length;
          const hf = hfCounts[model]!.noSpecial;
          const relative = Math.abs(ours - hf) / hf;
          expect(relative, `llama.cpp ${ours} tokens vs Hugging Face ${hf}`).toBeLessThanOrEqual(TOLERANCE);
        } finally {
          await m.dispose();
        }
      });
    });
  }

  it("llama-tiny: llama.cpp's token ids equal the Hugging Face tokenizer's on all of eval.txt", async () => {
    // @huggingface/tokenizers reproduces the Python tokenizer's count exactly on these fixtures.
    const dir = join(FIXTURES, "llama-tiny");
    const hfTok = new Tokenizer(
      JSON.parse(await readFile(join(dir, "tokenizer.json"), "utf8")) as object,
      JSON.parse(await readFile(join(dir, "tokenizer_config.json"), "utf8")) as object,
    );
    const expected = hfTok.encode(text, { add_special_tokens: false }).ids;
    expect(expected.length).toBe(hfCounts["llama-tiny"]!.noSpecial);
    await withTempDir(async (tmp) => {
      const path = join(tmp, "llama-vocab.gguf");
      await vocabOnlyGGUF("llama-tiny", path);
      const m = await llama.loadModel({ modelPath: path, vocabOnly: true });
      try {
        const ours = Array.from(m.tokenize(text), Number);
        const firstDiff = ours.findIndex((id, i) => id !== expected[i]);
        expect(firstDiff, `first differing token index`).toBe(-1);
        expect(ours.length).toBe(expected.length);
      } finally {
        await m.dispose();
      }
    });
  });
});
