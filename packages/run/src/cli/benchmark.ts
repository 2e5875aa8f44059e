import { formatParamCount } from "@llama-pajamas/artifact";
import { DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS, DEFAULT_REPEATS, type BenchmarkResult, type SpeedStats } from "../benchmark.js";
import { Runtime } from "../runtime.js";
import { optionalInt, type Command } from "./args.js";
import { MODEL_OPTIONS, MODEL_USAGE, runtimeOptions, transcodeSummary } from "./common.js";

const usage = `Usage: llama-pajamas-run benchmark --model PATH [options]

Measures prompt processing (pp: N prompt tokens evaluated in batches) and generation (tg: N
tokens decoded one at a time, each with its logits, no sampling), each from an empty cache, as
llama-bench does: mean and standard deviation of tokens/s over the repeats, after one untimed
warm-up run. Also load time and the process's peak resident memory. pp runs with the prompt
threads and tg with the generation threads (the same count on every backend).
Prints a llama-bench-like table, or with --json one object: {backend, model, threads,
generationThreads, pp: {tokens, tokensPerSecond, stddev}, tg: {...}, loadSeconds,
peakRssBytes} (pp or tg is null when skipped).

Benchmark options:
  --prompt-tokens N   prompt tokens per pp run (default ${DEFAULT_PROMPT_TOKENS}; 0 skips pp)
  --num-tokens N      tokens per tg run (default ${DEFAULT_GEN_TOKENS}; 0 skips tg)
  --repeats N         timed runs of each test (default ${DEFAULT_REPEATS})
  --no-warmup         skip the untimed first run
  --json              print one JSON object instead of the table

${MODEL_USAGE}
  (the context defaults to the larger of --prompt-tokens and --num-tokens, plus one)`;

export const benchmarkCommand: Command = {
  name: "benchmark",
  summary: "prompt and generation tokens/s, load time, memory (llama-bench style)",
  usage,
  options: {
    ...MODEL_OPTIONS,
    "prompt-tokens": { type: "string" },
    "num-tokens": { type: "string" },
    repeats: { type: "string", short: "r" },
    "no-warmup": { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values) {
    const promptTokens = optionalInt(values, "prompt-tokens", 0) ?? DEFAULT_PROMPT_TOKENS;
    const genTokens = optionalInt(values, "num-tokens", 0) ?? DEFAULT_GEN_TOKENS;
    const repeats = optionalInt(values, "repeats") ?? DEFAULT_REPEATS;
    const options = runtimeOptions(values, usage, { mainThreadDecodes: true });
    // Like llama-bench (n_ctx = n_prompt + n_gen per test): a context just large enough, plus
    // the one cell node-llama-cpp keeps free.
    options.ctxSize ??= Math.max(promptTokens, genTokens) + 1;
    const runtime = await Runtime.load(options);
    transcodeSummary(runtime, values);
    try {
      const result = await runtime.benchmark({ promptTokens, genTokens, repeats, warmup: values["no-warmup"] !== true });
      if (values.json === true) {
        process.stdout.write(JSON.stringify(result) + "\n");
        return 0;
      }
      const label = `${result.model}${runtime.method ? ` ${runtime.method}` : ""}`;
      const info = runtime.info;
      process.stdout.write(table(result, label, info.sizeBytes, info.parameterCount));
      return 0;
    } finally {
      await runtime.unload();
    }
  },
};

/** llama-bench's markdown table (tools/llama-bench/llama-bench.cpp markdown_printer). */
function table(r: BenchmarkResult, label: string, sizeBytes: number, params: number): string {
  const header = ["model", "size", "params", "backend", "threads", "test", "t/s"];
  const right = [false, true, true, false, true, true, true];
  const row = (test: string, s: SpeedStats, threads: number) => [
    label,
    formatSize(sizeBytes),
    formatParamCount(params),
    r.backend.toUpperCase(),
    String(threads),
    test,
    `${s.tokensPerSecond.toFixed(2)} ± ${s.stddev.toFixed(2)}`,
  ];
  const rows: string[][] = [];
  if (r.pp) rows.push(row(`pp${r.pp.tokens}`, r.pp, r.threads));
  if (r.tg) rows.push(row(`tg${r.tg.tokens}`, r.tg, r.generationThreads));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const cell = (v: string, i: number) => (right[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!));
  const line = (cells: string[]) => `| ${cells.map(cell).join(" | ")} |\n`;
  const rule = `| ${widths.map((w, i) => (right[i] ? "-".repeat(w - 1) + ":" : "-".repeat(w))).join(" | ")} |\n`;
  return (
    line(header) +
    rule +
    rows.map(line).join("") +
    `\nload time ${r.loadSeconds.toFixed(2)} s, peak RSS ${formatSize(r.peakRssBytes)}\n`
  );
}

function formatSize(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : `${(bytes / 1024 ** 2).toFixed(2)} MiB`;
}
