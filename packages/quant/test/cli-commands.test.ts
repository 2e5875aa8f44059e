// The built CLI's happy paths (run `npm run build` first): convert writes an artifact whose
// manifest checksums match the files, --force replaces an artifact, info and list-methods report
// what the issue asks, and every command's --help exits 0.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLI,
  FIXTURES,
  makeTempDir,
  removeTempDir,
  runCli,
  sha256File,
  type CliResult,
} from "./cli-helpers.js";

// From config.json and the shard index ("total_parameters") of the fixture.
const LLAMA_TINY_PARAMS = 11_340_032;

let tmp: string;

function expectOk(r: CliResult): void {
  expect(r.code, `exit ${r.code}\nstderr: ${r.stderr}`).toBe(0);
  expect(r.stderr).not.toMatch(/^ {4}at /m);
}

async function convertTo(model: string, output: string, args: string[]): Promise<CliResult> {
  return runCli(["convert", "--model", join(FIXTURES, model), "--output", output, ...args]);
}

interface ManifestLike {
  model_id: string;
  architecture: { family: string; type: string; params_total_count: number };
  formats: { type: string; path: string; method: string; size_bytes: number; sha256: string }[];
}

beforeAll(async () => {
  await stat(CLI).catch(() => {
    throw new Error(`${CLI} is missing; run \`npm run build\` first`);
  });
  tmp = await makeTempDir();
});

afterAll(async () => {
  if (tmp) await removeTempDir(tmp);
});

describe("convert", () => {
  const out = () => join(tmp, "llama");

  it("writes gguf/ and a manifest whose sha256s equal the files' own", async () => {
    const r = await convertTo("llama-tiny", out(), ["--precision", "q8_0,q4_k_m"]);
    expectOk(r);
    expect(r.stdout).toContain(`llama (dense_decoder, 11,340,032 params) converted in`);
    expect(r.stdout).toMatch(/^Q8_0 .*llama-tiny-q8_0\.gguf$/m);

    const manifest = JSON.parse(await readFile(join(out(), "manifest.json"), "utf8")) as ManifestLike;
    expect(manifest.model_id).toBe("llama-tiny");
    expect(manifest.architecture).toMatchObject({ family: "dense_decoder", type: "llama", params_total_count: LLAMA_TINY_PARAMS });
    expect(manifest.formats.map((f) => f.method)).toEqual(["Q8_0", "Q4_K_M"]);
    for (const f of manifest.formats) {
      const path = join(out(), f.path);
      expect(f.type).toBe("gguf");
      expect(f.size_bytes).toBe((await stat(path)).size);
      expect(f.sha256, f.path).toBe(await sha256File(path));
    }
    // Exactly the listed files, plus the per-format metadata.
    expect((await readdir(join(out(), "gguf"))).sort()).toEqual(["llama-tiny-q4_k_m.gguf", "llama-tiny-q8_0.gguf", "metadata.json"]);
    const metadata = JSON.parse(await readFile(join(out(), "gguf", "metadata.json"), "utf8")) as { files: { file: string; sha256: string }[] };
    expect(metadata.files.map((f) => f.sha256)).toEqual(manifest.formats.map((f) => f.sha256));
    expect((await readdir(tmp)).filter((e) => e.startsWith("llama."))).toEqual([]);
  });

  it("--force replaces an existing artifact, leaving no old files or temp dirs", async () => {
    const r = await convertTo("llama-tiny", out(), ["--precision", "q4_k_m", "--force", "--json"]);
    expectOk(r);
    const summary = JSON.parse(r.stdout) as { outputDir: string; files: { method: string; path: string; sha256: string }[] };
    expect(summary.outputDir).toBe(out());
    expect(summary.files.map((f) => f.method)).toEqual(["Q4_K_M"]);
    expect((await readdir(join(out(), "gguf"))).sort()).toEqual(["llama-tiny-q4_k_m.gguf", "metadata.json"]);
    const manifest = JSON.parse(await readFile(join(out(), "manifest.json"), "utf8")) as ManifestLike;
    expect(manifest.formats).toHaveLength(1);
    expect(manifest.formats[0]!.sha256).toBe(await sha256File(join(out(), "gguf", "llama-tiny-q4_k_m.gguf")));
    expect(manifest.formats[0]!.sha256).toBe(summary.files[0]!.sha256);
    expect((await readdir(tmp)).filter((e) => e.startsWith("llama."))).toEqual([]);
  });
});

describe("info", () => {
  it("describes a checkpoint dir", async () => {
    const r = await runCli(["info", join(FIXTURES, "llama-tiny")]);
    expectOk(r);
    expect(r.stdout).toMatch(/^architecture +LlamaForCausalLM \(model_type llama\)$/m);
    expect(r.stdout).toMatch(/^family +dense_decoder$/m);
    expect(r.stdout).toMatch(/^parameters +11M \(11,340,032\)$/m);
    expect(r.stdout).toMatch(/^supported +yes$/m);
  });

  it("--json on a checkpoint dir", async () => {
    const r = await runCli(["info", join(FIXTURES, "llama-tiny"), "--json"]);
    expectOk(r);
    expect(JSON.parse(r.stdout)).toMatchObject({
      kind: "checkpoint",
      modelType: "llama",
      architecture: "LlamaForCausalLM",
      family: "dense_decoder",
      supported: true,
      params: LLAMA_TINY_PARAMS,
      paramsLabel: "11M",
      dtypes: { BF16: 38 },
      layers: 4,
      tokenizer: "tokenizer.json",
    });
  });

  it("reports mixtral-tiny as moe with its experts", async () => {
    const r = await runCli(["info", join(FIXTURES, "mixtral-tiny"), "--json"]);
    expectOk(r);
    expect(JSON.parse(r.stdout)).toMatchObject({ kind: "checkpoint", modelType: "mixtral", family: "moe", experts: 8, supported: true });
  });

  it("describes a produced .gguf", async () => {
    const gguf = join(tmp, "llama", "gguf", "llama-tiny-q4_k_m.gguf");
    const r = await runCli(["info", gguf, "--json"]);
    expectOk(r);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ kind: "gguf", architecture: "llama", family: "dense_decoder", layers: 4, tokenizer: "llama", supported: true });
    expect(info.sizeBytes).toBe((await stat(gguf)).size);
    // The GGUF also holds rope_freqs.weight (head_dim / 2 = 32 floats for llama3 rope
    // scaling), a generated tensor that the checkpoint count leaves out.
    expect(info.params).toBe(LLAMA_TINY_PARAMS + 32);
    expect(Object.keys(info.dtypes as object).sort()).toEqual(["F32", "Q4_K", "Q6_K"]);
    const text = await runCli(["info", gguf]);
    expectOk(text);
    expect(text.stdout).toMatch(/^kind +gguf$/m);
    expect(text.stdout).toMatch(/^architecture +llama$/m);
  });

  it("describes a produced MoE .gguf as moe", async () => {
    const out = join(tmp, "mixtral");
    expectOk(await convertTo("mixtral-tiny", out, ["--precision", "q8_0", "--quiet"]));
    const r = await runCli(["info", join(out, "gguf", "mixtral-tiny-q8_0.gguf"), "--json"]);
    expectOk(r);
    expect(JSON.parse(r.stdout)).toMatchObject({ kind: "gguf", architecture: "llama", family: "moe", experts: 8, layers: 2 });
  });

  it("refuses a missing path with exit 1", async () => {
    const r = await runCli(["info", join(tmp, "nope")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: model directory .*nope does not exist/);
    expect(r.stderr).not.toMatch(/^ {4}at /m);
  });
});

describe("list-methods", () => {
  it("--json lists Q4_K_M (ftype 15) and IQ2_XXS needing an imatrix", async () => {
    const r = await runCli(["list-methods", "--json"]);
    expectOk(r);
    const methods = JSON.parse(r.stdout) as { name: string; ftype: number; requiresImatrix: boolean; bitsPerWeight: number }[];
    expect(methods.find((m) => m.name === "Q4_K_M")).toMatchObject({ ftype: 15, requiresImatrix: false });
    expect(methods.find((m) => m.name === "IQ2_XXS")).toMatchObject({ requiresImatrix: true });
    expect(methods.find((m) => m.name === "Q8_0")).toMatchObject({ ftype: 7 });
  });

  it("text output marks imatrix methods", async () => {
    const r = await runCli(["list-methods"]);
    expectOk(r);
    expect(r.stdout).toMatch(/^IQ2_XXS .*\(needs --imatrix\)$/m);
    expect(r.stdout).toMatch(/^Q4_K_M +4\.\d\d bpw/m);
  });
});

describe("--help", () => {
  for (const command of ["convert", "info", "list-methods"]) {
    it(`${command} --help exits 0 with its usage`, async () => {
      const r = await runCli([command, "--help"]);
      expectOk(r);
      expect(r.stdout).toContain(`Usage: llama-pajamas-quant ${command}`);
      expect(r.stderr).toBe("");
    });
  }

  it("top-level --help exits 0 and lists the commands", async () => {
    const r = await runCli(["--help"]);
    expectOk(r);
    for (const c of ["convert", "info", "list-methods"]) expect(r.stdout).toContain(`  ${c}`);
  });

  it("no command prints the help and exits 2", async () => {
    const r = await runCli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("Usage: llama-pajamas-quant <command>");
  });
});
