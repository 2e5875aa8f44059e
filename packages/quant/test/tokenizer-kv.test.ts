// tokenizer.* KVs of the three fixtures against llama.cpp's converter (reference summaries made
// by dump_gguf.py: type and sha256 of each value's serialized bytes). Llama-2-style fixtures
// differ only in tokenizer.ggml.scores, which we derive from the merges on purpose.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GGUFValueType, type GGUFKV } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { encodeKVValue } from "@llama-pajamas/gguf/formats/gguf-kv-encode.js";
import { buildTokenizerKV, mergeRankScores, TokenType } from "@llama-pajamas/gguf/tokenizer/index.js";
import { FIXTURES, REFERENCE } from "./helpers.js";

interface RefKV {
  type: number;
  sha256: string;
  value?: unknown;
  itemType?: number;
  length?: number;
}

async function referenceTokenizerKVs(model: string): Promise<[string, RefKV][]> {
  const summary = JSON.parse(await readFile(join(REFERENCE, `${model}-f16.json`), "utf8")) as { kv: Record<string, RefKV> };
  return Object.entries(summary.kv).filter(([k]) => k.startsWith("tokenizer."));
}

async function build(model: string): Promise<GGUFKV[]> {
  const dir = join(FIXTURES, model);
  const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  return buildTokenizerKV({ dir, config, ggufArch: model === "qwen3-tiny" ? "qwen3" : "llama", modelType: String(config["model_type"]) });
}

function sha256(kv: GGUFKV): string {
  return createHash("sha256").update(encodeKVValue(kv)).digest("hex");
}

function byKey(kvs: GGUFKV[], key: string): GGUFKV {
  const kv = kvs.find((e) => e.key === key);
  if (!kv) throw new Error(`missing ${key}`);
  return kv;
}

/** Compares every KV with the reference; returns the keys whose bytes differ. */
function compare(ours: GGUFKV[], ref: [string, RefKV][]): string[] {
  expect(ours.map((kv) => kv.key)).toEqual(ref.map(([k]) => k));
  const differing: string[] = [];
  for (const [key, r] of ref) {
    const kv = byKey(ours, key);
    expect(kv.type, key).toBe(r.type);
    if (kv.type === GGUFValueType.ARRAY) {
      expect(kv.itemType, key).toBe(r.itemType);
      expect(kv.value.length, key).toBe(r.length);
    }
    if (sha256(kv) !== r.sha256) differing.push(key);
  }
  return differing;
}

describe("tokenizer KVs match llama.cpp's converter", () => {
  it("qwen3-tiny (byte-level BPE): every tokenizer.* KV is byte-identical", async () => {
    const ours = await build("qwen3-tiny");
    const differing = compare(ours, await referenceTokenizerKVs("qwen3-tiny"));
    expect(differing).toEqual([]);
    expect(byKey(ours, "tokenizer.ggml.pre").value).toBe("qwen2");
    const tokens = byKey(ours, "tokenizer.ggml.tokens").value as string[];
    expect(tokens.length).toBe(151936);
    expect(tokens[151669]).toBe("[PAD151669]");
  });

  for (const model of ["llama-tiny", "mixtral-tiny"]) {
    it(`${model} (Llama-2 tokenizer.json only): all equal except the derived scores`, async () => {
      const ours = await build(model);
      const differing = compare(ours, await referenceTokenizerKVs(model));
      expect(differing).toEqual(["tokenizer.ggml.scores"]);

      const tokens = byKey(ours, "tokenizer.ggml.tokens").value as string[];
      const toktypes = byKey(ours, "tokenizer.ggml.token_type").value as Int32Array;
      const scores = byKey(ours, "tokenizer.ggml.scores").value as Float32Array;
      const tj = JSON.parse(await readFile(join(FIXTURES, model, "tokenizer.json"), "utf8")) as {
        model: { merges: string[] };
      };
      expect(scores).toEqual(mergeRankScores({ tokens, toktypes, merges: tj.model.merges }));
      // The first merge ("▁ t") makes "▁t": score 0; the "▁▁" run that Hugging Face merges
      // late gets its late rank, not the -(id - 259) = 0 its id would give it.
      expect(scores[tokens.indexOf("\u2581t")]).toBe(0);
      expect(Object.is(scores[tokens.indexOf("\u2581t")], -0)).toBe(false);
      expect(scores[tokens.indexOf("\u2581\u2581")]).toBe(-tj.model.merges.indexOf("\u2581 \u2581"));
      // Control, byte and single-character tokens.
      expect([scores[0], scores[1], scores[2], scores[3]]).toEqual([0, 0, 0, 0]);
      expect(toktypes[3]).toBe(TokenType.BYTE);
      expect(scores[tokens.indexOf("e")]).toBe(-tj.model.merges.length);
    });
  }
});
