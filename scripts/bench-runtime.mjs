#!/usr/bin/env node
// npm run bench:runtime -- [--model FILE.gguf] [--llama-bench PATH] [--rounds 5] [--repeats 5]
//                          [--prompt-tokens 512] [--gen-tokens 128] [--dir /tmp/lp-bench-runtime]
//                          [--backend cpu|cuda] [--ngl N]
//
// Same GGUF, CPU: our `llama-pajamas-run benchmark` at its own default threads against
// llama.cpp's llama-bench at its best thread count (it runs -t 1,2,...,cores; the fastest count
// per test is its result). pp (prompt tokens in one batch) and tg (tokens decoded one at a
// time), printed with ours/llama-bench ratios; target >= 0.97 (issue 3).
//
// --backend cuda: the same comparison on an NVIDIA GPU: ours with `--backend cuda` (its default
// --gpu-layers, auto), llama-bench (a CUDA build of the same llama.cpp source) with its default
// threads and all layers offloaded (-ngl 99). --ngl N passes N to both (ours as --gpu-layers).
// Our load time is printed too (llama-bench reports none).
//
// Each round runs both tools back to back (alternating which goes first) and measures how
// much CPU other processes used meanwhile; medians are over the rounds with no other load when
// at least half of them had none, else over all rounds (said in the output). The model
// defaults to models/llama-tiny converted to Q4_K_M by our pipeline (made once in --dir).
//
// llama-bench is not part of this repo: build it from the llama.cpp source node-llama-cpp
// ships (same release as the runtime's binaries); the script prints how when it is missing.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const int = (name, dflt) => {
  const v = Number(args[name] ?? dflt);
  if (!Number.isInteger(v) || v < 0) fail(`--${name} must be a whole number, got ${args[name]}`);
  return v;
};
const rounds = Math.max(1, int("rounds", 5));
const repeats = Math.max(1, int("repeats", 5));
const promptTokens = int("prompt-tokens", 512);
const genTokens = int("gen-tokens", 128);
const dir = resolve(args.dir ?? process.env.LP_BENCH_DIR ?? "/tmp/lp-bench-runtime");
const backend = args.backend ?? "cpu";
if (backend !== "cpu" && backend !== "cuda") fail(`--backend must be cpu or cuda, got ${args.backend}`);
const ngl = args.ngl === undefined ? undefined : int("ngl", 0);
const llamaBench = resolve(args["llama-bench"] ?? process.env.LLAMA_BENCH ?? "/work/llama-build/bin/llama-bench");
/** Another process's CPU use during a round above this (in CPUs) marks the round as loaded. */
const MAX_OTHER_LOAD = 0.1;
const TARGET = 0.97;

const runCli = join(root, "packages/run/dist/cli/main.js");
const quantCli = join(root, "packages/quant/dist/cli/main.js");
const bundle = join(root, "node_modules/node-llama-cpp/llama/gitRelease.bundle");

function fail(message) {
  console.error(message);
  process.exit(1);
}

if (!existsSync(runCli) || !existsSync(quantCli)) fail("build first: npm run build");
if (!existsSync(llamaBench)) {
  fail(`llama-bench not found at ${llamaBench}; build it from the llama.cpp source node-llama-cpp ships
(the release its binaries were built from), outside this repo, then point to it with
--llama-bench PATH or LLAMA_BENCH=PATH:

  git clone ${bundle} /work/llama.cpp
  cmake -S /work/llama.cpp -B /work/llama-build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
  cmake --build /work/llama-build --target llama-bench -j
  # -> /work/llama-build/bin/llama-bench (the default path)`);
}

let model = args.model === undefined ? undefined : resolve(args.model);
if (model === undefined) {
  const out = join(dir, "llama-tiny");
  model = join(out, "gguf", "llama-tiny-q4_k_m.gguf");
  if (!existsSync(model)) {
    mkdirSync(dir, { recursive: true });
    console.error(`converting models/llama-tiny to Q4_K_M in ${out} (once)...`);
    const r = spawnSync(process.execPath, [quantCli, "convert", "--model", join(root, "models/llama-tiny"), "--output", out, "--formats", "gguf", "--precision", "q4_k_m", "--force", "--quiet"], { stdio: "inherit" });
    if (r.status !== 0) fail("the conversion failed");
  }
}
if (!existsSync(model)) fail(`model not found: ${model}`);

const cores = availableParallelism();
// llama-bench's thread counts: every count on a small machine, powers of two and all cores on a large one.
// On a GPU (everything offloaded) the CPU threads hardly matter: llama-bench's default count.
const benchThreads =
  backend !== "cpu" ? [] : cores <= 8 ? Array.from({ length: cores }, (_, i) => i + 1) : [...new Set([1, 2, 4, 8, 16, 32, 64, 128].filter((t) => t < cores).concat(cores))];

/** CPU seconds used so far: by the whole machine (/proc/stat), and by this process and its finished children (/proc/self/stat). */
function cpuSeconds() {
  try {
    const hz = 100; // USER_HZ, 100 on Linux
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]; // user nice system irq softirq
    const self = readFileSync("/proc/self/stat", "utf8");
    const f = self.slice(self.lastIndexOf(")") + 2).split(" ").map(Number); // fields from 3 (state) on
    const mine = f[11] + f[12] + f[13] + f[14]; // utime stime cutime cstime
    return { machine: busy / hz, mine: mine / hz };
  } catch {
    return undefined; // not Linux: no load figure
  }
}

function run(cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) fail(`${cmd} ${cmdArgs.join(" ")} failed (exit ${r.status}):\n${r.stderr}`);
  return r.stdout;
}

function ours() {
  const gpu = ngl === undefined ? [] : ["--gpu-layers", String(ngl)];
  const j = JSON.parse(run(process.execPath, [runCli, "benchmark", "-m", model, "--backend", backend, ...gpu, "--prompt-tokens", String(promptTokens), "--num-tokens", String(genTokens), "--repeats", String(repeats), "--json"]));
  return { pp: j.pp?.tokensPerSecond ?? NaN, tg: j.tg?.tokensPerSecond ?? NaN, ppThreads: j.threads, tgThreads: j.generationThreads ?? j.threads, loadSeconds: j.loadSeconds };
}

function reference() {
  const where = backend === "cpu" ? ["-t", benchThreads.join(",")] : ["-ngl", String(ngl ?? 99)];
  const rows = JSON.parse(run(llamaBench, ["-m", model, ...where, "-p", String(promptTokens), "-n", String(genTokens), "-r", String(repeats), "-o", "json"]));
  const best = (pick) => rows.filter(pick).reduce((b, r) => (r.avg_ts > (b?.avg_ts ?? -1) ? r : b), undefined);
  const pp = best((r) => r.n_prompt > 0 && r.n_gen === 0);
  const tg = best((r) => r.n_gen > 0 && r.n_prompt === 0);
  return { pp: pp?.avg_ts ?? NaN, tg: tg?.avg_ts ?? NaN, ppThreads: pp?.n_threads, tgThreads: tg?.n_threads };
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mode = (xs) => [...xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map())].sort((a, b) => b[1] - a[1])[0]?.[0];
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const fmt2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : "-");

/** The GPU's name, as nvidia-smi gives it (cuda only). */
function gpuName() {
  const r = spawnSync("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim().split("\n")[0] : "unknown GPU";
}
const where = backend === "cpu" ? `CPU, ${cores} cores` : `CUDA, ${gpuName()} (${cores} CPU cores)`;
const refArgs = backend === "cpu" ? `-t ${benchThreads.join(",")}` : `-ngl ${ngl ?? 99}, default threads`;
const ourArgs = backend === "cpu" ? "default threads" : `--backend cuda${ngl === undefined ? "" : ` --gpu-layers ${ngl}`}`;
console.error(`model ${model}\nllama-bench ${llamaBench} (${refArgs}), ours: ${ourArgs}; ${rounds} rounds of ${repeats} repeats`);
const results = [];
for (let i = 0; i < rounds; i++) {
  const before = cpuSeconds();
  const t0 = performance.now();
  const pair = i % 2 === 0 ? { ours: ours(), ref: reference() } : { ref: reference(), ours: ours() };
  const wallS = (performance.now() - t0) / 1000;
  const after = cpuSeconds();
  const otherLoad = before && after ? Math.max(0, after.machine - before.machine - (after.mine - before.mine)) / wallS : NaN;
  results.push({ ...pair, otherLoad });
  console.error(
    `round ${i + 1}: ours pp ${fmt(pair.ours.pp)} tg ${fmt(pair.ours.tg)} load ${fmt2(pair.ours.loadSeconds)} s | llama-bench pp ${fmt(pair.ref.pp)} (t${pair.ref.ppThreads}) tg ${fmt(pair.ref.tg)} (t${pair.ref.tgThreads}) | other load ${Number.isFinite(otherLoad) ? otherLoad.toFixed(2) : "?"} CPUs`,
  );
}

const quiet = results.filter((r) => r.otherLoad <= MAX_OTHER_LOAD);
const used = quiet.length * 2 >= results.length ? quiet : results;
const which = used === quiet ? `${quiet.length} of ${results.length} rounds without other load` : `all ${results.length} rounds (only ${quiet.length} without other load; figures are noisy)`;
console.log(`\nllama-pajamas-run benchmark vs llama-bench, ${where}; ${model}`);
console.log(`medians over ${which}\n`);
console.log("| test | ours t/s | ours threads | llama-bench t/s | llama-bench best threads | ratio | target |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
for (const [test, n] of [["pp", promptTokens], ["tg", genTokens]]) {
  if (n === 0) continue;
  const o = median(used.map((r) => r.ours[test]));
  const b = median(used.map((r) => r.ref[test]));
  // The ratio of each round (both tools under the same conditions), then the median.
  const ratio = median(used.map((r) => r.ours[test] / r.ref[test]));
  const threads = (side) => mode(used.map((r) => r[side][`${test}Threads`]));
  console.log(`| ${test}${n} | ${fmt(o)} | ${threads("ours")} | ${fmt(b)} | ${threads("ref")} | ${ratio.toFixed(2)} | ${ratio >= TARGET ? "ok" : "below"} ${TARGET} |`);
}
console.log(`\nours: load ${fmt2(median(used.map((r) => r.ours.loadSeconds)))} s (median; llama-bench reports no load time)`);
