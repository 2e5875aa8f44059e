import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Where the hub is and how to talk to it, read from the same variables as huggingface_hub
 * (constants.py, utils/_auth.py), so that Python tools and this pipeline share one cache.
 */
export interface HubSettings {
  /** HF_ENDPOINT without a trailing slash; https://huggingface.co by default. */
  endpoint: string;
  /** HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub (HF_HOME: ~/.cache/huggingface). */
  cacheDir: string;
  /** HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the token file (HF_TOKEN_PATH, else HF_HOME/token). */
  token: string | undefined;
  /** Where the token came from, for messages: "HF_TOKEN", "token file /path" ... */
  tokenSource: string | undefined;
  /** HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is 1/ON/YES/TRUE: the cache only. */
  offline: boolean;
  /** HF_HUB_ETAG_TIMEOUT: seconds to wait for the metadata answer (default 10). */
  metadataTimeoutMs: number;
  /** HF_HUB_DOWNLOAD_TIMEOUT: seconds without a byte before a download is retried (default 10). */
  downloadTimeoutMs: number;
}

export const DEFAULT_ENDPOINT = "https://huggingface.co";
const DEFAULT_TIMEOUT_S = 10;
const TRUE_VALUES = new Set(["1", "ON", "YES", "TRUE"]);

/** os.path.expanduser for a leading "~" (huggingface_hub also expands $VARS; the shell has done that). */
function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** huggingface_hub's _clean_token: whitespace stripped, empty means none. */
function cleanToken(value: string | undefined): string | undefined {
  const t = value?.replace(/\r?\n/g, "").trim();
  return t ? t : undefined;
}

function seconds(value: string | undefined): number {
  const n = Number(value);
  return (Number.isFinite(n) && n > 0 ? n : DEFAULT_TIMEOUT_S) * 1000;
}

/** The settings huggingface_hub would use with this environment. */
export function hubSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const hfHome = resolve(
    expandHome(nonEmpty(env.HF_HOME) ?? join(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), ".cache"), "huggingface")),
  );
  const cacheDir = resolve(expandHome(nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? join(hfHome, "hub")));
  let token = cleanToken(env.HF_TOKEN);
  let tokenSource = token ? "HF_TOKEN" : undefined;
  if (!token) {
    token = cleanToken(env.HUGGING_FACE_HUB_TOKEN);
    if (token) tokenSource = "HUGGING_FACE_HUB_TOKEN";
  }
  if (!token) {
    const tokenPath = resolve(expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? join(hfHome, "token")));
    try {
      token = cleanToken(readFileSync(tokenPath, "utf8"));
      if (token) tokenSource = `token file ${tokenPath}`;
    } catch {
      // No token file: not logged in, which is fine for public models.
    }
  }
  const offline = nonEmpty(env.HF_HUB_OFFLINE) ?? nonEmpty(env.TRANSFORMERS_OFFLINE);
  return {
    endpoint: (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    cacheDir,
    token,
    tokenSource,
    offline: offline !== undefined && TRUE_VALUES.has(offline.toUpperCase()),
    metadataTimeoutMs: seconds(env.HF_HUB_ETAG_TIMEOUT),
    downloadTimeoutMs: seconds(env.HF_HUB_DOWNLOAD_TIMEOUT),
  };
}
