// The CLI on MLX directories: generation through the GGUF transcode (made once, then cached),
// and clear errors for MLX directories the transcoder cannot use.
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convert } from "../../quant/src/pipeline.js";
import { expectCleanFailure, FIXTURES, makeTempDir, removeTempDir, runCli, THREADS } from "./helpers.js";

let tmp: string;
let artifact: string;
let mlxDir: string;

beforeAll(async () => {
  tmp = await makeTempDir();
  const r = await convert({ model: join(FIXTURES, "qwen3-tiny"), output: join(tmp, "qwen3-mlx"), formats: ["mlx"], precisions: ["4bit"], force: true, threads: 1 });
  artifact = r.outputDir;
  mlxDir = r.mlx!.dir;
}, 180_000);
afterAll(async () => {
  await removeTempDir(tmp);
});

const T = ["--threads", String(THREADS), "--ctx-size", "256", "--temperature", "0", "--max-tokens", "12"];

/** A copy of the MLX export with config.json edited. */
async function editedCopy(name: string, edit: (config: Record<string, unknown>) => void): Promise<string> {
  const dir = join(tmp, name);
  await cp(mlxDir, dir, { recursive: true, filter: (src) => !src.includes(".llama-pajamas") });
  const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("generate on an MLX model", () => {
  it("transcodes once, says what it made, and gives the same text from the artifact and from its mlx/ directory", async () => {
    const first = await runCli(["generate", "-m", artifact, "--prompt", "import os", ...T, "--verify"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/transcoded .*mlx to GGUF in [\d.]+ s: mlx 4-bit g64 -> Q4_1 exact \(29\), float \(BF16\) -> F32 exact \(17\); cached at .*\.llama-pajamas\/transcoded-[0-9a-f]{16}\.gguf/);
    expect(first.stdout.length).toBeGreaterThan(10);
    const second = await runCli(["generate", "-m", mlxDir, "--prompt", "import os", ...T]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/transcoded/); // cached
    expect(second.stdout).toBe(first.stdout);
  });

  it("picks an artifact's mlx/ directory over its GGUF with --method 4bit (or mlx)", async () => {
    const both = await convert({ model: join(FIXTURES, "qwen3-tiny"), output: join(tmp, "both"), formats: ["gguf", "mlx"], precisions: ["q8_0:4bit"], force: true, threads: 1 });
    const gguf = await runCli(["generate", "-m", both.outputDir, "--prompt", "import os", ...T]);
    expect(gguf.code, gguf.stderr).toBe(0);
    expect(gguf.stderr).not.toMatch(/transcoded/);
    const viaMlx = await runCli(["generate", "-m", both.outputDir, "--method", "4bit", "--prompt", "import os", ...T]);
    expect(viaMlx.code, viaMlx.stderr).toBe(0);
    expect(viaMlx.stderr).toMatch(/transcoded .*both\/mlx to GGUF/);
    // the 4-bit MLX weights are the same as the mlx/ export above, so the text is too
    const again = await runCli(["generate", "-m", mlxDir, "--prompt", "import os", ...T]);
    expect(viaMlx.stdout).toBe(again.stdout);
    const named = await runCli(["generate", "-m", both.outputDir, "--method", "mlx", "--prompt", "import os", ...T]);
    expect(named.stdout).toBe(viaMlx.stdout);
  });

  it("refuses an MLX directory whose config does not match its weights, an unknown mode and unsupported bits", async () => {
    const wrongBits = await editedCopy("wrong-bits", (c) => ((c["quantization"] as Record<string, unknown>)["bits"] = 8));
    expectCleanFailure(
      await runCli(["generate", "-m", wrongBits, "--prompt", "x"]),
      /config\.json says model\.embed_tokens is 8-bit with group_size 64, but its weight has \d+ words per row .*config\.json and the weights do not match/,
    );
    const mode = await editedCopy("mode", (c) => ((c["quantization"] as Record<string, unknown>)["mode"] = "nvfp4"));
    expectCleanFailure(await runCli(["generate", "-m", mode, "--prompt", "x"]), /quantization mode "nvfp4" is an MLX mode this runtime cannot transcode; only "affine"/);
    const bits = await editedCopy("bits", (c) => ((c["quantization"] as Record<string, unknown>)["bits"] = 7));
    expectCleanFailure(await runCli(["generate", "-m", bits, "--prompt", "x"]), /config\.json "quantization" has bits 7; MLX affine quantization uses 2, 3, 4, 5, 6, 8/);
    expectCleanFailure(await runCli(["generate", "-m", artifact, "--prompt", "x", "--backend", "mlx"]), /backend mlx is not available: /);
  });
});
