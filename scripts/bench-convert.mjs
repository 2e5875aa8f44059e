#!/usr/bin/env node
// npm run bench:convert -- [--preset qwen3-8b] [--dir /tmp/lp-bench] [--method q4_k_m] [--threads N]
//
// BF16 checkpoint -> Q4_K_M, two ways, on the same machine and in the same run:
//   ours:      llama-pajamas-quant convert --precision q4_k_m   (one pass, no intermediate file)
//   reference: llama-pajamas-quant convert --precision f16      (our F16 GGUF, byte-equal to
//              convert_hf_to_gguf.py's) followed by llama_model_quantize (llama.cpp's own
//              quantizer, from the library node-llama-cpp ships), i.e. the llama.cpp chain
// It prints wall time and peak RSS of each step and the ratios. Targets (issue 2): wall time
// <= 0.5x the chain's, peak RSS <= 2 GB. The checkpoint is made once with random weights of the
// preset's real shapes (scripts/make-random-checkpoint.mjs) and kept in --dir for later runs.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const preset = args.preset ?? "qwen3-8b";
const dir = resolve(args.dir ?? process.env.LP_BENCH_DIR ?? "/tmp/lp-bench");
const method = (args.method ?? "q4_k_m").toLowerCase();
const threads = Number(args.threads ?? availableParallelism());
const cli = join(root, "packages/quant/dist/cli/main.js");
const ckpt = join(dir, preset);

if (!existsSync(cli)) {
  console.error("build first: npm run build");
  process.exit(1);
}
if (!existsSync("/usr/bin/time")) {
  console.error("needs GNU time (/usr/bin/time) for peak RSS: apt-get install time");
  process.exit(1);
}
mkdirSync(dir, { recursive: true });
if (!existsSync(join(ckpt, "config.json"))) {
  console.error(`making the ${preset} checkpoint in ${ckpt} (once)...`);
  execFileSync(process.execPath, [join(root, "scripts/make-random-checkpoint.mjs"), "--preset", preset, "--out", ckpt], {
    stdio: "inherit",
  });
}

/** Runs a command under GNU time; returns wall seconds and peak RSS bytes. */
function timed(label, cmd, cmdArgs) {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", cmd, ...cmdArgs], { encoding: "utf8" });
  if (r.status !== 0) {
    console.error(`${label} failed:\n${r.stderr}`);
    process.exit(1);
  }
  const last = r.stderr.trim().split("\n").pop() ?? "";
  const [wall, rssKb] = last.split(" ").map(Number);
  return { label, wall, rss: rssKb * 1024 };
}

const outOne = join(dir, "out-one-pass");
const outF16 = join(dir, "out-f16");
const chainOut = join(dir, `chain-${method}.gguf`);
for (const p of [outOne, outF16, chainOut]) rmSync(p, { recursive: true, force: true });

console.error(`one pass: ${preset} -> ${method}, ${threads} threads`);
const one = timed("ours, one pass", process.execPath, [
  cli, "convert", "--model", ckpt, "--output", outOne, "--precision", method, "--threads", String(threads), "--quiet",
]);
console.error("chain step 1: F16 GGUF");
const f16 = timed("chain 1: F16 GGUF", process.execPath, [
  cli, "convert", "--model", ckpt, "--output", outF16, "--precision", "f16", "--quiet",
]);
const f16File = join(outF16, "gguf", `${preset}-f16.gguf`);
console.error("chain step 2: llama_model_quantize");
const quantizeScript = `
  const { llamaModelQuantize } = await import(${JSON.stringify(join(root, "packages/quant/dist/quantize/native.js"))});
  const { parseMethod } = await import(${JSON.stringify(join(root, "packages/quant/dist/quantize/methods.js"))});
  await llamaModelQuantize({ input: process.argv[1], output: process.argv[2], ftype: parseMethod(process.argv[3]).ftype, nThread: Number(process.argv[4]) });
`;
const q = timed("chain 2: llama_model_quantize", process.execPath, [
  "--input-type=module", "-e", quantizeScript, f16File, chainOut, method, String(threads),
]);

const gb = (b) => (b / 2 ** 30).toFixed(2);
const chainWall = f16.wall + q.wall;
const chainRss = Math.max(f16.rss, q.rss);
const rows = [one, f16, q, { label: "chain total", wall: chainWall, rss: chainRss }];
console.log(`\n${preset} BF16 -> ${method.toUpperCase()}, ${threads} threads`);
console.log("| step | wall s | peak RSS GiB |\n|---|---:|---:|");
for (const r of rows) console.log(`| ${r.label} | ${r.wall.toFixed(1)} | ${gb(r.rss)} |`);
const oneSize = statSync(join(outOne, "gguf", `${preset}-${method}.gguf`)).size;
console.log(`\noutput sizes: one pass ${oneSize} bytes, chain ${statSync(chainOut).size} bytes`);
console.log(`wall ratio (ours / chain): ${(one.wall / chainWall).toFixed(2)}  (target <= 0.50)`);
console.log(`peak RSS ours: ${gb(one.rss)} GiB  (target <= 2 GB); ratio to chain: ${(one.rss / chainRss).toFixed(2)}`);
if (!args.keep) for (const p of [outOne, outF16, chainOut]) rmSync(p, { recursive: true, force: true });
