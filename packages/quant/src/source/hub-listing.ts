import { setTimeout as sleep } from "node:timers/promises";
import { InputError } from "@llama-pajamas/artifact";
import { isPlainFileName } from "./hf-cache.js";
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

