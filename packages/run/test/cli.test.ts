// The built CLI (`npm run build` first) as a child process: what goes to stdout and stderr,
// piped chat, the benchmark's JSON, and bad input (one `error:` line, no stack, exit 1 or 2).
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertFixture, expectCleanFailure, makeTempDir, removeTempDir, runCli, THREADS } from "./helpers.js";
import { LLAMA_GREEDY } from "./reference/greedy.js";

let tmp: string;
let llama: string; // artifact directory
let llamaGguf: string;
let qwenGguf: string;
const T = ["--threads", String(THREADS)];

beforeAll(async () => {
  tmp = await makeTempDir();
  const l = await convertFixture("llama-tiny", tmp);
  llama = l.dir;
  llamaGguf = l.gguf;
  qwenGguf = (await convertFixture("qwen3-tiny", tmp)).gguf;
});
afterAll(() => removeTempDir(tmp));

describe("generate", () => {
  // Flash attention off, as in the llama.cpp reference (see reference/greedy.ts).
  const args = ["generate", "-m", "", "-n", String(LLAMA_GREEDY.tokens.length), "--temperature", "0", "--flash-attn", "off", ...T];
  it("writes only the generated text to stdout and the speed to stderr", async () => {
    args[2] = llama;
    const r = await runCli([...args, "--prompt", LLAMA_GREEDY.prompt]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(LLAMA_GREEDY.text);
    expect(r.stderr).toMatch(/^\[5 prompt tokens, 32 generated; prompt [\d.]+ tok\/s, generation [\d.]+ tok\/s; finish: length\]\n$/);
  });

  it("reads the prompt from stdin with --prompt -", async () => {
    const r = await runCli([...args, "--prompt", "-"], { stdin: LLAMA_GREEDY.prompt });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(LLAMA_GREEDY.text);
  });
});

describe("chat", () => {
  it("takes one turn per piped line, and /reset and /exit", async () => {
    const r = await runCli(["chat", "-m", qwenGguf, "--system", "Be brief.", "-n", "8", "--temperature", "0", ...T], {
      stdin: "Hi there\n/reset\nHi there\n/exit\nthis line is never read\n",
    });
    expect(r.code, r.stderr).toBe(0);
    // /reset forgets the first exchange, so greedy answers the same question the same way twice.
    const half = r.stdout.length / 2;
    expect(r.stdout.length).toBeGreaterThan(2);
    expect(r.stdout.slice(0, half)).toBe(r.stdout.slice(half));
    expect(r.stdout.endsWith("\n")).toBe(true);
  });

  it("refuses a model without a chat template before reading anything", async () => {
    expectCleanFailure(await runCli(["chat", "-m", llama, ...T], { stdin: "hi\n" }), "llama-tiny has no chat template");
  });
});

describe("benchmark", () => {
  it("prints one JSON object of the documented shape", async () => {
    const r = await runCli(["benchmark", "-m", llamaGguf, "--prompt-tokens", "64", "--num-tokens", "16", "--repeats", "2", "--json", ...T]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    // The shape, plus generationThreads (tg's thread count, which can differ from pp's).
    expect(Object.keys(j)).toEqual(["backend", "model", "threads", "generationThreads", "pp", "tg", "loadSeconds", "peakRssBytes"]);
    expect(j).toMatchObject({ backend: "cpu", model: "llama-tiny-q8_0.gguf", threads: THREADS, generationThreads: THREADS });
    for (const [test, n] of [["pp", 64], ["tg", 16]] as const) {
      expect(Object.keys(j[test])).toEqual(["tokens", "tokensPerSecond", "stddev"]);
      expect(j[test].tokens).toBe(n);
      expect(j[test].tokensPerSecond).toBeGreaterThan(0);
      expect(j[test].stddev).toBeGreaterThanOrEqual(0);
    }
    expect(j.loadSeconds).toBeGreaterThan(0);
    expect(j.peakRssBytes).toBeGreaterThan(10 * 2 ** 20);
  });

  it("prints a llama-bench-like table; --prompt-tokens 0 skips pp", async () => {
    const r = await runCli(["benchmark", "-m", llama, "--prompt-tokens", "0", "--num-tokens", "8", "--repeats", "1", ...T]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\| model +\| +size \| params \| backend \| threads \| +test \| +t\/s \|\n/);
    expect(r.stdout).toMatch(/\| llama-tiny Q8_0 \| .* \| CPU +\| +1 \| +tg8 \| +[\d.]+ ± [\d.]+ \|/);
    expect(r.stdout).not.toContain("pp");
    expect(r.stdout).toMatch(/load time [\d.]+ s, peak RSS [\d.]+ MiB/);
  });
});

describe("bad input: a clear message, non-zero exit, no stack trace", () => {
  const gen = (model: string, ...more: string[]) => runCli(["generate", "-m", model, "--prompt", "hi", "-n", "2", ...T, ...more]);

  it("a missing file", async () => {
    expectCleanFailure(await gen(join(tmp, "missing.gguf")), /model not found: .*missing\.gguf does not exist/);
  });

  it("a file that is not GGUF", async () => {
    const f = join(tmp, "readme.gguf");
    await writeFile(f, "# not a model\n");
    expectCleanFailure(await gen(f), /readme\.gguf is not a GGUF file \(it starts with "# no", expected "GGUF"\)/);
  });

  it("a truncated GGUF, in its data or in its header", async () => {
    const bytes = await readFile(llamaGguf);
    const data = join(tmp, "truncated.gguf");
    await writeFile(data, bytes.subarray(0, bytes.length >> 1));
    expectCleanFailure(await gen(data), /cannot load .*truncated\.gguf: .*data is not within the file bounds, model is corrupted or incomplete/);
    const header = join(tmp, "truncated-header.gguf");
    await writeFile(header, bytes.subarray(0, 2000));
    expectCleanFailure(await gen(header), /cannot load .*truncated-header\.gguf: .*failed to read/);
  });

  it("a manifest with a path outside its directory", async () => {
    const dir = join(tmp, "escaping");
    await cp(llama, dir, { recursive: true });
    const m = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
    m.formats[0].path = "../../etc/passwd";
    await writeFile(join(dir, "manifest.json"), JSON.stringify(m));
    expectCleanFailure(await gen(dir), /"\.\.\/\.\.\/etc\/passwd" points outside the artifact directory/);
  });

  it("an artifact that needs another runtime version", async () => {
    const dir = join(tmp, "future");
    await cp(llama, dir, { recursive: true });
    const m = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
    m.runtime_requirements = { "llama-pajamas-run": ">=2.0.0" };
    await writeFile(join(dir, "manifest.json"), JSON.stringify(m));
    expectCleanFailure(await gen(dir), "this artifact needs llama-pajamas-run >=2.0.0, but llama-pajamas-run is 0.1.0");
  });

  it("an unknown backend (usage error, exit 2) and unavailable ones (exit 1)", async () => {
    expectCleanFailure(await gen(llama, "--backend", "tpu"), 'unknown backend "tpu"; backends: auto, cpu, cuda, vulkan, metal, mlx', 2);
    expectCleanFailure(await gen(llama, "--backend", "cuda"), /backend cuda is not available: .*; available backends: cpu/);
    expectCleanFailure(await gen(llama, "--backend", "mlx"), /backend mlx is not available: .*available backends: cpu/);
  });

  it("a prompt longer than the context, saying how long both are", async () => {
    // llama.cpp rounds the context up to a multiple of 256; the message gives the real size.
    const r = await runCli(["generate", "-m", llama, "--prompt", "-", "--ctx-size", "256", ...T], { stdin: "word ".repeat(300) });
    expectCleanFailure(r, /the prompt is 30\d tokens, but the context holds 256 \(--ctx-size\), which leaves room for prompts of up to 255/);
  });

  it("missing or malformed flags (exit 2)", async () => {
    expectCleanFailure(await runCli(["generate", "--prompt", "hi"]), "--model is required", 2);
    expectCleanFailure(await runCli(["generate", "-m", llama]), "--prompt is required", 2);
    expectCleanFailure(await runCli(["generate", "-m", llama, "--prompt", "hi", "--max-tokens", "lots"]), '--max-tokens must be an integer >= 1, got "lots"', 2);
    expectCleanFailure(await runCli(["benchmark", "-m", llama, "--repeats", "0"]), "--repeats must be an integer >= 1", 2);
    expectCleanFailure(await runCli(["serve"]), "--model is required", 2);
    expectCleanFailure(await runCli(["serve", "-m", llama, "--port", "70000"]), "--port must be at most 65535, got 70000", 2);
    expectCleanFailure(await runCli(["nope"]), 'unknown command "nope"', 2);
  });
});
