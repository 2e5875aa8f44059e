// `--calibration-dataset wikitext|c4`: calibration text read through a stand-in dataset viewer
// (datasets-server-fake.ts) on 127.0.0.1: the rows asked for, the text they make (bytes and
// sha256), the page cache (a second read makes no request, offline too), only new pages when
// more text is wanted, retries, and the errors that say what to do instead.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PajamasError } from "@llama-pajamas/artifact";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { calibrationText } from "../src/calibration/text.js";
import { DatasetRows, datasetsCacheDir, spreadIndices } from "../src/source/datasets.js";
import { type FakeDatasetsServer, type Row, startFakeDatasetsServer, wikitextRows } from "./datasets-server-fake.js";
import { SHARED } from "./helpers.js";

const CALIB = readFileSync(join(SHARED, "fixtures", "text", "calib.txt"), "utf8");
const WIKI = wikitextRows(CALIB);
const C4: Row[] = CALIB.split(/\n\s*\n/)
  .filter((p) => p.trim() !== "")
  .slice(0, 300)
  .map((text, i) => ({ text, timestamp: "2019-04-25T12:57:54Z", url: `https://example.com/${i}` }));

let server: FakeDatasetsServer;
let home: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startFakeDatasetsServer({
    "Salesforce/wikitext|wikitext-2-raw-v1|train": WIKI,
    "allenai/c4|en|validation": C4,
  });
});
afterAll(() => server.close());
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "lp-calib-hub-"));
  env = { HF_HOME: home, HF_DATASETS_SERVER: server.endpoint };
  server.requests.length = 0;
  delete server.faults.status;
});
afterEach(() => rm(home, { recursive: true, force: true }));

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** The text of wikitext's first rows until `minBytes`, and how many rows that is. */
function expectedWiki(minBytes: number): { text: string; rows: number } {
  let text = "";
  let rows = 0;
  while (Buffer.byteLength(text) < minBytes) text += (WIKI[rows++]!.text as string) || " \n";
  return { text, rows };
}

describe("calibration text from the hub", () => {
  it("reads wikitext's first rows, just enough of them, and names them", async () => {
    const want = expectedWiki(40_000);
    expect(want.rows).toBeGreaterThan(100); // more than one page
    const t = await calibrationText({ dataset: "wikitext", minBytes: 40_000, hub: { env } });
    expect(Buffer.from(t.text).toString("utf8")).toBe(want.text);
    expect(t.info).toEqual({
      source: "dataset",
      dataset: "Salesforce/wikitext",
      config: "wikitext-2-raw-v1",
      split: "train",
      rows: want.rows,
      bytes: Buffer.byteLength(want.text),
      sha256: sha256(want.text),
    });
    expect(t.name).toBe(`Salesforce/wikitext wikitext-2-raw-v1 train[0:${want.rows}]`);
    const pages = Math.ceil(want.rows / 100);
    expect(t.requests).toBe(pages);
    // pages go out up to four at once: compare in offset order
    expect(server.requests.map((r) => r.params).sort((a, b) => Number(a.offset) - Number(b.offset))).toEqual(
      Array.from({ length: pages }, (_, k) => ({ dataset: "Salesforce/wikitext", config: "wikitext-2-raw-v1", split: "train", offset: String(k * 100), length: "100" })),
    );
    const dir = join(home, "datasets", "llama-pajamas-rows", "Salesforce___wikitext", "wikitext-2-raw-v1", "train");
    expect((await readdir(dir)).sort()).toEqual([...Array.from({ length: pages }, (_, k) => `rows-${String(k * 100).padStart(9, "0")}.json`), "split.json"]);
    expect(JSON.parse(await readFile(join(dir, "split.json"), "utf8"))).toMatchObject({ num_rows_total: WIKI.length });
  });

  it("reads the cache on the second run: no request, online or offline", async () => {
    const first = await calibrationText({ dataset: "wikitext", minBytes: 30_000, hub: { env } });
    const made = server.requests.length;
    expect(made).toBeGreaterThan(0);
    const again = await calibrationText({ dataset: "wikitext", minBytes: 30_000, hub: { env } });
    const offline = await calibrationText({ dataset: "wikitext", minBytes: 30_000, hub: { env: { ...env, HF_HUB_OFFLINE: "1" } } });
    expect(server.requests.length).toBe(made);
    expect([again.requests, offline.requests]).toEqual([0, 0]);
    expect(again.info).toEqual(first.info);
    expect(offline.info.sha256).toBe(first.info.sha256);
    // asking for more text fetches only the pages it lacks
    const more = await calibrationText({ dataset: "wikitext", minBytes: 60_000, hub: { env } });
    expect(more.info.rows).toBe(expectedWiki(60_000).rows);
    const offsets = server.requests.slice(made).map((r) => Number(r.params.offset));
    expect(offsets.length).toBe(more.requests);
    expect(Math.min(...offsets)).toBe(Math.ceil(first.info.rows! / 100) * 100);
  });

  it("reads c4's English validation documents, blank-line separated", async () => {
    const t = await calibrationText({ dataset: "c4", minBytes: 10_000, hub: { env } });
    let want = "";
    let n = 0;
    while (Buffer.byteLength(want) < 10_000) want += `${C4[n++]!.text as string}\n\n`;
    expect(Buffer.from(t.text).toString("utf8")).toBe(want);
    expect(t.info).toMatchObject({ dataset: "allenai/c4", config: "en", split: "validation", rows: n, sha256: sha256(want) });
    expect(server.requests[0]!.params).toMatchObject({ dataset: "allenai/c4", config: "en", split: "validation", offset: "0" });
  });

  it("stops at the end of a split and says so", async () => {
    const t = await calibrationText({ dataset: "c4", minBytes: 1e9, hub: { env } });
    expect(t.exhausted).toBe(true);
    expect(t.info.rows).toBe(C4.length);
    expect(server.requests.length).toBe(Math.ceil(C4.length / 100));
  });

  it("offline with nothing cached: names HF_HUB_OFFLINE and --calibration-file", async () => {
    const e = await calibrationText({ dataset: "wikitext", hub: { env: { ...env, HF_HUB_OFFLINE: "1" } } }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PajamasError);
    expect((e as PajamasError).code).toBe("E_OFFLINE_MISSING");
    expect((e as Error).message).toMatch(/^HF_HUB_OFFLINE is set and the cache .* does not hold rows 0-99 of Salesforce\/wikitext \(wikitext-2-raw-v1, train\); run once online .*--calibration-file FILE/);
    const d = await calibrationText({ dataset: "c4", hub: { env: { ...env, HF_DATASETS_OFFLINE: "1" } } }).catch((x: unknown) => x);
    expect((d as Error).message).toMatch(/^HF_DATASETS_OFFLINE is set/);
    expect(server.requests).toEqual([]);
  });

  it("an unreachable server with nothing cached: a network error that names the fix", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const e = await calibrationText({ dataset: "wikitext", hub: { env: { ...env, HF_DATASETS_SERVER: `http://127.0.0.1:${port}` }, retryDelayMs: 1 } }).catch((x: unknown) => x);
    expect((e as PajamasError).code).toBe("E_NETWORK");
    expect((e as Error).message).toMatch(new RegExp(`cannot read rows 0-99 of Salesforce/wikitext .* from http://127.0.0.1:${port} \\(.*ECONNREFUSED.*\\).*--calibration-file FILE`));
  });

  it("retries a busy server, and reports one that keeps failing", async () => {
    server.faults.status = { status: 500, times: 2 };
    const t = await calibrationText({ dataset: "c4", minBytes: 1000, hub: { env, retryDelayMs: 1 } });
    expect(t.info.rows).toBeGreaterThan(0);
    expect(server.requests.length).toBe(3);
    server.faults.status = { status: 429, times: 10 };
    const e = await calibrationText({ dataset: "wikitext", minBytes: 1000, hub: { env, retryDelayMs: 1 } }).catch((x: unknown) => x);
    expect((e as PajamasError).code).toBe("E_HUB_HTTP");
    expect((e as Error).message).toMatch(/HTTP 429 \(rate limited\); the server said: "The server is busier/);
  });

  it("a split the server does not have, and unknown dataset names", async () => {
    const rows = new DatasetRows({ dataset: "nobody/nothing", config: "default", split: "train" }, { env });
    const e = await rows.total().catch((x: unknown) => x);
    expect((e as PajamasError).code).toBe("E_DATASET_NOT_FOUND");
    expect((e as Error).message).toMatch(/HTTP 404\): check the dataset, config and split names at https:\/\/huggingface.co\/datasets\/nobody\/nothing; if it is gated/);
    await expect(calibrationText({ dataset: "pile" })).rejects.toThrow(/unknown calibration dataset "pile"; datasets: wikitext, c4/);
    expect(() => new DatasetRows({ dataset: "../x", config: "a", split: "b" })).toThrow(/not of the form org\/name/);
  });

  it("keeps pages where the datasets library keeps its cache (HF_DATASETS_CACHE, else HF_HOME/datasets)", () => {
    expect(datasetsCacheDir({ HF_HOME: "/h" })).toBe("/h/datasets");
    expect(datasetsCacheDir({ HF_HOME: "/h", HF_DATASETS_CACHE: "/d" })).toBe("/d");
    expect(datasetsCacheDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/huggingface/datasets");
  });

  it("spreads a limited choice evenly", () => {
    expect(spreadIndices(10, 20)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(spreadIndices(40, 8)).toEqual([2, 7, 12, 17, 22, 27, 32, 37]);
    expect(spreadIndices(14042, 3)).toEqual([2340, 7021, 11701]);
  });
});
