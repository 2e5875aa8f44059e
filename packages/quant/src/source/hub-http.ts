import { InputError, OutputError, type PajamasError } from "@llama-pajamas/artifact";
import { PIPELINE_VERSION } from "../version.js";
import type { HubSettings } from "./hub-settings.js";

/** Redirects followed for one request (the hub: a relative one for renamed repos, one to the CDN). */
const MAX_REDIRECTS = 10;
/** Largest error body read for a message. */
const MAX_ERROR_BODY_BYTES = 4096;

/**
 * A failure worth another try: connection refused or reset, a timeout, a cut body, HTTP 408,
 * 429 or 5xx. Callers retry it, fall back to the cache, or turn it into E_NETWORK / E_HUB_HTTP.
 */
export class TransientHubError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TransientHubError";
  }
}

/** What a request was for, so an error can say what failed and what to do. */
export interface RequestContext {
  settings: HubSettings;
  repo: string;
  revision: string;
  /** The file being downloaded; absent for the repo listing. */
  file?: string;
}

export interface OpenedResponse {
  response: Response;
  /** Cuts the request (and its body stream) with this reason. */
  abort(reason: Error): void;
}

/**
 * GET with redirects followed by hand: the token goes to the endpoint's origin only (never to
 * the CDN an LFS file redirects to), and Range survives each hop. `timeoutMs` bounds the wait
 * for headers; the body is the caller's to time. Connection failures throw TransientHubError;
 * the user's abort rethrows the signal's reason.
 */
export async function hubGet(
  url: string,
  opts: { settings: HubSettings; headers?: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
): Promise<OpenedResponse> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(opts.signal?.reason);
  if (opts.signal?.aborted) throw opts.signal.reason;
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new TransientHubError(`no answer within ${opts.timeoutMs / 1000}s from ${new URL(url).origin}`)),
    opts.timeoutMs,
  );
  const endpointOrigin = new URL(opts.settings.endpoint).origin;
  let current = url;
  try {
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = {
        "user-agent": `llama-pajamas-quant/${PIPELINE_VERSION}; node/${process.versions.node}`,
        // Offsets must count stored bytes: no transparent gzip, which breaks Range.
        "accept-encoding": "identity",
        ...opts.headers,
      };
      if (opts.settings.token && new URL(current).origin === endpointOrigin) {
        headers.authorization = `Bearer ${opts.settings.token}`;
      }
      let response: Response;
      try {
        response = await fetch(current, { headers, redirect: "manual", signal: controller.signal });
      } catch (e) {
        throw controller.signal.aborted ? controller.signal.reason : new TransientHubError(describeNetworkError(e), undefined, { cause: e });
      }
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) throw new TransientHubError(`more than ${MAX_REDIRECTS} redirects from ${url}`);
        current = new URL(location, current).toString();
        continue;
      }
      return {
        response,
        abort: (reason) => controller.abort(reason),
      };
    }
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

/** "connect ECONNREFUSED 127.0.0.1:9" rather than undici's bare "fetch failed". */
export function describeNetworkError(e: unknown): string {
  const parts: string[] = [];
  for (let cur = e, depth = 0; cur instanceof Error && depth < 6; cur = cur.cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    const text = code && !cur.message.includes(code) ? `${cur.message} (${code})` : cur.message;
    if (text && text !== "fetch failed") parts.push(text);
  }
  return parts.length > 0 ? parts.join(": ") : String(e);
}

/** A response body of at most `limitBytes`, as text. */
export async function readTextLimited(response: Response, limitBytes: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      size += (chunk as Uint8Array).byteLength;
      if (size > limitBytes) {
        await response.body.cancel().catch(() => undefined);
        throw new InputError(`${what} is larger than ${limitBytes} bytes; is HF_ENDPOINT a Hugging Face hub?`, { code: "E_HUB_RESPONSE" });
      }
      chunks.push(Buffer.from(chunk as Uint8Array));
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

function oneLine(text: string, maxChars = 300): string {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length > maxChars ? `${t.slice(0, maxChars)}...` : t;
}

/**
 * The error an unsuccessful hub answer means, with what to do about it. Follows
 * huggingface_hub's hf_raise_for_status: X-Error-Code first (GatedRepo, RepoNotFound,
 * RevisionNotFound, EntryNotFound), then the status. 401 without a code is how the hub answers
 * for a private repo, a gated one, or one that does not exist, when no valid token is sent.
 */
export async function hubHttpError(response: Response, ctx: RequestContext): Promise<PajamasError | TransientHubError> {
  const { settings, repo, revision, file } = ctx;
  const status = response.status;
  const errorCode = response.headers.get("x-error-code") ?? "";
  let serverMessage = response.headers.get("x-error-message") ?? "";
  if (!serverMessage) {
    const body = await readTextLimited(response, MAX_ERROR_BODY_BYTES, "error body").catch(() => "");
    try {
      const parsed = JSON.parse(body) as { error?: unknown };
      serverMessage = typeof parsed.error === "string" ? parsed.error : "";
    } catch {
      serverMessage = body.trimStart().startsWith("<") ? "" : body; // not an HTML error page
    }
  } else {
    await response.body?.cancel().catch(() => undefined);
  }
  const said = serverMessage ? `; the hub said: ${JSON.stringify(oneLine(serverMessage))}` : "";
  const what = file === undefined ? `the file list of ${repo}@${revision}` : `${file} of ${repo}`;
  const repoUrl = `${settings.endpoint}/${repo}`;
  const tokensUrl = `${settings.endpoint}/settings/tokens`;
  const tokenFrom = settings.tokenSource ?? "HF_TOKEN";

  if (errorCode === "GatedRepo") {
    const message = settings.token
      ? `${repo} is a gated model and the token from ${tokenFrom} has no access to it (HTTP ${status} for ${what}): open ` +
        `${repoUrl} logged in as the token's owner and accept its conditions (some authors approve requests by hand, ` +
        `which can take a while), then run again${said}`
      : `${repo} is a gated model and no Hugging Face token was found (HTTP ${status} for ${what}): log in at ${repoUrl} ` +
        `and accept its conditions, create a read token at ${tokensUrl}, then set HF_TOKEN to it ` +
        `(or run \`hf auth login\`, which saves it where this tool looks too)${said}`;
    return new InputError(message, { code: "E_HUB_GATED" });
  }
  if (status === 401 && settings.token && /invalid credentials|invalid user token|token.*(expired|revoked)/i.test(serverMessage)) {
    return new InputError(
      `the Hugging Face token from ${tokenFrom} was rejected by ${settings.endpoint} (HTTP 401 for ${what}): it may be ` +
        `mistyped, expired or revoked; create a new one at ${tokensUrl}, or unset it for public models${said}`,
      { code: "E_HUB_AUTH" },
    );
  }
  if (errorCode === "RevisionNotFound") {
    return new InputError(
      `revision ${JSON.stringify(revision)} not found in ${repo} (HTTP ${status}): use an existing branch, tag or full ` +
        `commit hash (see ${repoUrl}/tree/main), or leave out @revision for main${said}`,
      { code: "E_HUB_REVISION_NOT_FOUND" },
    );
  }
  if (errorCode === "EntryNotFound" || (status === 404 && file !== undefined && errorCode !== "RepoNotFound")) {
    return new InputError(
      `${file ?? "a file"} not found in ${repo} at ${revision} (HTTP ${status}) although the repo lists it; run again, and if ` +
        `it persists the repo or the mirror ${settings.endpoint} is inconsistent${said}`,
      { code: "E_HUB_FILE_NOT_FOUND" },
    );
  }
  if (errorCode === "RepoNotFound" || status === 404 || (status === 401 && file === undefined)) {
    const tokenNote = settings.token
      ? ` (the token from ${tokenFrom} was sent and cannot see it)`
      : "; if it is private or gated, set HF_TOKEN to a token that can read it";
    return new InputError(
      `model repository ${repo} not found on ${settings.endpoint} (HTTP ${status}${revision !== "main" ? ` for revision ${revision}` : ""}): ` +
        `check the spelling (--model takes a local directory or org/name[@revision])${tokenNote}${said}`,
      { code: "E_HUB_NOT_FOUND" },
    );
  }
  if (status === 401 || status === 403) {
    const fix = settings.token
      ? `the token from ${tokenFrom} lacks permission (a fine-grained token needs read access to ${repo}); create one at ${tokensUrl}`
      : `it is private or gated: create a read token at ${tokensUrl} and set HF_TOKEN to it`;
    return new InputError(`${settings.endpoint} refused ${what} (HTTP ${status}): ${fix}${said}`, { code: "E_HUB_AUTH" });
  }
  if (status === 408 || status === 429 || status >= 500) {
    const hint = status === 429 ? "rate limited; wait a minute" : "the hub is having trouble; try again later";
    return new TransientHubError(`${settings.endpoint} answered HTTP ${status} for ${what} (${hint})${said}`, status);
  }
  return new InputError(`${settings.endpoint} answered HTTP ${status} for ${what}${said}; is HF_ENDPOINT a Hugging Face hub?`, {
    code: "E_HUB_HTTP",
  });
}

/** Out-of-space errno codes, raw or as the cause of another error. */
export function diskFullCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur instanceof Error && depth < 6; cur = cur.cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") return code;
  }
  return undefined;
}

/** The user's Ctrl-C (the signal's abort) while downloading: partial files stay for the next run. */
export function interruptedError(cacheDir: string): OutputError {
  return new OutputError(`download interrupted; partial files stay in ${cacheDir} and resume on the next run`, {
    path: cacheDir,
    code: "E_INTERRUPTED",
  });
}
