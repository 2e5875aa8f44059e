// What importance-weighted MLX quantization buys, measured through the engine: MLX exports with
// and without an importance matrix, validated against the F16 GGUF on the default evaluation
// text (its first chunks, to stay fast). 4-bit MLX transcodes exactly to Q4_1 in the runtime, so
// the 4-bit comparison is the clean one; 3-bit goes through Q3_K (requantized by ggml), so its
// figure mixes in that second quantization.
//
// llama-tiny here, with llama-imatrix's own matrix (test/reference, through --imatrix);
// mlx-weighted-kld-qwen3.test.ts does qwen3-tiny through `convert --calibrate`.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportMLX } from "../src/mlx/export.js";
import { convert } from "../src/pipeline.js";
import { readImatrix } from "../src/quantize/imatrix.js";
import { FIXTURES, REFERENCE } from "./helpers.js";
import { expectWeightedCloser } from "./mlx-helpers.js";

/** Chunks of the default text (512 tokens each) per comparison. */
const CHUNKS = 2;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-mlx-weighted-kld-llama-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("llama-tiny with llama-imatrix's matrix (convert --imatrix)", () => {
  let f16: string;
  beforeAll(async () => {
    const imatrixPath = join(REFERENCE, "llama-tiny.imatrix.gguf");
    const model = join(FIXTURES, "llama-tiny");
    const r = await convert({ model, output: join(dir, "llama"), formats: ["gguf", "mlx"], precisions: ["f16:4bit"], imatrixPath });
    f16 = r.files[0]!.path;
    const imatrix = await readImatrix(imatrixPath);
    await exportMLX({ model, output: join(dir, "llama-4bit-plain"), method: "4bit" });
    await exportMLX({ model, output: join(dir, "llama-3bit-plain"), method: "3bit" });
    await exportMLX({ model, output: join(dir, "llama-3bit-weighted"), method: "3bit", imatrix });
  });

  it("--imatrix with mlx output weights the export and says so in mlx/metadata.json", async () => {
    const meta = JSON.parse(await readFile(join(dir, "llama", "mlx", "metadata.json"), "utf8"));
    expect(meta.quantization).toMatchObject({ importance_weighted: true, importance: { imatrix: "llama-tiny.imatrix.gguf", chunks: 32, modules: 28 } });
  });

  // Measured here: 4 bits 0.1226 -> 0.1184, 3 bits 0.849 -> 0.672; on the whole default text
  // (73,216 tokens) 0.1437 -> 0.1323 and 0.922 -> 0.838.
  it("4 bits: lower mean KLD against F16 than plain MLX", async () => {
    await expectWeightedCloser(f16, join(dir, "llama-4bit-plain"), join(dir, "llama", "mlx"), CHUNKS);
  });

  it("3 bits: lower mean KLD against F16 than plain MLX", async () => {
    await expectWeightedCloser(f16, join(dir, "llama-3bit-plain"), join(dir, "llama-3bit-weighted"), CHUNKS);
  });
});
