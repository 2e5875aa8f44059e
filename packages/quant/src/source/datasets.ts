// Rows of a Hugging Face dataset split, read through the dataset viewer's rows API
// (GET {server}/rows?dataset=&config=&split=&offset=&length=, at most 100 rows per request),
// and kept in a local cache as pages so that a second run makes no request and works offline.
// The rows API reads only the rows asked for and needs no parquet or snappy reader; the hub's
// own files would mean whole shards (c4's en validation split is 8 gzip files of ~40 MB).
//
//   <HF_DATASETS_CACHE, else HF_HOME/datasets>/llama-pajamas-rows/<org>___<name>/<config>/<split>/
//     split.json           {dataset, config, split, num_rows_total}
//     rows-<offset>.json   {offset, rows: [row, ...]}   offset a multiple of 100; rows as served
//
// HF_DATASETS_CACHE and HF_HOME are the variables the `datasets` library reads; this folder sits
// beside its own. HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) means the cache only; HF_TOKEN is sent.

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { randomBytes } from "node:crypto";
import { InputError, OutputError } from "@llama-pajamas/artifact";
import { describeNetworkError, diskFullCode, hubGet, readTextLimited, TransientHubError } from "./hub-http.js";
import { type HubSettings, hubSettingsFromEnv } from "./hub-settings.js";

export const DATASETS_SERVER = "https://datasets-server.huggingface.co";
/** The rows API's largest page. */
export const ROWS_PER_PAGE = 100;
/** Largest page answer read (100 rows of long documents stay far below). */
const MAX_PAGE_BYTES = 64 * 1024 * 1024;
/** Tries per page when the server is briefly unavailable (connection, 5xx, 429). */
const PAGE_ATTEMPTS = 4;
/** Pages requested at once. */
const CONCURRENCY = 4;
/** The rows API can take a while on a split it has not served lately. */
const MIN_TIMEOUT_MS = 30_000;
const CACHE_FOLDER = "llama-pajamas-rows";
const NAME = /^[A-Za-z0-9][\w.-]{0,95}$/;

export interface DatasetSplitId {
  /** "org/name" (or a canonical "name"). */
  dataset: string;
  config: string;
  split: string;
}

export type DatasetRow = Record<string, unknown>;

export interface DatasetRowsOptions {
  /** Where HF_* variables are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Overrides of what the environment says (offline, token, timeouts). */
  settings?: Partial<HubSettings>;
  /** The rows API's origin (default HF_DATASETS_SERVER, else https://datasets-server.huggingface.co). */
  server?: string;
  /** The cache folder (default HF_DATASETS_CACHE, else HF_HOME/datasets; pages go under llama-pajamas-rows/). */
  cacheDir?: string;
  /** Pause before retrying a failed page, times the attempt number (default 1000 ms). */
  retryDelayMs?: number;
  signal?: AbortSignal;
  /** What else the user can do when the rows cannot be had, for messages ("pass --calibration-file FILE"). */
  fallback?: string;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === "" ? undefined : v;
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

/** datasets' config.py: HF_DATASETS_CACHE, else HF_HOME/datasets (HF_HOME as huggingface_hub reads it). */
export function datasetsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const hfHome = nonEmpty(env.HF_HOME) ?? join(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), ".cache"), "huggingface");
  return resolve(expandHome(nonEmpty(env.HF_DATASETS_CACHE) ?? join(expandHome(hfHome), "datasets")));
}

export function checkDatasetSplitId(id: DatasetSplitId): DatasetSplitId {
  const parts = id.dataset.split("/");
  if (parts.length > 2 || !parts.every((p) => NAME.test(p) && !p.includes(".."))) {
    throw new InputError(`dataset id ${JSON.stringify(id.dataset)} is not of the form org/name`, { code: "E_DATASET_ID" });
  }
  for (const [what, v] of [["config", id.config], ["split", id.split]] as const) {
    if (!NAME.test(v) || v.includes("..")) throw new InputError(`dataset ${what} ${JSON.stringify(v)} is not a plain name`, { code: "E_DATASET_ID" });
  }
  return id;
}

/** "cais/mmlu (all, test)" */
export function describeSplit(id: DatasetSplitId): string {
  return `${id.dataset} (${id.config}, ${id.split})`;
}

interface Page {
  offset: number;
  rows: DatasetRow[];
}

/**
 * One split's rows, page by page: from memory, else the cache, else the rows API (and then the
 * cache). `requests` counts the HTTP requests made.
 */
export class DatasetRows {
  readonly dir: string;
  readonly server: string;
  requests = 0;
  private readonly settings: HubSettings;
  private readonly offlineVar: string | undefined;
  private readonly pages = new Map<number, Promise<Page>>();
  private totalRows: number | undefined;

  constructor(
    readonly id: DatasetSplitId,
    private readonly opts: DatasetRowsOptions = {},
  ) {
    checkDatasetSplitId(id);
    const env = opts.env ?? process.env;
    this.settings = { ...hubSettingsFromEnv(env), ...opts.settings };
    this.server = (opts.server ?? nonEmpty(env.HF_DATASETS_SERVER) ?? DATASETS_SERVER).replace(/\/+$/, "");
    const datasetsOffline = ["1", "ON", "YES", "TRUE"].includes((env.HF_DATASETS_OFFLINE ?? "").toUpperCase());
    this.offlineVar = this.settings.offline ? "HF_HUB_OFFLINE" : datasetsOffline ? "HF_DATASETS_OFFLINE" : undefined;
    this.dir = join(opts.cacheDir ?? datasetsCacheDir(env), CACHE_FOLDER, id.dataset.replace("/", "___"), id.config, id.split);
  }

  /** Rows in the split (num_rows_total), from the cache or with the first page. */
  async total(): Promise<number> {
    if (this.totalRows !== undefined) return this.totalRows;
    try {
      const meta = JSON.parse(await readFile(join(this.dir, "split.json"), "utf8")) as { num_rows_total?: unknown };
      if (isCount(meta.num_rows_total)) return (this.totalRows = meta.num_rows_total);
    } catch {
      // not cached yet (or damaged): ask the server
    }
    const first = this.fetchAndCache(0);
    first.catch(() => undefined);
    this.pages.set(0, first);
    await first;
    return this.totalRows!;
  }

  /** The rows at these indices (each < total()), in the order given. */
  async rowsAt(indices: readonly number[]): Promise<DatasetRow[]> {
    const total = await this.total();
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= total) throw new RangeError(`row ${i} is outside ${describeSplit(this.id)}, which has ${total} rows`);
    }
    const offsets = [...new Set(indices.map((i) => i - (i % ROWS_PER_PAGE)))];
    const loaded = new Map<number, Page>();
    for (let k = 0; k < offsets.length; k += CONCURRENCY) {
      const wave = await Promise.all(offsets.slice(k, k + CONCURRENCY).map((o) => this.page(o)));
      for (const p of wave) loaded.set(p.offset, p);
    }
    return indices.map((i) => {
      const row = loaded.get(i - (i % ROWS_PER_PAGE))!.rows[i % ROWS_PER_PAGE];
      if (row === undefined) throw new InputError(`${describeSplit(this.id)}: row ${i} is missing from its page`, { code: "E_DATASET_RESPONSE" });
      return row;
    });
  }

  /** Rows [start, start + count). */
  rows(start: number, count: number): Promise<DatasetRow[]> {
    return this.rowsAt(Array.from({ length: count }, (_, k) => start + k));
  }

  private page(offset: number): Promise<Page> {
    let p = this.pages.get(offset);
    if (!p) {
      p = this.loadPage(offset);
      p.catch(() => undefined);
      this.pages.set(offset, p);
    }
    return p;
  }

  private pagePath(offset: number): string {
    return join(this.dir, `rows-${String(offset).padStart(9, "0")}.json`);
  }

  private async loadPage(offset: number): Promise<Page> {
    return (await this.readCachedPage(offset)) ?? this.fetchAndCache(offset);
  }

  private async fetchAndCache(offset: number): Promise<Page> {
    const last = Math.min(offset + ROWS_PER_PAGE, this.totalRows ?? offset + ROWS_PER_PAGE) - 1;
    const what = `rows ${offset}-${last} of ${describeSplit(this.id)}`;
    if (this.offlineVar) {
      throw new InputError(
        `${this.offlineVar} is set and the cache ${this.dir} does not hold ${what}; run once online to fetch them${this.fallbackNote()}`,
        { code: "E_OFFLINE_MISSING", path: this.dir },
      );
    }
    let page: Page;
    try {
      page = await this.fetchPage(offset, what);
    } catch (e) {
      if (!(e instanceof TransientHubError) || this.opts.signal?.aborted) throw e;
      throw new InputError(
        `cannot read ${what} from ${this.server} (${e.message}), and the cache ${this.dir} does not hold them; ` +
          `check the network or proxy (HF_DATASETS_SERVER names another server)${this.fallbackNote()}`,
        { code: e.status === undefined ? "E_NETWORK" : "E_HUB_HTTP", cause: e },
      );
    }
    await this.writeCache(page);
    return page;
  }

  private fallbackNote(): string {
    return this.opts.fallback ? `, or ${this.opts.fallback}` : "";
  }

  private async readCachedPage(offset: number): Promise<Page | undefined> {
    let raw: string;
    try {
      raw = await readFile(this.pagePath(offset), "utf8");
    } catch {
      return undefined;
    }
    try {
      const data = JSON.parse(raw) as { offset?: unknown; rows?: unknown };
      if (data.offset === offset && Array.isArray(data.rows) && data.rows.length > 0 && data.rows.every(isRecord)) {
        return { offset, rows: data.rows };
      }
    } catch {
      // a damaged page (cut write of an older run): fetched again
    }
    return undefined;
  }

  private async writeCache(page: Page): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      const meta = { ...this.id, num_rows_total: this.totalRows };
      await atomicWrite(join(this.dir, "split.json"), JSON.stringify(meta, null, 1) + "\n");
      await atomicWrite(this.pagePath(page.offset), JSON.stringify(page) + "\n");
    } catch (e) {
      const full = diskFullCode(e);
      throw new OutputError(
        `cannot write the dataset cache ${this.dir}: ${full ? `disk full (${full})` : (e as Error).message}; ` +
          `set HF_DATASETS_CACHE (or HF_HOME) to a writable folder`,
        { path: this.dir, cause: e },
      );
    }
  }

  private async fetchPage(offset: number, what: string): Promise<Page> {
    const { dataset, config, split } = this.id;
    const q = new URLSearchParams({ dataset, config, split, offset: String(offset), length: String(ROWS_PER_PAGE) });
    const url = `${this.server}/rows?${q}`;
    // the token goes to the rows server (hubGet sends it to `endpoint`'s origin only)
    const settings = { ...this.settings, endpoint: this.server };
    const timeoutMs = Math.max(this.settings.metadataTimeoutMs, MIN_TIMEOUT_MS);
    const signal = this.opts.signal;
    for (let attempt = 1; ; attempt++) {
      try {
        this.requests++;
        const { response, abort } = await hubGet(url, { settings, timeoutMs, signal, headers: { accept: "application/json" } });
        if (!response.ok) throw await this.httpError(response, what);
        const timer = setTimeout(() => abort(new TransientHubError(`${what} stalled for ${timeoutMs / 1000}s`)), timeoutMs);
        let text: string;
        try {
          text = await readTextLimited(response, MAX_PAGE_BYTES, what);
        } catch (e) {
          if (e instanceof InputError || e instanceof TransientHubError || signal?.aborted) throw e;
          throw new TransientHubError(`${what}: ${describeNetworkError(e)}`, undefined, { cause: e });
        } finally {
          clearTimeout(timer);
        }
        return this.parsePage(text, offset, what);
      } catch (e) {
        if (!(e instanceof TransientHubError) || attempt >= PAGE_ATTEMPTS || signal?.aborted) throw e;
        await sleep((this.opts.retryDelayMs ?? 1000) * attempt, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  private parsePage(text: string, offset: number, what: string): Page {
    const bad = (why: string) =>
      new InputError(`${what} from ${this.server}: ${why}; is HF_DATASETS_SERVER a Hugging Face dataset viewer?`, { code: "E_DATASET_RESPONSE" });
    let data: { rows?: unknown; num_rows_total?: unknown };
    try {
      data = JSON.parse(text) as typeof data;
    } catch (e) {
      throw bad(`not JSON (${(e as Error).message})`);
    }
    if (!isRecord(data) || !Array.isArray(data.rows)) throw bad(`no "rows" array`);
    if (!isCount(data.num_rows_total)) throw bad(`"num_rows_total" is ${JSON.stringify(data.num_rows_total)}`);
    if (this.totalRows !== undefined && data.num_rows_total !== this.totalRows) {
      throw new InputError(
        `${describeSplit(this.id)} has ${data.num_rows_total} rows on ${this.server} but ${this.totalRows} in the cache ${this.dir}: ` +
          `the dataset changed; delete that folder and run again`,
        { code: "E_DATASET_CHANGED", path: this.dir },
      );
    }
    this.totalRows = data.num_rows_total;
    const expected = Math.min(ROWS_PER_PAGE, data.num_rows_total - offset);
    if (expected <= 0) throw bad(`offset ${offset} is past the end (${data.num_rows_total} rows)`);
    if (data.rows.length !== expected) throw bad(`${data.rows.length} rows where ${expected} were expected`);
    const rows = data.rows.map((r: unknown, k: number) => {
      const { row_idx: idx, row, truncated_cells: cut } = (isRecord(r) ? r : {}) as { row_idx?: unknown; row?: unknown; truncated_cells?: unknown };
      if (idx !== offset + k || !isRecord(row)) throw bad(`entry ${k} is not row ${offset + k}`);
      if (Array.isArray(cut) && cut.length > 0) {
        throw new InputError(`${what}: the server cut the cells ${cut.join(", ")} of row ${idx}; the full text cannot be read this way`, {
          code: "E_DATASET_RESPONSE",
        });
      }
      return row;
    });
    return { offset, rows };
  }

  private async httpError(response: Response, what: string): Promise<InputError | TransientHubError> {
    const status = response.status;
    const body = await readTextLimited(response, 4096, "error body").catch(() => "");
    let message = "";
    try {
      const e = (JSON.parse(body) as { error?: unknown }).error;
      message = typeof e === "string" ? e : "";
    } catch {
      message = body.trimStart().startsWith("<") ? "" : body;
    }
    const said = message ? `; the server said: ${JSON.stringify(message.replace(/\s+/g, " ").trim().slice(0, 300))}` : "";
    if (status === 408 || status === 429 || status >= 500) {
      const hint = status === 429 ? "rate limited" : "the server is busy or still preparing the split";
      return new TransientHubError(`HTTP ${status} (${hint})${said}`, status);
    }
    if (status === 401 || status === 403 || status === 404) {
      const page = `${this.settings.endpoint}/datasets/${this.id.dataset}`;
      const token = this.settings.token
        ? ` (the token from ${this.settings.tokenSource ?? "HF_TOKEN"} was sent)`
        : "; if it is gated or private, accept its conditions at " + page + " and set HF_TOKEN";
      return new InputError(
        `${this.server} cannot serve ${what} (HTTP ${status}): check the dataset, config and split names at ${page}${token}${said}`,
        { code: "E_DATASET_NOT_FOUND" },
      );
    }
    return new InputError(`${this.server} answered HTTP ${status} for ${what}${said}`, { code: "E_HUB_HTTP" });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

async function atomicWrite(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/**
 * `n` of `total` indices spread evenly (the middle of each of n equal strata), ascending. On a
 * split sorted by subject, as cais/mmlu's `all` is, every subject gets its share.
 */
export function spreadIndices(total: number, n: number): number[] {
  if (n >= total) return Array.from({ length: total }, (_, i) => i);
  return Array.from({ length: n }, (_, i) => Math.floor(((2 * i + 1) * total) / (2 * n)));
}
