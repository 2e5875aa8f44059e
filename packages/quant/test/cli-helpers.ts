// Helpers for the CLI tests: run the built CLI as a child process, make damaged copies of the
// fixture checkpoints, and check that a failed run left nothing behind.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { expect } from "vitest";
import { FIXTURES, REPO_ROOT } from "./helpers.js";

export { FIXTURES, REPO_ROOT };

/** The compiled entry point; `npm run build` must have run. */
export const CLI = join(REPO_ROOT, "packages", "quant", "dist", "cli", "main.js");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  child: ReturnType<typeof spawn>;
  done: Promise<CliResult>;
}

/**
 * Starts `node CLI ...args`. With `shell`, the command runs as `bash -c "<shell> node CLI ..."`,
 * so a test can set limits (ulimit) or ignore signals before node starts. With `user`, it runs
 * under setpriv as that uid/gid with no supplementary groups.
 */
export function startCli(args: string[], opts: { shell?: string; user?: number; timeoutMs?: number } = {}): CliRun {
  let cmd = process.execPath;
  let argv = [CLI, ...args];
  if (opts.shell !== undefined) {
    const quoted = argv.map(shellQuote).join(" ");
    argv = ["-c", `${opts.shell}\nexec ${shellQuote(cmd)} ${quoted}`];
    cmd = "bash";
  }
  if (opts.user !== undefined) {
    argv = [`--reuid=${opts.user}`, `--regid=${opts.user}`, "--clear-groups", cmd, ...argv];
    cmd = "setpriv";
  }
  // NO_COLOR and a non-TTY stderr keep the progress line off.
  const child = spawn(cmd, argv, { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  const done = new Promise<CliResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

export function runCli(args: string[], opts: { shell?: string; user?: number; timeoutMs?: number } = {}): Promise<CliResult> {
  return startCli(args, opts).done;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Whether `setpriv` can drop root here (it can't in some sandboxes). */
export function canDropPrivileges(): boolean {
  if (process.getuid?.() !== 0) return false;
  const r = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "true"], { stdio: "ignore" });
  return r.status === 0;
}

/** A bad-input run: exit 1, one `error:` message matching `message`, no stack trace, nothing on stdout. */
export function expectCleanFailure(r: CliResult, message: RegExp | string, code = 1): void {
  const context = `exit ${r.code} (signal ${r.signal})\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  expect(r.code, context).toBe(code);
  expect(r.stderr, context).toMatch(/^error: /);
  if (typeof message === "string") expect(r.stderr, context).toContain(message);
  else expect(r.stderr, context).toMatch(message);
  expect(r.stderr, "stack trace in stderr").not.toMatch(/^ {4}at /m);
  expect(r.stderr).not.toContain("internal error");
  expect(r.stdout).toBe("");
}

/** A fresh temp dir (mode 0755, so a dropped-privilege child can enter it). */
export async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lp-cli-"));
  await chmod(dir, 0o755);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A writable copy of a fixture checkpoint (the fixtures themselves are read-only). */
export async function copyFixture(name: string, dest: string): Promise<string> {
  await cp(join(FIXTURES, name), dest, { recursive: true });
  await chmod(dest, 0o755);
  for (const f of await readdir(dest)) await chmod(join(dest, f), 0o644);
  return dest;
}

/** relative path -> sha256 of every file under `dir`; undefined when `dir` does not exist. */
export async function snapshot(dir: string): Promise<Map<string, string> | undefined> {
  try {
    await stat(dir);
  } catch {
    return undefined;
  }
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), await sha256File(p));
    }
  };
  await walk(dir);
  return out;
}

export async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/**
 * Nothing left behind: `output` holds exactly `before` (absent when `before` is undefined) and
 * no `<output>.tmp-*` or `<output>.old-*` sits beside it.
 */
export async function expectNothingLeftBehind(parent: string, outputName: string, before?: Map<string, string>): Promise<void> {
  const after = await snapshot(join(parent, outputName));
  if (before === undefined) expect(after, `${outputName} should not exist`).toBeUndefined();
  else expect(after).toEqual(before);
  const stray = (await readdir(parent)).filter((e) => e.startsWith(`${outputName}.`));
  expect(stray, `leftovers beside ${outputName}`).toEqual([]);
}

// --- safetensors surgery ---

export interface SafetensorsFile {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Buffer;
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const buf = await readFile(path);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString("utf8")), data: buf.subarray(8 + n) };
}

export async function writeSafetensors(path: string, file: SafetensorsFile): Promise<void> {
  const json = Buffer.from(JSON.stringify(file.header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await writeFile(path, Buffer.concat([len, json, file.data]));
}

/** Rewrites one tensor entry of a safetensors header in place. */
export async function patchTensor(
  path: string,
  name: string,
  patch: (entry: { dtype: string; shape: number[]; data_offsets: [number, number] }) => void,
): Promise<void> {
  const f = await readSafetensors(path);
  const entry = f.header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] } | undefined;
  if (entry === undefined) throw new Error(`no tensor ${name} in ${path}`);
  patch(entry);
  await writeSafetensors(path, f);
}
