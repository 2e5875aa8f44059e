#!/usr/bin/env node
// npm run bench:server -- [--model FILE.gguf] [--llama-server PATH] [--clients 1,4,8,16] [--seconds 20] [--rounds 1]
//                         [--slots 8] [--ctx-size 512] [--max-tokens 64] [--threads N] [--json FILE]
// npm run bench:server -- --soak [--minutes 10] [--soak-clients 64] [--disconnect-rate 0.25]
//
// N concurrent streaming chat clients for a fixed time against `llama-pajamas-run serve` and
// against llama.cpp's `llama-server` (built from the llama.cpp source in node-llama-cpp's
// package, outside this repo: give its path with --llama-server or LLAMA_SERVER), one server at
// a time, same GGUF, same slot count and per-slot context, same threads. Per client count:
// aggregate generated tokens/s, time to first token p50/p95, errors. Targets (issue 4): at 8
// streams aggregate >= 1.0x llama-server's, TTFT p50 within +5 ms, 0 errors.
//
// --soak runs only our server: 64 streaming clients for 10+ minutes, a share of them hanging up
// mid-stream; it reports server errors (5xx, error events, error lines in its log) and the
// drift of the server's RSS between the first and the last minute (target < 5%).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};

const soak = flag("soak");
const slots = Number(arg("slots", "8"));
const ctxSize = Number(arg("ctx-size", "512"));
const maxTokens = Number(arg("max-tokens", "64"));
const threads = Number(arg("threads", String(Math.max(1, availableParallelism() - 1))));
const seconds = Number(arg("seconds", "20"));
const clientCounts = arg("clients", "1,4,8,16").split(",").map(Number);
const rounds = Number(arg("rounds", "1"));
const llamaServer = arg("llama-server", process.env.LLAMA_SERVER);
const jsonOut = arg("json", undefined);
const dir = resolve(arg("dir", process.env.LP_BENCH_DIR ?? "/tmp/lp-bench-server"));
const cli = join(root, "packages/run/dist/cli/main.js");
const quantCli = join(root, "packages/quant/dist/cli/main.js");

if (!existsSync(cli)) fail("build first: npm run build");

/** The GGUF both servers load: --model, else the qwen3-tiny fixture converted once (Q8_0). */
function modelFile() {
  const given = arg("model", undefined);
  if (given !== undefined) return resolve(given);
  const out = join(dir, "qwen3-tiny");
  const gguf = join(out, "gguf", "qwen3-tiny-q8_0.gguf");
  if (!existsSync(gguf)) {
    const fixture = join(root, "..", "shared", "fixtures", "models", "qwen3-tiny");
    if (!existsSync(fixture)) fail(`no --model given and no fixture at ${fixture}`);
    mkdirSync(dir, { recursive: true });
    console.error(`converting ${fixture} -> ${out} (once)`);
    execFileSync(process.execPath, [quantCli, "convert", "--model", fixture, "--output", out, "--formats", "gguf", "--precision", "q8_0", "--force", "--quiet"], { stdio: "inherit" });
  }
  return gguf;
}

function fail(message) {
  console.error(`bench-server: ${message}`);
  process.exit(1);
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts a server process; resolves once /health answers 200. */
async function startServer(target, gguf) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const [cmd, args] =
    target === "ours"
      ? [process.execPath, [cli, "serve", "--model", gguf, "--host", "127.0.0.1", "--port", String(port), "--parallel", String(slots), "--ctx-size", String(ctxSize), "--threads", String(threads)]]
      : // llama-server's -c is the total over its slots; without a unified KV cache each slot gets c / np.
        [llamaServer, ["-m", gguf, "--host", "127.0.0.1", "--port", String(port), "-np", String(slots), "-c", String(ctxSize * slots), "--no-kv-unified", "-t", String(threads)]];
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.setEncoding("utf8").on("data", (d) => (log = (log + d).slice(-200_000)));
  const exited = new Promise((r) => child.on("close", (code, signal) => r({ code, signal })));
  const until = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) fail(`${target} exited while starting:\n${log.slice(-2000)}`);
    try {
      if ((await fetch(`${url}/health`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) fail(`${target} did not become healthy in 120 s:\n${log.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    target,
    url,
    pid: child.pid,
    log: () => log,
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };
}

const TOPICS = ["the sea", "a city", "the sky", "a forest", "a robot", "the moon", "a river", "a cat", "a train", "the rain", "a song", "a garden"];
let requestCounter = 0;

/**
 * One streaming chat request. Resolves with {ttftMs, tokens, error}; `hangUpAfter` chunks
 * (soak) aborts it mid-stream, which is not an error.
 */
async function streamOnce(url, { hangUpAfter } = {}) {
  const n = requestCounter++;
  const controller = new AbortController();
  const t0 = performance.now();
  let ttftMs;
  let tokens = 0;
  let chunks = 0;
  try {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      signal: controller.signal,
      body: JSON.stringify({
        messages: [{ role: "user", content: `Request ${n}: tell me about ${TOPICS[n % TOPICS.length]}.` }],
        max_tokens: maxTokens,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (r.status !== 200) return { error: `HTTP ${r.status}: ${(await r.text()).slice(0, 200)}`, status: r.status };
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let i;
      while ((i = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const data = JSON.parse(event.slice(6));
        if (data.error) return { error: `error event: ${JSON.stringify(data.error).slice(0, 200)}`, status: 500 };
        if (data.choices?.[0]?.delta?.content) {
          ttftMs ??= performance.now() - t0;
          chunks++;
          if (hangUpAfter !== undefined && chunks >= hangUpAfter) {
            controller.abort();
            return { ttftMs, tokens: chunks, hungUp: true };
          }
        }
        if (data.usage) tokens = data.usage.completion_tokens;
      }
    }
    return { ttftMs, tokens };
  } catch (e) {
    return { error: `${e.name}: ${e.message}${e.cause ? ` (${e.cause.message ?? e.cause})` : ""}`, status: 0 };
  }
}

const percentile = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** `clients` workers, each sending streaming requests back to back until `seconds` pass. */
async function load(url, clients, durationS) {
  const deadline = performance.now() + durationS * 1000;
  const results = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) results.push(await streamOnce(url));
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const ok = results.filter((r) => r.error === undefined);
  const tokens = ok.reduce((n, r) => n + r.tokens, 0);
  const ttfts = ok.map((r) => r.ttftMs).filter((x) => x !== undefined);
  const errors = results.filter((r) => r.error !== undefined);
  return {
    clients,
    requests: results.length,
    tokens,
    elapsedS,
    tokensPerSecond: tokens / elapsedS,
    ttftP50Ms: percentile(ttfts, 50),
    ttftP95Ms: percentile(ttfts, 95),
    errors: errors.length,
    firstError: errors[0]?.error,
  };
}

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function bench(gguf) {
  const targets = ["ours"];
  if (llamaServer !== undefined && existsSync(llamaServer)) targets.push("llama-server");
  else console.error(`llama-server not found (give --llama-server PATH or LLAMA_SERVER); measuring ours only`);
  const out = { model: gguf, slots, ctxSize, maxTokens, threads, seconds, rounds, results: {}, runs: {} };
  // Rounds alternate the servers (ours, llama-server, ours, ...): a shared machine's speed drifts
  // between runs, so each point is the median over rounds.
  for (let round = 1; round <= rounds; round++) {
    for (const target of targets) {
      const server = await startServer(target, gguf);
      console.error(`${rounds > 1 ? `round ${round}/${rounds}: ` : ""}${target}: ${server.url}`);
      await streamOnce(server.url); // warm-up
      out.runs[target] ??= clientCounts.map(() => []);
      for (const [i, clients] of clientCounts.entries()) {
        const r = await load(server.url, clients, seconds);
        out.runs[target][i].push(r);
        console.error(
          `  ${String(clients).padStart(3)} streams: ${r.tokensPerSecond.toFixed(1).padStart(7)} tok/s, TTFT p50 ${r.ttftP50Ms.toFixed(1)} ms, p95 ${r.ttftP95Ms.toFixed(1)} ms, ${r.requests} requests, ${r.errors} errors${r.firstError ? ` (${r.firstError})` : ""}`,
        );
      }
      const { code } = await server.stop();
      if (code !== 0) console.error(`  ${target} exited with ${code} on SIGTERM`);
    }
  }
  const median = (xs) => percentile(xs, 50);
  for (const target of targets) {
    out.results[target] = out.runs[target].map((runs, i) => ({
      clients: clientCounts[i],
      requests: runs.reduce((n, r) => n + r.requests, 0),
      tokensPerSecond: median(runs.map((r) => r.tokensPerSecond)),
      ttftP50Ms: median(runs.map((r) => r.ttftP50Ms)),
      ttftP95Ms: median(runs.map((r) => r.ttftP95Ms)),
      errors: runs.reduce((n, r) => n + r.errors, 0),
    }));
  }
  console.log(`\nmodel ${gguf}; ${slots} slots x ${ctxSize} tokens, ${threads} threads, max_tokens ${maxTokens}, ${seconds} s per point${rounds > 1 ? `, medians over ${rounds} alternating rounds` : ""}`);
  console.log("streams | ours tok/s | llama-server tok/s | ratio | ours TTFT p50/p95 ms | llama-server TTFT p50/p95 ms | errors ours/llama");
  for (const [i, clients] of clientCounts.entries()) {
    const a = out.results.ours[i];
    const b = out.results["llama-server"]?.[i];
    const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");
    console.log(
      `${String(clients).padStart(7)} | ${f(a.tokensPerSecond).padStart(10)} | ${(b ? f(b.tokensPerSecond) : "-").padStart(18)} | ${b ? (a.tokensPerSecond / b.tokensPerSecond).toFixed(2) + "x" : "-"} | ${f(a.ttftP50Ms)}/${f(a.ttftP95Ms)} | ${b ? `${f(b.ttftP50Ms)}/${f(b.ttftP95Ms)}` : "-"} | ${a.errors}/${b ? b.errors : "-"}`,
    );
  }
  const at8 = clientCounts.indexOf(8);
  if (at8 >= 0 && out.results["llama-server"]) {
    const a = out.results.ours[at8];
    const b = out.results["llama-server"][at8];
    out.targets = {
      aggregateRatioAt8: a.tokensPerSecond / b.tokensPerSecond,
      ttftP50DeltaMsAt8: a.ttftP50Ms - b.ttftP50Ms,
      errors: out.results.ours.reduce((n, r) => n + r.errors, 0),
    };
    console.log(
      `\ntargets at 8 streams: aggregate ${out.targets.aggregateRatioAt8.toFixed(2)}x (>= 1.0x: ${out.targets.aggregateRatioAt8 >= 1 ? "met" : "NOT met"}), ` +
        `TTFT p50 ${out.targets.ttftP50DeltaMsAt8 >= 0 ? "+" : ""}${out.targets.ttftP50DeltaMsAt8.toFixed(1)} ms (<= +5 ms: ${out.targets.ttftP50DeltaMsAt8 <= 5 ? "met" : "NOT met"}), ` +
        `errors ${out.targets.errors} (0: ${out.targets.errors === 0 ? "met" : "NOT met"})`,
    );
  }
  return out;
}

async function soakRun(gguf) {
  const minutes = Number(arg("minutes", "10"));
  const clients = Number(arg("soak-clients", "64"));
  const disconnectRate = Number(arg("disconnect-rate", "0.25"));
  const server = await startServer("ours", gguf);
  console.error(`soak: ${clients} streams for ${minutes} min against ${server.url}, ${Math.round(disconnectRate * 100)}% hang up mid-stream`);
  const deadline = performance.now() + minutes * 60_000;
  const samples = [];
  const sampler = setInterval(() => samples.push({ atS: performance.now() / 1000, rss: rssBytes(server.pid) }), 5000);
  const counts = { requests: 0, completed: 0, hungUp: 0, serverErrors: 0, clientErrors: 0, tokens: 0 };
  const errors = [];
  let lastReport = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let k = 0;
      while (performance.now() < deadline) {
        // A deterministic share of requests hang up after a few chunks.
        const hangUp = (c * 7919 + k++ * 104729) % 1000 < disconnectRate * 1000;
        const r = await streamOnce(server.url, hangUp ? { hangUpAfter: 1 + (k % 5) } : {});
        counts.requests++;
        if (r.hungUp) counts.hungUp++;
        else if (r.error === undefined) {
          counts.completed++;
          counts.tokens += r.tokens;
        } else if (r.status >= 500 || r.status === 0) {
          counts.serverErrors++;
          if (errors.length < 5) errors.push(r.error);
        } else {
          counts.clientErrors++;
          if (errors.length < 5) errors.push(r.error);
        }
        if (performance.now() - lastReport > 60_000) {
          lastReport = performance.now();
          console.error(`  ${new Date().toISOString()} ${JSON.stringify(counts)} rss ${(rssBytes(server.pid) / 2 ** 20).toFixed(1)} MiB`);
        }
      }
    }),
  );
  clearInterval(sampler);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const running = Number(/^llamapajamas_requests_running (\d+)/m.exec(metrics)?.[1] ?? NaN);
  const { code } = await server.stop();
  const logErrors = server
    .log()
    .split("\n")
    .filter((l) => l.startsWith("error:"));
  // Drift: mean RSS over the first minute after a minute of warm-up, against the last minute's.
  const t0 = samples[0]?.atS ?? 0;
  const window = (from, to) => samples.filter((s) => s.atS - t0 >= from && s.atS - t0 < to).map((s) => s.rss);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const totalS = (samples.at(-1)?.atS ?? t0) - t0;
  const warm = Math.min(60, totalS / 4);
  const early = mean(window(warm, warm + Math.min(60, totalS / 4)));
  const late = mean(window(totalS - Math.min(60, totalS / 4), totalS + 1));
  const drift = (late - early) / early;
  const out = { minutes, clients, disconnectRate, ...counts, serverLogErrors: logErrors.length, runningAfter: running, exitCode: code, rssEarlyMiB: early / 2 ** 20, rssLateMiB: late / 2 ** 20, rssDrift: drift, errors };
  console.log(`\nsoak: ${JSON.stringify(out, null, 2)}`);
  const serverErrors = counts.serverErrors + logErrors.length;
  console.log(`targets: server errors ${serverErrors} (0: ${serverErrors === 0 ? "met" : "NOT met"}), RSS drift ${(drift * 100).toFixed(2)}% (growth < 5%: ${drift < 0.05 ? "met" : "NOT met"})`);
  return out;
}

const gguf = modelFile();
const result = soak ? await soakRun(gguf) : await bench(gguf);
if (jsonOut !== undefined) writeFileSync(jsonOut, JSON.stringify(result, null, 2) + "\n");
