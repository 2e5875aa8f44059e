// `llama-pajamas-quant validate` end to end through the built CLI: the --json shape, the
// manifest's validation block and validation.md, an HF checkpoint as --original (converted on
// the fly), and the exit codes of bad input (2 usage, 1 input).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseManifest } from "@llama-pajamas/artifact";
import { convert } from "../src/pipeline.js";
import { startCli } from "./cli-helpers.js";
import { EVAL_TEXT, FIXTURES } from "./helpers.js";

let dir: string;
let artifact: string;
let f16: string;
const run = (args: string[]) => startCli(["validate", ...args], { timeoutMs: 120_000 }).done;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-validate-cli-"));
  artifact = join(dir, "llama-tiny");
  await convert({ model: join(FIXTURES, "llama-tiny"), output: artifact, precisions: ["F16", "Q4_K_M"], threads: 1 });
  f16 = join(artifact, "gguf", "llama-tiny-f16.gguf");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("validate CLI", () => {
  let json: Record<string, unknown>;

  it("prints {perplexity, kld, mmlu, tokens} with --json and fills the artifact's manifest", async () => {
    const r = await run([
      "--original", f16, "--quantized", artifact, "--text", EVAL_TEXT, "--chunks", "4", "--threads", "1",
      "--metrics", "perplexity,kld,mmlu", "--mmlu-limit", "8", "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    json = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(["perplexity", "kld", "mmlu", "tokens"]);
    expect(Object.keys(json.perplexity as object)).toEqual(["original", "quantized", "increasePct"]);
    expect(Object.keys(json.kld as object)).toEqual(["mean", "median", "p99", "max", "sameTopPct", "rmsDpPct"]);
    expect(Object.keys(json.mmlu as object)).toEqual(["original", "quantized", "questions"]);
    expect(json.tokens).toBe(4 * 512);
    const p = json.perplexity as { original: number; quantized: number; increasePct: number };
    expect(p.increasePct).toBeCloseTo((p.quantized / p.original - 1) * 100, 9);
    expect((json.kld as { mean: number }).mean).toBeGreaterThan(0);
    expect((json.mmlu as { questions: number }).questions).toBe(8);

    const manifest = parseManifest(JSON.parse(await readFile(join(artifact, "manifest.json"), "utf8")));
    expect(manifest.validation).toMatchObject({
      perplexity_fp16: Number(p.original.toFixed(4)),
      perplexity_quantized: Number(p.quantized.toFixed(4)),
      tokens: 2048,
    });
    expect(Object.keys(manifest.validation!).sort()).toEqual(
      ["increase_pct", "kld_mean", "mmlu_fp16", "mmlu_quantized", "perplexity_fp16", "perplexity_quantized", "same_top_pct", "text_sha256", "tokens"],
    );
    expect(manifest.validation!.text_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await readFile(join(artifact, "validation.md"), "utf8")).toMatch(/\| mean KLD \| 0\.\d+ ± /);
  });

  it("converts an HF checkpoint given as --original to F16 on the fly (same figures as its F16 GGUF)", async () => {
    const r = await run([
      "--original", join(FIXTURES, "llama-tiny"), "--quantized", join(artifact, "gguf", "llama-tiny-q4_k_m.gguf"),
      "--text", EVAL_TEXT, "--chunks", "4", "--threads", "1", "--json",
    ]);
    expect(r.code).toBe(0);
    const again = JSON.parse(r.stdout) as typeof json;
    expect(again.perplexity).toEqual(json.perplexity);
    expect(again.kld).toEqual(json.kld);
    expect(again.mmlu).toBeNull();
  });

  it("prints a readable report without --json", async () => {
    const r = await run(["--original", f16, "--quantized", join(artifact, "gguf", "llama-tiny-q4_k_m.gguf"), "--text", EVAL_TEXT, "--chunks", "2", "--threads", "1", "--metrics", "perplexity"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/perplexity \(original\)\s+\d+\.\d{4} ± /);
    expect(r.stdout).toMatch(/perplexity increase\s+[+-]\d+\.\d{3} %/);
    expect(r.stdout).not.toMatch(/validation written/);
  });

  it("rejects bad usage with exit code 2", async () => {
    for (const args of [
      ["--original", f16],
      ["--original", f16, "--quantized", artifact, "--metrics", "perplexity,bleu"],
      ["--original", f16, "--quantized", artifact, "--mmlu-limit", "3"],
      ["--original", f16, "--quantized", artifact, "--metrics", "mmlu", "--chunks", "3"],
      ["--original", f16, "--quantized", artifact, "--ctx", "2"],
      ["--original", f16, "--quantized", artifact, "--method", "Q8_0"],
    ]) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/^error: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("rejects missing and unsupported models with exit code 1", async () => {
    const missing = await run(["--original", join(dir, "nope.gguf"), "--quantized", artifact]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
    const mlx = join(dir, "mlx-model");
    await mkdir(mlx);
    await writeFile(join(mlx, "config.json"), JSON.stringify({ model_type: "llama", quantization: { group_size: 32, bits: 4, mode: "mxfp4" } }));
    const r = await run(["--original", f16, "--quantized", mlx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is not a usable MLX model: quantization mode "mxfp4" is an MLX mode this runtime cannot transcode/);
    const notGguf = join(dir, "model.bin");
    await writeFile(notGguf, "x");
    expect((await run(["--original", notGguf, "--quantized", artifact])).stderr).toMatch(/not a \.gguf file/);
    await expect(stat(join(dir, "nope.gguf"))).rejects.toThrow();
  });
});
