import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { InputError, OutputError } from "@llama-pajamas/artifact";
import { blobPath, exists, type RepoCache } from "./hf-cache.js";
import {
  describeNetworkError,
  diskFullCode,
  hubGet,
  hubHttpError,
  interruptedError,
  type RequestContext,
  TransientHubError,
} from "./hub-http.js";

/** Tries in a row that bring no new byte before a download gives up (huggingface_hub http_get: 5). */
export const MAX_ATTEMPTS_WITHOUT_PROGRESS = 5;
/** How often a waiting process looks whether another one finished the same blob. */
const LOCK_POLL_MS = 250;

/** One blob to bring into the cache: a repo file and the hash that names and checks it. */
export interface BlobTask {
  /** The repo file (for messages and the URL); several files may share one blob. */
  file: string;
  /** blobs/<etag>: the LFS sha256, or the git blob sha1 of a regular file. */
  etag: string;
  sizeBytes: number;
  /** sha256 of the bytes (LFS), or git's sha1 of "blob <size>\0" + bytes (regular files). */
  hash: "sha256" | "git-sha1";
}

export interface DownloadContext extends RequestContext {
  rc: RepoCache;
  /** The commit the files are fetched at: resolve/<commit>/<file> never moves. */
  commit: string;
  signal?: AbortSignal;
  retryDelayMs: number;
  /** Bytes received (positive), or bytes thrown away when a server ignored Range (negative). */
  onBytes(n: number): void;
  onRetry(info: { file: string; attempt: number; reason: string; offsetBytes: number }): void;
  onWait(info: { file: string; pid: number; lockPath: string }): void;
}

export function resolveUrl(endpoint: string, repo: string, commit: string, file: string): string {
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(commit)}/${file.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * Brings blobs/<etag> into the cache, verified: bytes go to blobs/<etag>.incomplete (resumed
 * with Range after a cut connection, in this run or the next), are hashed as they arrive, and
 * the file is renamed into place only when size and hash match. A file that fails the check is
 * deleted; it never replaces or becomes a blob.
 */
export async function downloadBlob(task: BlobTask, ctx: DownloadContext): Promise<void> {
  const blob = blobPath(ctx.rc, task.etag);
  await mkdir(dirname(blob), { recursive: true });
  const release = await acquireLock(ctx, task);
  try {
    if (await exists(blob)) return; // another process finished it while we waited
    let result = await fetchVerified(task, ctx, blob);
    if (!result.ok && result.resumedBytes > 0) {
      // The bytes kept from an earlier run were not a prefix of this blob: fetch it whole once.
      ctx.onRetry({ file: task.file, attempt: 1, reason: "the partial file kept from an earlier run did not verify", offsetBytes: 0 });
      result = await fetchVerified(task, ctx, blob);
    }
    if (!result.ok) {
      throw new InputError(
        `${task.file} of ${ctx.repo}@${ctx.commit.slice(0, 12)} failed verification: got ${result.got}, expected ` +
          `${result.want} (from the hub's file list); the download was deleted and nothing entered the cache; run again, ` +
          `and if it repeats, something between here and ${ctx.settings.endpoint} (a proxy or mirror) alters the file`,
        { code: "E_HUB_CHECKSUM", path: blob },
      );
    }
  } catch (e) {
    if (ctx.signal?.aborted) throw interruptedError(ctx.rc.cacheDir);
    const errno = diskFullCode(e);
    if (errno) {
      throw new OutputError(
        `disk full while downloading ${task.file} of ${ctx.repo} into ${ctx.rc.cacheDir} (${errno}: ${(e as Error).message}): ` +
          `free space or set HF_HUB_CACHE to a larger disk, then run again; what was received is kept in ` +
          `${blob}.incomplete and the download resumes from there`,
        { path: ctx.rc.cacheDir, code: "E_DISK_FULL", cause: e },
      );
    }
    throw e;
  } finally {
    await release();
  }
}

/** The partial file and the hash of what it holds, kept in step. */
interface PartialFile {
  fh: FileHandle;
  offset: number;
  hasher: Hash;
}

type Verdict = { ok: true } | { ok: false; got: string; want: string; resumedBytes: number };

/** Fetches into blobs/<etag>.incomplete and renames it into place if it verifies; deletes it if not. */
async function fetchVerified(task: BlobTask, ctx: DownloadContext, blob: string): Promise<Verdict> {
  const incomplete = `${blob}.incomplete`;
  const fh = await open(incomplete, "a");
  const part: PartialFile = { fh, offset: (await fh.stat()).size, hasher: newHasher(task) };
  const resumedBytes = part.offset <= task.sizeBytes ? part.offset : 0;
  try {
    if (part.offset > task.sizeBytes) {
      // Longer than the blob: not a prefix of it (the plan did not count these bytes).
      await fh.truncate(0);
      part.offset = 0;
    }
    await hashPrefix(incomplete, part.offset, part.hasher);
    let failures = 0;
    while (part.offset < task.sizeBytes) {
      const before = part.offset;
      try {
        await fetchRange(task, ctx, part);
        if (part.offset < task.sizeBytes) {
          throw new TransientHubError(`connection closed after ${part.offset} of ${task.sizeBytes} bytes`);
        }
      } catch (e) {
        if (ctx.signal?.aborted) throw interruptedError(ctx.rc.cacheDir);
        if (e instanceof InputError && e.code === "E_HUB_CHECKSUM") {
          await rm(incomplete, { force: true }); // a body longer than listed: what we have cannot be trusted either
          ctx.onBytes(-part.offset);
        }
        if (!(e instanceof TransientHubError)) throw e;
        failures = part.offset > before ? 1 : failures + 1;
        if (failures >= MAX_ATTEMPTS_WITHOUT_PROGRESS) {
          throw new InputError(
            `downloading ${task.file} of ${ctx.repo} failed ${failures} times in a row (${e.message}); the ${part.offset} bytes ` +
              `received so far stay in ${incomplete} and the next run resumes from there; check the network or proxy, ` +
              `or set HF_ENDPOINT to a mirror`,
            { code: "E_NETWORK", cause: e },
          );
        }
        ctx.onRetry({ file: task.file, attempt: failures + 1, reason: e.message, offsetBytes: part.offset });
        await sleep(ctx.retryDelayMs * failures, undefined, { signal: ctx.signal }).catch(() => undefined);
      }
    }
  } finally {
    await fh.close();
  }
  const digest = part.hasher.digest("hex");
  const size = (await stat(incomplete)).size;
  if (size !== task.sizeBytes || digest !== task.etag) {
    await rm(incomplete, { force: true });
    ctx.onBytes(-size);
    return size !== task.sizeBytes
      ? { ok: false, got: `${size} bytes`, want: `${task.sizeBytes} bytes`, resumedBytes }
      : { ok: false, got: `${task.hash} ${digest}`, want: task.etag, resumedBytes };
  }
  await rename(incomplete, blob);
  return { ok: true };
}

/** Empties the partial file: its bytes are not a prefix of the blob, or the server resent all. */
async function restart(task: BlobTask, ctx: DownloadContext, part: PartialFile): Promise<void> {
  await part.fh.truncate(0);
  ctx.onBytes(-part.offset);
  part.offset = 0;
  part.hasher = newHasher(task);
}

/**
 * One request from part.offset on, appended to the file and the hash. Throws
 * TransientHubError for what another try may fix (cut body, timeout, 5xx).
 */
async function fetchRange(task: BlobTask, ctx: DownloadContext, part: PartialFile): Promise<void> {
  const url = resolveUrl(ctx.settings.endpoint, ctx.repo, ctx.commit, task.file);
  const resumeAt = part.offset;
  const { response, abort } = await hubGet(url, {
    settings: ctx.settings,
    headers: resumeAt > 0 ? { range: `bytes=${resumeAt}-` } : {},
    timeoutMs: ctx.settings.downloadTimeoutMs,
    signal: ctx.signal,
  });
  if (response.status === 416 && resumeAt > 0) {
    // Range past the end: the partial file is not a prefix of this blob. Start over.
    await response.body?.cancel().catch(() => undefined);
    await restart(task, ctx, part);
    throw new TransientHubError(`${task.file}: the server refused to resume at byte ${resumeAt} (HTTP 416)`);
  }
  if (!response.ok) throw await hubHttpError(response, { ...ctx, revision: ctx.commit, file: task.file });
  if (resumeAt > 0) {
    const start = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1];
    // The server ignored Range (huggingface_hub http_get does the same): the body is the whole file.
    if (response.status !== 206 || Number(start) !== resumeAt) await restart(task, ctx, part);
  }
  // A stalled body is cut after downloadTimeoutMs without a byte, then resumed.
  let lastByteAt = Date.now();
  const onUserAbort = () => abort(ctx.signal?.reason instanceof Error ? ctx.signal.reason : new Error("aborted"));
  ctx.signal?.addEventListener("abort", onUserAbort, { once: true });
  const watchdog = setInterval(() => {
    if (Date.now() - lastByteAt > ctx.settings.downloadTimeoutMs) {
      abort(new TransientHubError(`no data for ${ctx.settings.downloadTimeoutMs / 1000}s`));
    }
  }, Math.min(1000, ctx.settings.downloadTimeoutMs));
  try {
    if (!response.body) return;
    for await (const chunk of response.body) {
      const bytes = chunk as Uint8Array;
      lastByteAt = Date.now();
      if (part.offset + bytes.byteLength > task.sizeBytes) {
        abort(new Error("longer than listed"));
        throw new InputError(
          `${task.file} of ${ctx.repo}: the server sent more than the ${task.sizeBytes} bytes the file list gives; ` +
            `run again, and if it repeats, something between here and ${ctx.settings.endpoint} alters the file`,
          { code: "E_HUB_CHECKSUM" },
        );
      }
      await part.fh.write(bytes);
      part.hasher.update(bytes);
      part.offset += bytes.byteLength;
      ctx.onBytes(bytes.byteLength);
    }
  } catch (e) {
    if (e instanceof InputError || e instanceof TransientHubError || ctx.signal?.aborted || diskFullCode(e)) throw e;
    throw new TransientHubError(`connection lost: ${describeNetworkError(e)}`, undefined, { cause: e });
  } finally {
    clearInterval(watchdog);
    ctx.signal?.removeEventListener("abort", onUserAbort);
  }
}

function newHasher(task: BlobTask): Hash {
  if (task.hash === "sha256") return createHash("sha256");
  // git hash-object: sha1 over a "blob <size>\0" header and the bytes.
  return createHash("sha1").update(`blob ${task.sizeBytes}\0`);
}

async function hashPrefix(path: string, length: number, hasher: Hash): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 22 })) {
    hasher.update(chunk as Buffer);
  }
}

/**
 * One downloader per blob across processes: .locks/models--org--name/<etag>.llama-pajamas.lock
 * holds the owner's pid (huggingface_hub's own <etag>.lock is an flock that Node cannot take,
 * and Python leaves those files behind, so ours has its own name). A lock whose pid is gone is
 * taken over; a live one is waited for.
 */
async function acquireLock(ctx: DownloadContext, task: BlobTask): Promise<() => Promise<void>> {
  const dir = join(ctx.rc.cacheDir, ".locks", basename(ctx.rc.root));
  const path = join(dir, `${task.etag}.llama-pajamas.lock`);
  await mkdir(dir, { recursive: true });
  let told = false;
  for (;;) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) {
      await rm(path, { force: true });
      continue;
    }
    if (!told) ctx.onWait({ file: task.file, pid, lockPath: path });
    told = true;
    if (ctx.signal?.aborted) throw interruptedError(ctx.rc.cacheDir);
    await sleep(LOCK_POLL_MS, undefined, { signal: ctx.signal }).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
