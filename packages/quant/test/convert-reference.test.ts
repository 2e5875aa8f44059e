import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { convert, type ConvertResult } from "../src/pipeline.js";
import { diffSummaries, summarizeGGUF } from "@llama-pajamas/gguf/formats/gguf-summary.js";
import { FIXTURES, MODELS, REFERENCE } from "./helpers.js";

/**
 * Our GGUFs against llama.cpp's own convert_hf_to_gguf.py output (test/reference/*.json):
 * every metadata key and every tensor (name, shape, type, bytes) must be equal, except
 * provenance under general.* and, for SentencePiece vocabularies rebuilt from
 * tokenizer.json, the scores, where llama.cpp writes placeholders and we write real ones.
 */
const OUTTYPES = ["f32", "f16", "bf16", "q8_0"] as const;

describe.each(MODELS)("%s matches llama.cpp's converter", (model) => {
  let out: string;
  let result: ConvertResult;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), `lp-ref-${model}-`));
    result = await convert({
      model: join(FIXTURES, model),
      output: join(out, "artifact"),
      precisions: [...OUTTYPES],
      force: true,
      threads: 2,
    });
  });

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it.each(OUTTYPES)("%s", async (outtype) => {
    const file = result.files.find((f) => f.method.toLowerCase() === outtype);
    expect(file, `no ${outtype} output`).toBeDefined();
    const expected = JSON.parse(await readFile(join(REFERENCE, `${model}-${outtype}.json`), "utf8"));
    const actual = await summarizeGGUF(file!.path);
    const ignoreKeys = ["general."];
    if (model !== "qwen3-tiny") ignoreKeys.push("tokenizer.ggml.scores");
    const diffs = diffSummaries(expected, actual, { ignoreKeyPrefixes: ignoreKeys });
    expect(diffs).toEqual([]);
    // Same tensors in the same order, byte for byte.
    expect(actual.tensors.map((t: { sha256: string }) => t.sha256)).toEqual(
      expected.tensors.map((t: { sha256: string }) => t.sha256),
    );
  });
});
