#!/usr/bin/env node
// npm run bench:convert -- [--preset qwen3-8b] [--dir /tmp/lp-bench] [--method q4_k_m] [--threads N]
//                          [--ggml-kernels] [--chain-out FILE] [--keep]
//
// BF16 checkpoint -> Q4_K_M, two ways, on the same machine and in the same run:
//   ours:      llama-pajamas-quant convert --precision q4_k_m   (one pass, no intermediate file)
//   reference: llama-pajamas-quant convert --precision f16      (our F16 GGUF, byte-equal to
//              convert_hf_to_gguf.py's) followed by llama_model_quantize (llama.cpp's own
//              quantizer, from the library node-llama-cpp ships), i.e. the llama.cpp chain
// It prints wall time and peak RSS of each step and the ratios. Targets (issue 2): wall time
// <= 0.5x the chain's, peak RSS <= 2 GB. The checkpoint is made once with random weights of the
// preset's real shapes (scripts/make-random-checkpoint.mjs) and kept in --dir for later runs.
//
// Ours quantizes Q4_K, Q5_K and Q6_K with the WebAssembly port of ggml's reference code where it
// matches this machine's ggml (packages/quant/src/quantize/kernels.ts): the script says which
// kernels ran; --ggml-kernels adds a run of ours with ggml's kernels only. It then compares our
// output with the chain's tensor by tensor (bytes), and with --chain-out FILE also with another
// GGUF of the same method (llama.cpp's own convert_hf_to_gguf.py + llama-quantize output, say).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

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

const { kernelStatus, KERNELS_ENV } = await import(pathToFileURL(join(root, "packages/quant/dist/quantize/kernels.js")).href);
const { readGGUF } = await import(pathToFileURL(join(root, "packages/gguf/dist/formats/gguf-reader.js")).href);
const kernels = kernelStatus();

/** Tensors of two GGUFs whose bytes differ (names and types must match too). */
async function compareTensors(aPath, bPath) {
  const [a, b] = [await readGGUF(aPath), await readGGUF(bPath)];
  const bByName = new Map(b.tensors.map((t) => [t.name, t]));
  const differing = [];
  const [fa, fb] = [await open(aPath, "r"), await open(bPath, "r")];
  const bufA = Buffer.alloc(64 << 20);
  const bufB = Buffer.alloc(64 << 20);
  for (const ta of a.tensors) {
    const tb = bByName.get(ta.name);
    if (!tb || tb.type !== ta.type || tb.byteLength !== ta.byteLength) {
      differing.push(ta.name);
      continue;
    }
    for (let at = 0; at < ta.byteLength; at += bufA.length) {
      const n = Math.min(bufA.length, ta.byteLength - at);
      await fa.read(bufA, 0, n, ta.offset + at);
      await fb.read(bufB, 0, n, tb.offset + at);
      if (bufA.compare(bufB, 0, n, 0, n) !== 0) {
        differing.push(ta.name);
        break;
      }
    }
  }
  await fa.close();
  await fb.close();
  return { tensors: a.tensors.length, other: b.tensors.length, differing };
}

const outOne = join(dir, "out-one-pass");
const outF16 = join(dir, "out-f16");
const chainOut = join(dir, `chain-${method}.gguf`);
for (const p of [outOne, outF16, chainOut]) rmSync(p, { recursive: true, force: true });

console.error(`one pass: ${preset} -> ${method}, ${threads} threads`);
const one = timed("ours, one pass", process.execPath, [
  cli, "convert", "--model", ckpt, "--output", outOne, "--precision", method, "--threads", String(threads), "--quiet",
]);
let oneGgml;
if ("ggml-kernels" in args) {
  const outGgml = join(dir, "out-one-pass-ggml");
  rmSync(outGgml, { recursive: true, force: true });
  console.error("one pass again, ggml's kernels only");
  process.env[KERNELS_ENV] = "ggml";
  oneGgml = timed("ours, one pass, ggml kernels", process.execPath, [
    cli, "convert", "--model", ckpt, "--output", outGgml, "--precision", method, "--threads", String(threads), "--quiet",
  ]);
  delete process.env[KERNELS_ENV];
  rmSync(outGgml, { recursive: true, force: true });
}
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
const rows = [one, ...(oneGgml ? [oneGgml] : []), f16, q, { label: "chain total", wall: chainWall, rss: chainRss }];
console.log(`\n${preset} BF16 -> ${method.toUpperCase()}, ${threads} threads`);
console.log(`our k-quant kernels: ${Object.entries(kernels.types).map(([t, k]) => `${t} ${k}`).join(", ")}${kernels.reason ? ` (${kernels.reason})` : ""}`);
console.log("| step | wall s | peak RSS GiB |\n|---|---:|---:|");
for (const r of rows) console.log(`| ${r.label} | ${r.wall.toFixed(1)} | ${gb(r.rss)} |`);
const oneFile = join(outOne, "gguf", `${preset}-${method}.gguf`);
const oneSize = statSync(oneFile).size;
console.log(`\noutput sizes: one pass ${oneSize} bytes, chain ${statSync(chainOut).size} bytes`);
for (const [label, other] of [["the chain's", chainOut], ...(args["chain-out"] ? [[args["chain-out"], resolve(args["chain-out"])]] : [])]) {
  const c = await compareTensors(oneFile, other);
  const verdict = c.differing.length === 0 && c.tensors === c.other ? "all byte-identical" : `${c.differing.length} differ: ${c.differing.slice(0, 5).join(", ")}`;
  console.log(`tensor data vs ${label}: ${c.tensors} tensors (other file ${c.other}), ${verdict}`);
}
console.log(`wall ratio (ours / chain): ${(one.wall / chainWall).toFixed(2)}  (target <= 0.50)`);
if (oneGgml) console.log(`wall ratio (ours with ggml's kernels / chain): ${(oneGgml.wall / chainWall).toFixed(2)}; WebAssembly port speed-up ${(oneGgml.wall / one.wall).toFixed(2)}x`);
console.log(`peak RSS ours: ${gb(one.rss)} GiB  (target <= 2 GB); ratio to chain: ${(one.rss / chainRss).toFixed(2)}`);
if (!("keep" in args)) for (const p of [outOne, outF16, chainOut]) rmSync(p, { recursive: true, force: true });
