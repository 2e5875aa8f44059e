// Shared by the runtime tests: fixture paths, GGUFs made by the pipeline (tests may use it;
// the runtime's source never does), and the built CLI as a child process.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { convert } from "../../quant/src/pipeline.js";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
export const FIXTURES = join(REPO_ROOT, "..", "shared", "fixtures", "models");
export const CLI = join(REPO_ROOT, "packages", "run", "dist", "cli", "main.js");
/** One thread: this machine has two cores shared with other work, and decode with 2 threads stalls. */
export const THREADS = 1;

export async function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "lp-run-test-"));
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Converts a fixture to an artifact directory (manifest.json + gguf/) with the pipeline. */
export async function convertFixture(name: string, outDir: string, precisions: string[] = ["q8_0"]): Promise<{ dir: string; gguf: string }> {
  const r = await convert({ model: join(FIXTURES, name), output: join(outDir, name), precisions, force: true, threads: 1 });
  return { dir: r.outputDir, gguf: r.ggufPath };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  return new Promise((resolvePromise, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 90_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(opts.stdin ?? "");
  });
}

/** A bad-input run: the exit code, one `error:` line matching `message`, no stack trace, nothing on stdout. */
export function expectCleanFailure(r: CliResult, message: RegExp | string, code = 1): void {
  const context = `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  expect(r.code, context).toBe(code);
  expect(r.stderr, context).toMatch(/^error: /);
  if (typeof message === "string") expect(r.stderr, context).toContain(message);
  else expect(r.stderr, context).toMatch(message);
  expect(r.stderr, "stack trace in stderr").not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toContain("internal error");
  expect(r.stdout).toBe("");
}
