import { mkdir, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { InputError, OutputError, PajamasError } from "@llama-pajamas/artifact";
import {
  blobPath,
  cachedSnapshots,
  exists,
  INDEX_FILE,
  indexShards,
  linkPointer,
  readRef,
  repoCache,
  type RepoCache,
  snapshotDir,
  snapshotGaps,
  writeCacheDirTag,
  writeRef,
} from "./hf-cache.js";
import { type BlobTask, downloadBlob, type DownloadContext } from "./hub-download.js";
import { interruptedError, TransientHubError } from "./hub-http.js";
import type { HubModelId } from "./hub-id.js";
import { blobTask, conversionPlan, fetchListing, type Listing, readTreeCache } from "./hub-listing.js";
import { type HubSettings, hubSettingsFromEnv } from "./hub-settings.js";

/** Files fetched at once: huggingface_hub snapshot_download's max_workers. */
const DEFAULT_CONCURRENCY = 8;
/** Progress events at most this often (plus one per finished file). */
const PROGRESS_INTERVAL_MS = 100;

export interface HubOptions {
  /** Where HF_* variables are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Overrides of what the environment says. */
  settings?: Partial<HubSettings>;
  onEvent?: (event: HubEvent) => void;
  /** Files downloaded at once (default 8). */
  concurrency?: number;
  /** Pause before retrying a cut download, times the attempt number (default 1000 ms). */
  retryDelayMs?: number;
  signal?: AbortSignal;
}

export type HubEvent =
  | { type: "resolve"; repo: string; revision: string; endpoint: string }
  | {
      type: "plan";
      repo: string;
      revision: string;
      commit: string;
      cacheDir: string;
      /** Files the conversion needs, and how many of them the cache already has. */
      files: number;
      cachedFiles: number;
      /** Files to fetch now, with their full size. */
      downloads: { file: string; sizeBytes: number }[];
      bytesTotal: number;
      /** Bytes already here: files fetched first (the safetensors index), partial files kept from earlier runs. */
      bytesDone: number;
      /** Of bytesDone, those in partial files from earlier runs, which the download resumes from. */
      resumedBytes: number;
    }
  | { type: "progress"; bytesDone: number; bytesTotal: number; filesDone: number; filesTotal: number; elapsedMs: number }
  | { type: "retry"; file: string; attempt: number; reason: string; offsetBytes: number }
  | { type: "wait"; file: string; pid: number; lockPath: string }
  | { type: "cached"; repo: string; revision: string; commit: string; dir: string; why: "offline" | "unreachable"; reason?: string }
  | { type: "done"; repo: string; revision: string; commit: string; dir: string; downloadedFiles: number; downloadedBytes: number; elapsedMs: number };

/** A hub model resolved to a snapshot folder of the cache, ready to read like a local checkpoint. */
export interface HubSnapshot {
  repo: string;
  revision: string;
  commit: string;
  /** <cacheDir>/models--org--name/snapshots/<commit> */
  dir: string;
  cacheDir: string;
  /** "hub": the file list was asked for; "cache": offline, or the hub could not be reached. */
  source: "hub" | "cache";
  downloadedFiles: string[];
  downloadedBytes: number;
}

/**
 * Resolves `org/name@revision` the way huggingface_hub's snapshot_download does, downloading
 * only the files a conversion reads: one file-list request (GET /api/models/{repo}/revision/
 * {revision}?blobs=true: the commit, sizes, and each file's LFS sha256 or git blob id), then
 * each missing file from resolve/{commit}/{file}, in parallel, verified, into the shared cache.
 * With HF_HUB_OFFLINE, or when the hub cannot be reached, a complete cached snapshot is used.
 */
export async function resolveHubModel(id: HubModelId, opts: HubOptions = {}): Promise<HubSnapshot> {
  const settings: HubSettings = { ...hubSettingsFromEnv(opts.env ?? process.env), ...opts.settings };
  const rc = repoCache(settings.cacheDir, id.repo);
  const emit = opts.onEvent ?? (() => undefined);
  if (settings.offline) {
    const cached = await fromCache(rc, id);
    if ("problem" in cached) {
      throw new InputError(
        `HF_HUB_OFFLINE is set and ${cached.problem}; run once without HF_HUB_OFFLINE to download it, or set ` +
          `HF_HUB_CACHE to a cache that has it`,
        { code: "E_OFFLINE_MISSING", path: rc.root },
      );
    }
    emit({ type: "cached", repo: id.repo, revision: id.revision, commit: cached.commit, dir: cached.dir, why: "offline" });
    return { ...id, ...cached, cacheDir: settings.cacheDir, source: "cache", downloadedFiles: [], downloadedBytes: 0 };
  }

  emit({ type: "resolve", repo: id.repo, revision: id.revision, endpoint: settings.endpoint });
  let listing: Listing;
  try {
    listing = await fetchListing(id, settings, opts);
  } catch (e) {
    if (opts.signal?.aborted) throw interruptedError(settings.cacheDir);
    if (!(e instanceof TransientHubError)) throw e;
    // huggingface_hub falls back to the cache when the hub is unreachable, not when it says no.
    const cached = await fromCache(rc, id);
    if ("problem" in cached) {
      throw new InputError(
        `cannot reach ${settings.endpoint} for ${id.repo}@${id.revision} (${e.message}), and ${cached.problem}; check the ` +
          `network or proxy, or set HF_ENDPOINT to a mirror`,
        { code: e.status === undefined ? "E_NETWORK" : "E_HUB_HTTP", cause: e },
      );
    }
    emit({ type: "cached", repo: id.repo, revision: id.revision, ...cached, why: "unreachable", reason: e.message });
    return { ...id, ...cached, cacheDir: settings.cacheDir, source: "cache", downloadedFiles: [], downloadedBytes: 0 };
  }

  const plan = conversionPlan(listing, `${id.repo}@${id.revision}`);
  try {
    return await fetchSnapshot({ id, settings, rc, listing, opts, emit }, plan);
  } catch (e) {
    throw asCacheError(e, settings.cacheDir);
  }
}

interface FetchContext {
  id: HubModelId;
  settings: HubSettings;
  rc: RepoCache;
  listing: Listing;
  opts: HubOptions;
  emit: (e: HubEvent) => void;
}

/** Everything after the file list: the cache's refs, the index, then all files in parallel. */
async function fetchSnapshot(c: FetchContext, plan: { files: string[]; weights: string[] | undefined }): Promise<HubSnapshot> {
  const { id, settings, rc, listing, emit } = c;
  const commit = listing.commit;
  const dir = snapshotDir(rc, commit);
  await prepareCache(rc, id, commit);
  const run = new Materializer({ ...c, commit });
  let weights = plan.weights;
  if (weights === undefined) {
    // The index says which shards to fetch (a repo may also hold consolidated.safetensors ...).
    await run.fetch([INDEX_FILE], { silent: true });
    weights = (await indexShards(join(dir, INDEX_FILE))) ?? [];
    const unlisted = weights.filter((w) => !listing.files.has(w));
    if (unlisted.length > 0) {
      throw new InputError(
        `${INDEX_FILE} of ${id.repo}@${id.revision} names shards the repo does not have: ${unlisted.join(", ")}; ` +
          `the repo is incomplete (try another revision)`,
        { code: "E_HUB_FILE_NOT_FOUND" },
      );
    }
  }
  const wanted = [...plan.files, ...weights];
  await run.fetch(wanted, { silent: false });
  emit({
    type: "done",
    repo: id.repo,
    revision: id.revision,
    commit,
    dir,
    downloadedFiles: run.downloaded.length,
    downloadedBytes: run.downloadedBytes,
    elapsedMs: Date.now() - run.started,
  });
  return {
    ...id,
    commit,
    dir,
    cacheDir: settings.cacheDir,
    source: "hub",
    downloadedFiles: run.downloaded,
    downloadedBytes: run.downloadedBytes,
  };
}

/** A raw file-system error while writing the cache, as an OutputError that says what to do. */
function asCacheError(e: unknown, cacheDir: string): unknown {
  if (e instanceof PajamasError || !(e instanceof Error)) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return e;
  const notWritable = code === "EACCES" || code === "EPERM" || code === "EROFS";
  return new OutputError(
    `cannot write to the Hugging Face cache ${cacheDir} (${e.message})` +
      (notWritable ? "; set HF_HUB_CACHE (or HF_HOME) to a writable directory" : "; check the disk, then run again"),
    { path: cacheDir, code: notWritable ? "E_CACHE_NOT_WRITABLE" : "E_OUTPUT", cause: e },
  );
}

async function prepareCache(rc: RepoCache, id: HubModelId, commit: string): Promise<void> {
  try {
    await mkdir(join(rc.root, "blobs"), { recursive: true });
    await writeCacheDirTag(rc.cacheDir);
    await writeRef(rc, id.revision, commit);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A read-only cache that already holds the snapshot is fine; the fetch below finds out.
    if (code === "EACCES" || code === "EROFS" || code === "EPERM") {
      if (await exists(snapshotDir(rc, commit))) return;
      throw new OutputError(
        `cannot write to the Hugging Face cache ${rc.cacheDir} (${code}); set HF_HUB_CACHE (or HF_HOME) to a writable directory`,
        { path: rc.cacheDir, code: "E_CACHE_NOT_WRITABLE", cause: e },
      );
    }
    throw e;
  }
}

/** A complete cached snapshot for id, or what keeps the cache from serving it. */
async function fromCache(rc: RepoCache, id: HubModelId): Promise<{ commit: string; dir: string } | { problem: string }> {
  if (!(await exists(rc.root))) return { problem: `the cache ${rc.cacheDir} has no copy of ${id.repo}` };
  const commit = await readRef(rc, id.revision);
  if (commit === undefined) {
    const snaps = await cachedSnapshots(rc);
    return {
      problem:
        `the cache ${rc.cacheDir} has ${id.repo} but no refs/${id.revision}, so which commit ${id.revision} is is unknown` +
        (snaps.length > 0 ? ` (cached snapshots: ${snaps.join(", ")}; pass ${id.repo}@<commit> to use one)` : ""),
    };
  }
  const dir = snapshotDir(rc, commit);
  // With the file list huggingface_hub saved for this commit, exactly what a conversion needs;
  // without it, the snapshot is judged by what it holds.
  const tree = await readTreeCache(rc.root, commit);
  let gaps: string[];
  if (tree) {
    const plan = conversionPlan(tree, `${id.repo}@${id.revision}`);
    const weights = plan.weights ?? (await indexShards(join(dir, INDEX_FILE))) ?? [];
    gaps = [];
    for (const f of [...plan.files, ...weights]) if (!(await exists(join(dir, f)))) gaps.push(f);
  } else {
    gaps = await snapshotGaps(dir);
  }
  if (gaps.length > 0) {
    return { problem: `the cached snapshot ${commit.slice(0, 12)} of ${id.repo}@${id.revision} (${dir}) lacks ${gaps.join(", ")}` };
  }
  return { commit, dir };
}

/** Brings listed files into snapshots/<commit>/, downloading what no blob holds yet. */
class Materializer {
  readonly started = Date.now();
  /** Files fetched so far (not found in the cache), and their bytes received in this run. */
  readonly downloaded: string[] = [];
  downloadedBytes = 0;
  constructor(private readonly c: FetchContext & { commit: string }) {}

  async fetch(files: string[], mode: { silent: boolean }): Promise<void> {
    const { id, settings, rc, commit, listing, opts } = this.c;
    const emit = mode.silent ? () => undefined : this.c.emit;
    const what = `the file list of ${id.repo}@${id.revision}`;
    const byEtag = new Map<string, { task: BlobTask; pointers: string[] }>();
    let cachedFiles = 0;
    // Files an earlier step of this run fetched (the index) count as downloads already done.
    const earlier: BlobTask[] = [];
    for (const file of files) {
      const task = blobTask(listing, file, what);
      const pointer = join(snapshotDir(rc, commit), file);
      if (this.downloaded.includes(file)) {
        earlier.push(task);
      } else if (await exists(pointer)) {
        cachedFiles++;
      } else if (await exists(blobPath(rc, task.etag))) {
        await linkPointer(blobPath(rc, task.etag), pointer); // the blob came with another commit
        cachedFiles++;
      } else {
        const entry = byEtag.get(task.etag) ?? { task, pointers: [] };
        entry.pointers.push(pointer);
        byEtag.set(task.etag, entry);
      }
    }
    const todo = [...byEtag.values()].sort((a, b) => b.task.sizeBytes - a.task.sizeBytes);
    let bytesTotal = 0;
    let bytesDone = 0;
    let resumedBytes = 0;
    for (const task of earlier) {
      bytesTotal += task.sizeBytes;
      bytesDone += task.sizeBytes;
    }
    for (const { task } of todo) {
      bytesTotal += task.sizeBytes;
      const partial = await stat(`${blobPath(rc, task.etag)}.incomplete`).then((s) => s.size, () => 0);
      if (partial <= task.sizeBytes) resumedBytes += partial;
    }
    emit({
      type: "plan",
      repo: id.repo,
      revision: id.revision,
      commit,
      cacheDir: settings.cacheDir,
      files: files.length,
      cachedFiles,
      downloads: [...earlier, ...todo.map((t) => t.task)].map((t) => ({ file: t.file, sizeBytes: t.sizeBytes })),
      bytesTotal,
      bytesDone: bytesDone + resumedBytes,
      resumedBytes,
    });
    bytesDone += resumedBytes;
    await checkFreeSpace(rc, id, bytesTotal - bytesDone);

    const inner = new AbortController();
    const onAbort = () => inner.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const startDone = bytesDone;
    let filesDone = earlier.length;
    const filesTotal = earlier.length + todo.length;
    let lastEmit = 0;
    const progress = (force: boolean) => {
      const now = Date.now();
      if (!force && now - lastEmit < PROGRESS_INTERVAL_MS) return;
      lastEmit = now;
      emit({ type: "progress", bytesDone, bytesTotal, filesDone, filesTotal, elapsedMs: now - this.started });
    };
    const ctx: DownloadContext = {
      settings,
      repo: id.repo,
      revision: id.revision,
      rc,
      commit,
      signal: inner.signal,
      retryDelayMs: opts.retryDelayMs ?? 1000,
      onBytes: (n) => {
        bytesDone += n;
        progress(false);
      },
      onRetry: (info) => emit({ type: "retry", ...info }),
      onWait: (info) => emit({ type: "wait", ...info }),
    };
    let firstError: unknown;
    const queue = [...todo];
    const worker = async () => {
      for (let item = queue.shift(); item && firstError === undefined; item = queue.shift()) {
        try {
          await downloadBlob(item.task, ctx);
          for (const pointer of item.pointers) await linkPointer(blobPath(rc, item.task.etag), pointer);
          this.downloaded.push(item.task.file);
          filesDone++;
          progress(true);
        } catch (e) {
          if (firstError === undefined) firstError = e;
          inner.abort(e); // fail fast: the others stop, their partial files stay for next time
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? DEFAULT_CONCURRENCY, todo.length) }, worker));
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
    if (opts.signal?.aborted) throw interruptedError(settings.cacheDir);
    if (firstError !== undefined) throw firstError;
    this.downloadedBytes += bytesDone - startDone;
  }
}

/** Refuses before downloading what cannot fit (huggingface_hub only warns, then fails late). */
async function checkFreeSpace(rc: RepoCache, id: HubModelId, neededBytes: number): Promise<void> {
  if (neededBytes <= 0) return;
  let freeBytes: number;
  try {
    const fs = await statfs(join(rc.root, "blobs"));
    freeBytes = fs.bavail * fs.bsize;
  } catch {
    return; // cannot tell: let the writes find out
  }
  if (freeBytes < neededBytes) {
    throw new OutputError(
      `not enough disk space to download ${id.repo}: ${formatMiB(neededBytes)} needed, ${formatMiB(freeBytes)} free in ` +
        `${rc.cacheDir}; free space or set HF_HUB_CACHE to a larger disk`,
      { path: rc.cacheDir, code: "E_DISK_FULL" },
    );
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
