#!/usr/bin/env node
// npm run bench:validate -- [--model qwen3-tiny] [--method f16] [--chunks 16] [--ctx 512]
//                           [--threads N] [--repeat 3] [--text FILE] [--llama-perplexity PATH]
//                           [--overlap on|off]
//
// Perplexity throughput, ours vs llama.cpp's llama-perplexity, on the same GGUF file, text,
// context, chunks and threads, in the same run (alternating, best of --repeat each, since a
// shared machine's load moves single runs a lot):
//   ours:      validation/perplexity.ts through libllama (node-llama-cpp's build), koffi
//   reference: llama-perplexity -m FILE -f TEXT -c CTX --chunks N -t THREADS
// Both timings cover evaluation only (from the first decode to the final estimate: model load
// and tokenization excluded; llama-perplexity's from its log timestamps). Tokens/s = chunks *
// ctx / seconds. Target (issue 6): ours / llama-perplexity >= 0.9. The GGUF is our conversion of
// the fixture (--model: a folder under shared/fixtures/models, or any HF checkpoint dir).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const fixtures = resolve(root, "..", "shared", "fixtures");
const model = args.model ?? "qwen3-tiny";
const modelDir = existsSync(model) ? resolve(model) : join(fixtures, "models", model);
const method = (args.method ?? "f16").toLowerCase();
const chunks = Number(args.chunks ?? 16);
const ctx = Number(args.ctx ?? 512);
const threads = Number(args.threads ?? availableParallelism());
const repeat = Number(args.repeat ?? 3);
const overlap = args.overlap === undefined ? undefined : args.overlap !== "off";
const text = resolve(args.text ?? join(fixtures, "text", "eval.txt"));
const candidates = [args["llama-perplexity"], process.env.LLAMA_PERPLEXITY, resolve(root, "..", "llama-build", "bin", "llama-perplexity")];
const llamaPerplexity = candidates.find((p) => p && existsSync(p)) ?? "llama-perplexity";
const dist = join(root, "packages/quant/dist");

if (!existsSync(join(dist, "validation/perplexity.js"))) {
  console.error("build first: npm run build");
  process.exit(1);
}
const { convert } = await import(join(dist, "pipeline.js"));
const { perplexity } = await import(join(dist, "validation/perplexity.js"));
const { EngineModel } = await import(join(dist, "quantize/native.js"));

const work = mkdtempSync(join(tmpdir(), "lp-bench-validate-"));
try {
  const name = basename(modelDir).toLowerCase();
  console.error(`converting ${modelDir} to ${method.toUpperCase()} ...`);
  const converted = await convert({ model: modelDir, output: join(work, name), precisions: [method], force: true });
  const gguf = converted.files[0].path;
  const textBytes = readFileSync(text);

  /** llama-perplexity's evaluation seconds: its log's timestamps from "calculating" to "Final estimate". */
  function runLlama(attempt = 1) {
    const r = spawnSync(llamaPerplexity, ["-m", gguf, "-f", text, "-c", String(ctx), "--chunks", String(chunks), "-t", String(threads)], {
      encoding: "utf8",
    });
    const log = `${r.stdout}\n${r.stderr}`;
    if (r.status !== 0 || r.error) {
      console.error(`${llamaPerplexity} failed (${r.error?.message ?? `exit ${r.status}`}); pass --llama-perplexity PATH\n${log.slice(-2000)}`);
      process.exit(1);
    }
    // common/log.cpp timestamps, min.sec.ms.us; a line may follow text without a newline
    const stamp = (what) => {
      const m = new RegExp(`(\\d+)\\.(\\d{2})\\.(\\d{3})\\.(\\d{3}) I ${what}`).exec(log);
      if (!m) return NaN;
      return Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) / 1e3 + Number(m[4]) / 1e6;
    };
    const seconds = stamp("Final estimate") - stamp("perplexity: calculating perplexity over");
    if (Number.isNaN(seconds)) {
      // its logger thread now and then loses the last lines at exit: run again
      if (attempt < 3) return runLlama(attempt + 1);
      throw new Error(`no timestamped "Final estimate" in llama-perplexity's log:\n${log.slice(-1500)}`);
    }
    const ppl = Number(/Final estimate: PPL = ([\d.]+)/.exec(log)?.[1]);
    return { seconds, ppl };
  }

  const loaded = EngineModel.load(gguf);
  async function runOurs() {
    const r = await perplexity(loaded, { text: textBytes, ctx, chunks, threads, overlap });
    return { seconds: r.seconds, ppl: r.perplexity };
  }

  const ours = [];
  const ref = [];
  for (let i = 0; i < repeat; i++) {
    console.error(`round ${i + 1}/${repeat}: llama-perplexity ...`);
    ref.push(runLlama());
    console.error(`round ${i + 1}/${repeat}: ours ...`);
    ours.push(await runOurs());
  }
  loaded.free();
  const tokens = chunks * ctx;
  const best = (runs) => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const o = best(ours);
  const l = best(ref);
  const tps = (r) => tokens / r.seconds;
  console.log(`\n${name} ${method.toUpperCase()}, ${chunks} chunks x ${ctx} tokens, ${threads} threads, best of ${repeat}`);
  console.log(`text: ${text}\n`);
  console.log("| | PPL | eval s (each run) | best tokens/s |\n|---|---:|---|---:|");
  console.log(`| llama-perplexity | ${l.ppl.toFixed(4)} | ${ref.map((r) => r.seconds.toFixed(2)).join(", ")} | ${tps(l).toFixed(0)} |`);
  console.log(`| ours | ${o.ppl.toFixed(4)} | ${ours.map((r) => r.seconds.toFixed(2)).join(", ")} | ${tps(o).toFixed(0)} |`);
  console.log(`\nPPL agreement: ${((o.ppl / l.ppl - 1) * 100).toFixed(4)} % (target within 0.1 %)`);
  console.log(`throughput ratio (ours / llama-perplexity): ${(tps(o) / tps(l)).toFixed(2)}  (target >= 0.90)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
