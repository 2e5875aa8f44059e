import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { InputError } from "@llama-pajamas/artifact";
import { compareCodePoints } from "@llama-pajamas/gguf/formats/safetensors.js";
import { CONVERSION_FILES, INDEX_FILE, isPlainFileName } from "./hf-cache.js";
import type { BlobTask } from "./hub-download.js";
import { describeNetworkError, hubGet, hubHttpError, readTextLimited, TransientHubError } from "./hub-http.js";
import { COMMIT_HASH, type HubModelId } from "./hub-id.js";
import type { HubSettings } from "./hub-settings.js";

/** Largest repo file list read (a repo with 100k files lists a few tens of MB). */
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
/** Tries for the file list when the hub is briefly unavailable (connection, 5xx, 429). */
const LISTING_ATTEMPTS = 2;

/**
 * The repo's file list at a revision: GET {endpoint}/api/models/{repo}/revision/{revision}
 * ?blobs=true (huggingface_hub HfApi.model_info with files_metadata=True), which gives the
 * commit the revision points to and, per file, its size and its LFS sha256 or git blob id.
 */
export interface ListedFile {
  size?: unknown;
  blobId?: unknown;
  lfs?: { sha256?: unknown; size?: unknown } | null;
}

export interface Listing {
  commit: string;
  files: Map<string, ListedFile>;
}

export async function fetchListing(
  id: HubModelId,
  settings: HubSettings,
  opts: { signal?: AbortSignal; retryDelayMs?: number },
): Promise<Listing> {
  const signal = opts.signal;
  const url = `${settings.endpoint}/api/models/${id.repo}/revision/${encodeURIComponent(id.revision)}?blobs=true`;
  for (let attempt = 1; ; attempt++) {
    try {
      const { response, abort } = await hubGet(url, { settings, timeoutMs: settings.metadataTimeoutMs, signal });
      if (!response.ok) throw await hubHttpError(response, { settings, repo: id.repo, revision: id.revision });
      const what = `the file list of ${id.repo}@${id.revision} from ${settings.endpoint}`;
      // hubGet times the headers; the body gets the same time again, and the user's abort.
      const timer = setTimeout(
        () => abort(new TransientHubError(`${what} stalled for ${settings.metadataTimeoutMs / 1000}s`)),
        settings.metadataTimeoutMs,
      );
      const onAbort = () => abort(new Error("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      let text: string;
      try {
        text = await readTextLimited(response, MAX_LISTING_BYTES, what);
      } catch (e) {
        if (e instanceof InputError || e instanceof TransientHubError || signal?.aborted) throw e;
        throw new TransientHubError(`${what}: ${describeNetworkError(e)}`, undefined, { cause: e });
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
      return parseListing(text, what);
    } catch (e) {
      if (!(e instanceof TransientHubError) || attempt >= LISTING_ATTEMPTS || signal?.aborted) throw e;
      await sleep(((opts.retryDelayMs ?? 1000) / 2) * attempt, undefined, { signal }).catch(() => undefined);
    }
  }
}

function parseListing(text: string, what: string): Listing {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} is not JSON (${(e as Error).message}); is HF_ENDPOINT a Hugging Face hub?`, {
      code: "E_HUB_RESPONSE",
      cause: e,
    });
  }
  const { sha, siblings } = (data ?? {}) as { sha?: unknown; siblings?: unknown };
  if (typeof sha !== "string" || !COMMIT_HASH.test(sha) || !Array.isArray(siblings)) {
    throw new InputError(`${what} lacks a commit "sha" or a "siblings" list; is HF_ENDPOINT a Hugging Face hub?`, {
      code: "E_HUB_RESPONSE",
    });
  }
  const files = new Map<string, ListedFile>();
  for (const s of siblings as { rfilename?: unknown }[]) {
    // Top-level files only: a checkpoint directory is flat, and names become paths in the cache.
    if (typeof s?.rfilename === "string" && isPlainFileName(s.rfilename)) files.set(s.rfilename, s as ListedFile);
  }
  return { commit: sha, files };
}

/** The blob a listed file is stored as, and how to check it. Values are untrusted: they become file names. */
export function blobTask(listing: Listing, file: string, what: string): BlobTask {
  const s = listing.files.get(file)!;
  const size = (v: unknown) => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
  if (s.lfs) {
    const sha256 = s.lfs.sha256;
    const sizeBytes = size(s.lfs.size);
    if (typeof sha256 === "string" && /^[0-9a-f]{64}$/.test(sha256) && sizeBytes !== undefined) {
      return { file, etag: sha256, sizeBytes, hash: "sha256" };
    }
  } else {
    const sizeBytes = size(s.size);
    if (typeof s.blobId === "string" && COMMIT_HASH.test(s.blobId) && sizeBytes !== undefined) {
      return { file, etag: s.blobId, sizeBytes, hash: "git-sha1" };
    }
  }
  throw new InputError(
    `${what} gives no usable size and hash for ${file} (${JSON.stringify(s).slice(0, 200)}); the hub answers these to ` +
      `?blobs=true: is HF_ENDPOINT a Hugging Face hub or a complete mirror?`,
    { code: "E_HUB_RESPONSE" },
  );
}


/**
 * What a conversion reads from a repo: config, tokenizer and index files it has, and the
 * weights; `weights` is undefined when the safetensors index must say which shards.
 */
export function conversionPlan(listing: Listing, label: string): { files: string[]; weights: string[] | undefined } {
  const names = [...listing.files.keys()];
  if (!listing.files.has("config.json")) {
    throw new InputError(
      `${label} has no config.json, so it is not a transformers checkpoint ` +
        `(its top-level files: ${names.slice(0, 8).join(", ") || "none"}${names.length > 8 ? ", ..." : ""})`,
      { code: "E_NOT_A_MODEL" },
    );
  }
  const files = CONVERSION_FILES.filter((f) => listing.files.has(f));
  if (listing.files.has(INDEX_FILE)) return { files, weights: undefined };
  // openCheckpointTensors' choice without an index: model*.safetensors, else every *.safetensors.
  const all = names.filter((n) => n.endsWith(".safetensors")).sort(compareCodePoints);
  let weights = all.filter((n) => n.startsWith("model"));
  if (weights.length === 0) weights = all;
  if (weights.length === 0) {
    const other = names.filter((n) => /\.(bin|pt|pth|gguf|ckpt|h5|msgpack)$/.test(n));
    throw new InputError(
      `${label} has no *.safetensors weights` +
        (other.length > 0 ? ` (it has ${other.slice(0, 6).join(", ")}; only safetensors checkpoints are supported)` : ""),
      { code: "E_NOT_A_MODEL" },
    );
  }
  return { files, weights };
}

/**
 * The file list huggingface_hub >= 2 keeps per commit in <repo>/trees/<commit>.json
 * (_tree_cache.py, format_version 1), when there is a readable one. Read, never written: Python
 * takes that file as the whole tree, and ours would lack the xet hashes it records.
 */
export async function readTreeCache(repoRoot: string, commit: string): Promise<Listing | undefined> {
  const path = join(repoRoot, "trees", `${commit}.json`);
  try {
    if ((await stat(path)).size > MAX_LISTING_BYTES) return undefined;
    const data = JSON.parse(await readFile(path, "utf8")) as { format_version?: unknown; files?: unknown };
    if (data.format_version !== 1 || typeof data.files !== "object" || data.files === null) return undefined;
    const files = new Map<string, ListedFile>();
    for (const [name, info] of Object.entries(data.files as Record<string, Record<string, unknown>>)) {
      if (!isPlainFileName(name) || typeof info !== "object" || info === null) continue;
      const lfs = typeof info.lfs_sha256 === "string" ? { sha256: info.lfs_sha256, size: info.lfs_size } : undefined;
      files.set(name, { size: info.size, blobId: info.blob_id, lfs });
    }
    return { commit, files };
  } catch {
    return undefined; // absent or unreadable: judge the snapshot without it
  }
}
