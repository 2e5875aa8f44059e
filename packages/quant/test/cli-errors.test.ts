// Bad input through the real built CLI (run `npm run build` first): every case exits 1 with one
// clear `error:` line, no stack trace, and leaves no output or temp dir behind.
import { chmod, mkdir, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  canDropPrivileges,
  CLI,
  copyFixture,
  expectCleanFailure,
  expectNothingLeftBehind,
  FIXTURES,
  makeTempDir,
  patchTensor,
  readSafetensors,
  removeTempDir,
  runCli,
  snapshot,
  startCli,
  writeSafetensors,
} from "./cli-helpers.js";

const OUT = "out";
// llama-tiny is sharded: shard 3 (2.3 MB) holds layers 2-3 and model.norm; damage goes there.
const SHARD3 = "model-00003-of-00003.safetensors";

let tmp: string;
/** A fresh scratch dir per case, with the output path beside the model copy. */
let n = 0;
async function caseDir(): Promise<string> {
  const dir = join(tmp, `case-${++n}`);
  await mkdir(dir, { mode: 0o755 });
  return dir;
}

/** Runs `convert --model model --output dir/out` and checks the clean refusal. */
async function expectRefusal(opts: { dir: string; model: string; message: RegExp | string; args?: string[] }): Promise<string> {
  const r = await runCli(["convert", "--model", opts.model, "--output", join(opts.dir, OUT), "--quiet", ...(opts.args ?? [])]);
  expectCleanFailure(r, opts.message);
  await expectNothingLeftBehind(opts.dir, OUT);
  return r.stderr;
}

/** A llama-tiny copy whose shard 3 is modified by `damage`. */
async function damagedLlama(damage: (shardPath: string) => Promise<void>): Promise<{ dir: string; model: string; shard: string }> {
  const dir = await caseDir();
  const model = await copyFixture("llama-tiny", join(dir, "model"));
  const shard = join(model, SHARD3);
  await damage(shard);
  return { dir, model, shard };
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

describe("convert refuses bad input with exit 1", () => {
  it("missing model dir", async () => {
    const dir = await caseDir();
    const stderr = await expectRefusal({ dir, model: join(dir, "nope"), message: "does not exist" });
    expect(stderr).toContain(join(dir, "nope"));
  });

  it("model path that is a file", async () => {
    const dir = await caseDir();
    await writeFile(join(dir, "model.safetensors"), "x");
    await expectRefusal({ dir, model: join(dir, "model.safetensors"), message: "is a file, not a directory" });
  });

  it.skipIf(!canDropPrivileges())("unreadable model dir (run as nobody via setpriv; root reads through chmod)", async () => {
    const dir = await caseDir();
    const model = await copyFixture("llama-tiny", join(dir, "model"));
    await chmod(model, 0o000);
    try {
      const r = await runCli(["convert", "--model", model, "--output", join(dir, OUT), "--quiet"], { user: 65534 });
      expectCleanFailure(r, /model directory .* is not readable; check its permissions/);
      // A dir whose parent can't be searched is not "missing" either.
      await chmod(model, 0o755);
      await chmod(dir, 0o700);
      const r2 = await runCli(["convert", "--model", model, "--output", join(tmp, "out-nobody"), "--quiet"], { user: 65534 });
      expectCleanFailure(r2, /cannot access model directory .*EACCES/);
      expect(r2.stderr).not.toContain("does not exist");
    } finally {
      await chmod(dir, 0o755);
      await chmod(model, 0o755);
    }
    await expectNothingLeftBehind(dir, OUT);
    await expectNothingLeftBehind(tmp, "out-nobody");
  });

  it("dir that is not a model (no config.json)", async () => {
    const dir = await caseDir();
    const model = join(dir, "model");
    await mkdir(model);
    await writeFile(join(model, "notes.txt"), "hello");
    const stderr = await expectRefusal({ dir, model, message: "is not a Hugging Face model directory: config.json is missing" });
    expect(stderr).toContain("notes.txt");
  });

  it("dir with config.json but no safetensors", async () => {
    const dir = await caseDir();
    const model = join(dir, "model");
    await mkdir(model);
    await writeFile(join(model, "config.json"), await readFile(join(FIXTURES, "llama-tiny", "config.json")));
    await writeFile(join(model, "pytorch_model.bin"), "x");
    await expectRefusal({ dir, model, message: /has no \*\.safetensors weights .*pytorch_model\.bin/ });
  });

  it("config.json that is not JSON", async () => {
    const dir = await caseDir();
    const model = await copyFixture("mixtral-tiny", join(dir, "model"));
    await writeFile(join(model, "config.json"), '{"model_type": "llama",');
    await expectRefusal({ dir, model, message: /config .*config\.json is not valid JSON/ });
  });

  it("unsupported architecture, listing the supported ones", async () => {
    const dir = await caseDir();
    const model = await copyFixture("llama-tiny", join(dir, "model"));
    const config = JSON.parse(await readFile(join(model, "config.json"), "utf8"));
    await writeFile(join(model, "config.json"), JSON.stringify({ ...config, model_type: "foo", architectures: ["FooForCausalLM"] }));
    await expectRefusal({
      dir,
      model,
      message: /unsupported architecture "FooForCausalLM" \(model_type "foo"\); supported: llama, .*qwen3/,
    });
  });

  it("config missing a required field", async () => {
    const dir = await caseDir();
    const model = await copyFixture("llama-tiny", join(dir, "model"));
    const config = JSON.parse(await readFile(join(model, "config.json"), "utf8"));
    delete config.num_hidden_layers;
    await writeFile(join(model, "config.json"), JSON.stringify(config));
    await expectRefusal({ dir, model, message: /config\.json has no "num_hidden_layers".*which the llama architecture needs/ });
  });

  it("tensor missing for a layer (index and shard agree)", async () => {
    const name = "model.layers.3.self_attn.k_proj.weight";
    const { dir, model } = await damagedLlama(async (shard) => {
      const f = await readSafetensors(shard);
      delete f.header[name];
      await writeSafetensors(shard, f);
    });
    const indexPath = join(model, "model.safetensors.index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    delete index.weight_map[name];
    await writeFile(indexPath, JSON.stringify(index));
    await expectRefusal({ dir, model, message: name });
  });

  it("tensor listed in the index but missing from its shard", async () => {
    const name = "model.layers.3.mlp.up_proj.weight";
    const { dir, model } = await damagedLlama(async (shard) => {
      const f = await readSafetensors(shard);
      delete f.header[name];
      await writeSafetensors(shard, f);
    });
    await expectRefusal({ dir, model, message: `missing from their shard: ${name} (in ${SHARD3})` });
  });

  it("unknown precision, listing the valid ones", async () => {
    const dir = await caseDir();
    await expectRefusal({
      dir,
      model: join(FIXTURES, "llama-tiny"),
      args: ["--precision", "q4_k_m,q9_z"],
      message: /unknown quantization method "q9_z"; valid: .*q4_k_m.*q8_0.*f16/,
    });
  });
});

describe("convert refuses corrupt safetensors with exit 1", () => {
  it("header length past the end of the file", async () => {
    const { dir, model } = await damagedLlama(async (shard) => {
      const buf = await readFile(shard);
      buf.writeBigUInt64LE(BigInt(buf.length + 1000));
      await writeFile(shard, buf);
    });
    await expectRefusal({ dir, model, message: new RegExp(`${SHARD3}: header length \\d+ runs past the end of the \\d+-byte file`) });
  });

  it("truncated file (data section cut short)", async () => {
    const { dir, model } = await damagedLlama(async (shard) => {
      await truncate(shard, 1_000_000);
    });
    await expectRefusal({ dir, model, message: /data_offsets \[\d+, \d+\] lie outside the \d+-byte data section/ });
  });

  it("file shorter than the header length field", async () => {
    const { dir, model } = await damagedLlama(async (shard) => {
      await truncate(shard, 5);
    });
    await expectRefusal({ dir, model, message: "file is 5 bytes, shorter than the 8-byte header length field" });
  });

  it("header that is not JSON", async () => {
    const { dir, model } = await damagedLlama(async (shard) => {
      const buf = await readFile(shard);
      buf.write("#", 8); // the header's opening brace
      await writeFile(shard, buf);
    });
    await expectRefusal({ dir, model, message: `${SHARD3}: header is not valid JSON` });
  });

  it("offsets outside the file", async () => {
    const { dir, model } = await damagedLlama((shard) =>
      patchTensor(shard, "model.norm.weight", (t) => {
        t.data_offsets = [t.data_offsets[0] + 4096, t.data_offsets[1] + 4096];
      }),
    );
    await expectRefusal({ dir, model, message: /tensor "model\.norm\.weight": data_offsets \[\d+, \d+\] lie outside the \d+-byte data section/ });
  });

  it("offsets overlapping another tensor", async () => {
    // Same length, so only the overlap is wrong: layer 3's input norm moved onto layer 2's.
    const { dir, model } = await damagedLlama((shard) =>
      patchTensor(shard, "model.layers.3.input_layernorm.weight", (t) => {
        t.data_offsets = [256, 768];
      }),
    );
    await expectRefusal({
      dir,
      model,
      message: /tensors "model\.layers\.2\.input_layernorm\.weight" \[\d+, \d+\) and "model\.layers\.3\.input_layernorm\.weight" \[\d+, \d+\) overlap/,
    });
  });

  it("unknown dtype", async () => {
    const { dir, model } = await damagedLlama((shard) =>
      patchTensor(shard, "model.norm.weight", (t) => {
        t.dtype = "Q7";
      }),
    );
    await expectRefusal({ dir, model, message: /tensor "model\.norm\.weight": unknown dtype "Q7"; known: .*BF16/ });
  });

  it("shape not matching the byte size", async () => {
    const { dir, model } = await damagedLlama((shard) =>
      patchTensor(shard, "model.layers.3.self_attn.q_proj.weight", (t) => {
        t.shape = [256, 255];
      }),
    );
    await expectRefusal({
      dir,
      model,
      message: /tensor "model\.layers\.3\.self_attn\.q_proj\.weight": shape \[256, 255\] of BF16 needs 130560 bytes, data_offsets \[\d+, \d+\] hold 131072/,
    });
  });
});

describe("convert protects existing output", () => {
  it("refuses a non-empty output dir without --force and keeps its content", async () => {
    const dir = await caseDir();
    await mkdir(join(dir, OUT, "gguf"), { recursive: true });
    await writeFile(join(dir, OUT, "keep.txt"), "mine");
    await writeFile(join(dir, OUT, "gguf", "old.gguf"), "old");
    const before = await snapshot(join(dir, OUT));
    const r = await runCli(["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", join(dir, OUT), "--quiet"]);
    expectCleanFailure(r, /output directory .*out already exists and is not empty; pass --force to replace it/);
    await expectNothingLeftBehind(dir, OUT, before);
  });

  it("refuses an output path that is an existing file", async () => {
    const dir = await caseDir();
    await writeFile(join(dir, OUT), "a file, not a dir");
    const r = await runCli(["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", join(dir, OUT), "--quiet"]);
    expectCleanFailure(r, /output .*out exists and is not a directory/);
    expect(await readFile(join(dir, OUT), "utf8")).toBe("a file, not a dir");
    expect((await readdir(dir)).filter((e) => e.startsWith(`${OUT}.`))).toEqual([]);
  });
});

describe("convert fails cleanly mid-write", () => {
  it("file-size limit (ulimit -f, EFBIG: the disk-full path) leaves no partial output", async () => {
    const dir = await caseDir();
    // 1000 blocks of 1 KiB: the 9 MB Q4_K_M GGUF can't fit. With SIGXFSZ ignored the write
    // fails with EFBIG instead of the signal killing node.
    const r = await runCli(["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", join(dir, OUT), "--quiet"], {
      shell: "trap '' XFSZ\nulimit -f 1000",
    });
    expectCleanFailure(r, /^error: file too large while writing .*out \(cannot write .*EFBIG.*\); raise the file-size limit \(ulimit -f\).*\(nothing was kept\)/);
    await expectNothingLeftBehind(dir, OUT);
  });

  it("a failed --force run keeps the previous output untouched", async () => {
    const dir = await caseDir();
    await mkdir(join(dir, OUT, "gguf"), { recursive: true });
    await writeFile(join(dir, OUT, "manifest.json"), '{"previous": true}');
    await writeFile(join(dir, OUT, "gguf", "previous.gguf"), "previous");
    const before = await snapshot(join(dir, OUT));
    const r = await runCli(["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", join(dir, OUT), "--force", "--quiet"], {
      shell: "trap '' XFSZ\nulimit -f 1000",
    });
    expectCleanFailure(r, /^error: file too large while writing/);
    await expectNothingLeftBehind(dir, OUT, before);
  });

  it("SIGINT mid-conversion exits non-zero and keeps no partial output", async () => {
    const dir = await caseDir();
    const run = startCli([
      "convert",
      "--model",
      join(FIXTURES, "qwen3-tiny"),
      "--output",
      join(dir, OUT),
      "--precision",
      "q4_k_m,q8_0,q6_k",
      "--quiet",
    ]);
    // Wait for the temp output to appear: conversion has started writing.
    const deadline = Date.now() + 30_000;
    let tmpName: string | undefined;
    while (tmpName === undefined && Date.now() < deadline && run.child.exitCode === null) {
      tmpName = (await readdir(dir)).find((e) => e.startsWith(`${OUT}.tmp-`));
      if (tmpName === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(tmpName, "the temp output dir never appeared").toBeDefined();
    expect(run.child.kill("SIGINT")).toBe(true);
    const r = await run.done;
    expectCleanFailure(r, "conversion interrupted; nothing was written to the output directory");
    await expectNothingLeftBehind(dir, OUT);
  });
});

describe("usage errors are exit 2, not 1", () => {
  it("convert without --model", async () => {
    const r = await runCli(["convert", "--output", join(tmp, "unused")]);
    expectCleanFailure(r, "--model is required", 2);
    await expectNothingLeftBehind(tmp, "unused");
  });

  it("unknown flag", async () => {
    const r = await runCli(["convert", "--modle", "x"]);
    expectCleanFailure(r, "--modle", 2);
  });
});
