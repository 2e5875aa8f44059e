// `convert --formats gguf,mlx | mlx` end to end: the precision syntax, the manifest's mlx entry
// and format_versions, mlx/metadata.json, and the CLI's flags and usage errors (built CLI).
import { access, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseManifest } from "@llama-pajamas/artifact";
import { convert } from "../src/pipeline.js";
import { resolvePrecisions } from "../src/mlx/precision.js";
import { CLI, FIXTURES, makeTempDir, removeTempDir, runCli } from "./cli-helpers.js";

describe("--precision with --formats", () => {
  it("pairs GGUF and MLX precisions as the seed writes them", () => {
    expect(resolvePrecisions(["gguf", "mlx"], ["q4_k_m:4bit"])).toEqual({ gguf: ["q4_k_m"], mlx: "4bit" });
    expect(resolvePrecisions(["gguf", "mlx"], ["q4_k_m:4bit_mixed", "q8_0"])).toEqual({ gguf: ["q4_k_m", "q8_0"], mlx: "4bit_mixed" });
    expect(resolvePrecisions(["gguf", "mlx"], ["q8_0", "mixed_3_6"])).toEqual({ gguf: ["q8_0"], mlx: "mixed_3_6" });
    expect(resolvePrecisions(["gguf", "mlx"], ["q8_0"])).toEqual({ gguf: ["q8_0"], mlx: "4bit" });
    expect(resolvePrecisions(["gguf", "mlx"], ["bf16", ":bf16"])).toEqual({ gguf: ["bf16"], mlx: "bf16" });
    expect(resolvePrecisions(["mlx"], ["8-bit"])).toEqual({ gguf: [], mlx: "8bit" });
    expect(resolvePrecisions(["mlx"], [])).toEqual({ gguf: [], mlx: "4bit" });
    expect(resolvePrecisions(["gguf"], ["q4_k_m", "q8_0"])).toEqual({ gguf: ["q4_k_m", "q8_0"], mlx: undefined });
  });
  it("refuses an MLX part without mlx, two MLX precisions, and unknown names", () => {
    expect(() => resolvePrecisions(["gguf"], ["q4_k_m:4bit"])).toThrow(/names an MLX precision, but --formats has no mlx/);
    expect(() => resolvePrecisions(["mlx"], ["q4_k_m:4bit"])).toThrow(/names a GGUF method, but --formats has no gguf/);
    expect(() => resolvePrecisions(["gguf", "mlx"], ["q4_k_m:4bit", "q8_0:8bit"])).toThrow(/one MLX precision per artifact .*4bit, 8bit/);
    expect(() => resolvePrecisions(["mlx"], ["7bit"])).toThrow(/7 bits is not supported/);
    expect(() => resolvePrecisions(["mlx"], ["int4"])).toThrow(/unknown MLX precision "int4"/);
  });
});

let tmp: string;
beforeAll(async () => {
  tmp = await makeTempDir();
});
afterAll(async () => {
  if (tmp) await removeTempDir(tmp);
});

describe("convert()", () => {
  it("gguf,mlx: one manifest with both entries, format_versions for both", async () => {
    const out = join(tmp, "both");
    const r = await convert({ model: join(FIXTURES, "llama-tiny"), output: out, formats: ["gguf", "mlx"], precisions: ["q8_0:4bit_mixed"], threads: 2 });
    expect(r.ggufPath).toBe(join(out, "gguf", "llama-tiny-q8_0.gguf"));
    expect(r.mlx).toMatchObject({ dir: join(out, "mlx"), method: "4bit_mixed", groupSize: 64 });
    const manifest = parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
    expect(manifest.format_versions).toEqual({ gguf: "3", mlx: "1" });
    expect(manifest.formats.map((f) => [f.type, f.path, f.method])).toEqual([
      ["gguf", "gguf/llama-tiny-q8_0.gguf", "Q8_0"],
      ["mlx", "mlx/", "4bit_mixed"],
    ]);
    const entry = manifest.formats[1]!;
    const meta = JSON.parse(await readFile(join(out, "mlx", "metadata.json"), "utf8"));
    expect(entry.sha256).toBe(meta.files_sha256);
    expect(entry.size_bytes).toBe(meta.files.reduce((s: number, f: { size_bytes: number }) => s + f.size_bytes, 0));
    expect(entry.compression).toBe(`${r.mlx!.compressionRatio.toFixed(1)}x`);
    expect(meta.quantization).toMatchObject({ body_bits: 4, embedding_bits: 6, group_size: 64 });
    await access(join(out, "gguf", "metadata.json"));
    expect((await readdir(join(out, "mlx"))).sort()).toContain("model.safetensors");
  });

  it("mlx alone: no gguf/, the manifest lists mlx only", async () => {
    const out = join(tmp, "mlx-only");
    const r = await convert({ model: join(FIXTURES, "qwen3-tiny"), output: out, formats: ["mlx"], precisions: ["8bit"], mlxGroupSize: 128 });
    expect(r.ggufPath).toBeUndefined();
    expect(r.files).toEqual([]);
    expect(await readdir(out)).toEqual(expect.arrayContaining(["manifest.json", "mlx"]));
    await expect(access(join(out, "gguf"))).rejects.toThrow();
    const manifest = parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
    expect(manifest.format_versions).toEqual({ mlx: "1" });
    expect(manifest.formats).toHaveLength(1);
    expect(manifest.architecture.type).toBe("qwen3");
    const config = JSON.parse(await readFile(join(out, "mlx", "config.json"), "utf8"));
    expect(config.quantization).toEqual({ group_size: 128, bits: 8, mode: "affine" });
    expect(r.compressionRatio).toBe(r.mlx!.compressionRatio);
  });

  it("checks the MLX request before the GGUF pass and leaves nothing", async () => {
    const out = join(tmp, "bad");
    await expect(convert({ model: join(FIXTURES, "llama-tiny"), output: out, formats: ["gguf", "mlx"], precisions: ["q8_0:4bit"], mlxGroupSize: 100 })).rejects.toThrow(
      /MLX group size 100 is not supported; choose 32, 64, 128/,
    );
    await expect(access(out)).rejects.toThrow();
  });
});

describe("CLI", () => {
  beforeAll(async () => {
    await stat(CLI).catch(() => {
      throw new Error(`${CLI} is missing; run \`npm run build\` first`);
    });
  });

  it("convert --formats mlx --precision mixed_4_6 --group-size 32", async () => {
    const out = join(tmp, "cli-mlx");
    const r = await runCli(["convert", "--model", join(FIXTURES, "mixtral-tiny"), "--output", out, "--formats", "mlx", "--precision", "mixed_4_6", "--group-size", "32"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mixed_4_6 .* \d+\.\dx {2}.*mlx\/ \(MLX\)/);
    const config = JSON.parse(await readFile(join(out, "mlx", "config.json"), "utf8"));
    expect(config.quantization["model.layers.1.block_sparse_moe.switch_mlp.down_proj"]).toEqual({ group_size: 32, bits: 6, mode: "affine" });
  });

  it("convert --formats gguf,mlx defaults to q4_k_m:4bit", async () => {
    const out = join(tmp, "cli-both");
    const r = await runCli(["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", out, "--formats", "gguf,mlx", "--json", "--threads", "2"]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.files.map((f: { method: string }) => f.method)).toEqual(["Q4_K_M"]);
    expect(summary.mlx.method).toBe("4bit");
  });

  it("usage errors exit 2, bad precisions exit 1, with what to do", async () => {
    const base = ["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", join(tmp, "never")];
    const noMlx = await runCli([...base, "--group-size", "64"]);
    expect([noMlx.code, noMlx.stderr]).toEqual([2, "error: --group-size applies to MLX output; add --formats mlx or gguf,mlx\n"]);
    const fmt = await runCli([...base, "--formats", "onnx"]);
    expect(fmt.code).toBe(2);
    expect(fmt.stderr).toMatch(/unknown output format "onnx"; choose gguf, mlx or gguf,mlx/);
    const bits = await runCli([...base, "--formats", "mlx", "--precision", "7bit"]);
    expect(bits.code).toBe(1);
    expect(bits.stderr).toMatch(/^error: MLX precision "7bit": 7 bits is not supported/);
    await expect(access(join(tmp, "never"))).rejects.toThrow();
  });
});
