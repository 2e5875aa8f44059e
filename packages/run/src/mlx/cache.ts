// Transcoded MLX models are made once and kept: beside the MLX files, in `.llama-pajamas/` inside
// the MLX directory (mlx-lm reads only model*.safetensors, so it does not notice), or, when that
// directory is read-only, under the user cache (LLAMA_PAJAMAS_CACHE, else
// $XDG_CACHE_HOME/llama-pajamas, else ~/.cache/llama-pajamas). The file name carries a
// fingerprint of the transcoder version, config.json, and the name, size and mtime of every
// safetensors, index and tokenizer file, so a changed model or transcoder makes a new file and
// the stale one is removed.
import { createHash } from "node:crypto";
import { access, constants, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { OutputError } from "@llama-pajamas/artifact";
import { TRANSCODER_VERSION, type TranscodeProgress, type TranscodeReport, transcodeMLX } from "./transcode.js";

export const CACHE_DIR_ENV = "LLAMA_PAJAMAS_CACHE";
const LOCAL_DIR = ".llama-pajamas";

export interface TranscodedModel {
  /** The GGUF to load. */
  path: string;
  /** How it was made (kept beside it as JSON, so a cached load reports it too). */
  report: TranscodeReport;
  /** False when this call wrote it. */
  cached: boolean;
}

export interface EnsureTranscodedOptions {
  onProgress?: (p: TranscodeProgress) => void;
  signal?: AbortSignal;
  /** Overrides where the cache lives (default: see the header). */
  cacheDir?: string;
}

/** The user cache folder for transcodes of read-only MLX directories. */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env[CACHE_DIR_ENV]) return env[CACHE_DIR_ENV]!;
  const base = env["XDG_CACHE_HOME"] || join(homedir(), ".cache");
  return join(base, "llama-pajamas");
}

async function fingerprint(dir: string): Promise<string> {
  const h = createHash("sha256");
  h.update(`transcoder ${TRANSCODER_VERSION}\n`);
  h.update(await readFile(join(dir, "config.json")));
  const names = (await readdir(dir)).filter((n) => n.endsWith(".safetensors") || n === "model.safetensors.index.json" || n.startsWith("tokenizer")).sort();
  for (const n of names) {
    const st = await stat(join(dir, n));
    h.update(`\n${n} ${st.size} ${st.mtimeMs}`);
  }
  return h.digest("hex").slice(0, 16);
}

async function writable(dir: string): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function readReport(path: string): Promise<TranscodeReport | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as TranscodeReport;
  } catch {
    return undefined;
  }
}

/** The GGUF of an MLX directory: the cached one when current, else transcoded now. */
export async function ensureTranscoded(mlxDir: string, opts: EnsureTranscodedOptions = {}): Promise<TranscodedModel> {
  const fp = await fingerprint(mlxDir);
  const file = `transcoded-${fp}.gguf`;
  const candidates = opts.cacheDir ? [opts.cacheDir] : [join(mlxDir, LOCAL_DIR), join(userCacheDir(), "transcoded")];
  for (const dir of candidates) {
    const path = join(dir, file);
    const report = await readReport(`${path}.json`);
    const st = await stat(path).catch(() => undefined);
    if (report && st && st.size === report.sizeBytes) return { path, report, cached: true };
  }
  for (const dir of candidates) {
    if (!(await writable(dir))) continue;
    const path = join(dir, file);
    const report = await transcodeMLX({ dir: mlxDir, output: path, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    // The report goes last: its presence marks the GGUF as complete.
    await writeFile(`${path}.json.tmp-${process.pid}`, JSON.stringify(report, null, 2) + "\n");
    await rename(`${path}.json.tmp-${process.pid}`, `${path}.json`);
    await removeStale(dir, file);
    return { path, report, cached: false };
  }
  throw new OutputError(
    `cannot transcode ${mlxDir} to GGUF: neither ${candidates.join(" nor ")} is writable; ` +
      `set ${CACHE_DIR_ENV} to a writable folder`,
    { path: mlxDir },
  );
}

/** Older transcodes of the same directory (other fingerprints). */
async function removeStale(dir: string, keep: string): Promise<void> {
  if (!dir.endsWith(LOCAL_DIR)) return; // the user cache is shared between models: leave it
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (n.startsWith("transcoded-") && !n.startsWith(keep)) await rm(join(dir, n), { force: true });
  }
}
