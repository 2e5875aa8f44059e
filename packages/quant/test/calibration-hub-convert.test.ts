// `convert --calibrate --calibration-dataset wikitext` end to end against a stand-in dataset
// viewer (datasets-server-fake.ts): the importance matrix is the one the engine computes on
// exactly the rows' text, the artifact records which rows (gguf/metadata.json, imatrix.datasets,
// quantize.imatrix.dataset), a second run through the CLI is offline and makes no request, and a
// text that tokenizes short of samples x ctx is topped up with more rows.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calibrateCheckpoint } from "../src/calibration/calibrate.js";
import { computeImatrix } from "../src/calibration/imatrix.js";
import { readImatrixStats } from "../src/calibration/imatrix-file.js";
import { convert, type ConvertResult } from "../src/pipeline.js";
import { readGGUF } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { startCli } from "./cli-helpers.js";
import { type FakeDatasetsServer, type Row, startFakeDatasetsServer, wikitextRows } from "./datasets-server-fake.js";
import { FIXTURES, SHARED } from "./helpers.js";

const WIKI = wikitextRows(readFileSync(join(SHARED, "fixtures", "text", "calib.txt"), "utf8"));
// long words: ~11 bytes per Llama-2 token, far above the 4 the first read assumes
const WORDS = ["international", "development", "organization", "information", "environment", "government", "understanding", "responsibility"];
const LONG: Row[] = Array.from({ length: 400 }, (_, i) => ({
  text: Array.from({ length: 12 }, (_, k) => WORDS[(i * 5 + k * 3) % WORDS.length]).join(" "),
  timestamp: "2019-04-25T12:57:54Z",
  url: `https://example.com/${i}`,
}));
const SAMPLES = 4;
const CTX = 128;

let server: FakeDatasetsServer;
let dir: string;
let env: NodeJS.ProcessEnv;
let result: ConvertResult;
const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

beforeAll(async () => {
  server = await startFakeDatasetsServer({ "Salesforce/wikitext|wikitext-2-raw-v1|train": WIKI, "allenai/c4|en|validation": LONG });
  dir = await mkdtemp(join(tmpdir(), "lp-calib-hub-convert-"));
  env = { HF_HOME: join(dir, "hf"), HF_DATASETS_SERVER: server.endpoint };
  result = await convert({
    model: join(FIXTURES, "llama-tiny"),
    output: join(dir, "cal"),
    precisions: ["F16", "Q4_K_M"],
    threads: 1,
    calibrate: { dataset: "wikitext", samples: SAMPLES, ctx: CTX },
    hub: { env },
  });
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** wikitext's first rows until `minBytes`. */
function expectedWiki(minBytes: number): { text: string; rows: number } {
  let text = "";
  let rows = 0;
  while (Buffer.byteLength(text) < minBytes) text += (WIKI[rows++]!.text as string) || " \n";
  return { text, rows };
}

describe("convert --calibrate --calibration-dataset", () => {
  // samples x ctx tokens at 4 bytes each, plus 15%
  const want = expectedWiki(Math.ceil(SAMPLES * CTX * 4 * 1.15));

  it("computes the imatrix on exactly the rows' text and records which rows", async () => {
    const name = `Salesforce/wikitext wikitext-2-raw-v1 train[0:${want.rows}]`;
    const info = { source: "dataset", dataset: "Salesforce/wikitext", config: "wikitext-2-raw-v1", split: "train", rows: want.rows, bytes: Buffer.byteLength(want.text), sha256: sha256(want.text) };
    expect(result.calibration).toMatchObject({ chunks: SAMPLES, tokens: SAMPLES * CTX, text: info });
    expect(server.requests.length).toBe(Math.ceil(want.rows / 100));

    const stats = await readImatrixStats(join(dir, "cal", "imatrix.gguf"));
    expect(stats.datasets).toEqual([name]);
    const q4 = await readGGUF(join(dir, "cal", "gguf", "llama-tiny-q4_k_m.gguf"));
    expect(q4.kv.get("quantize.imatrix.dataset")?.value).toBe(name);
    const meta = JSON.parse(await readFile(join(dir, "cal", "gguf", "metadata.json"), "utf8")) as { calibration: unknown };
    expect(meta.calibration).toEqual({
      imatrix: "imatrix.gguf",
      chunks: SAMPLES,
      chunk_size: CTX,
      tokens: SAMPLES * CTX,
      text: { source: "dataset", name, dataset: "Salesforce/wikitext", config: "wikitext-2-raw-v1", split: "train", rows: want.rows, bytes: info.bytes, sha256: info.sha256 },
    });

    // the same text given directly gives the same sums, value for value
    const direct = await computeImatrix({ model: join(dir, "cal", "gguf", "llama-tiny-f16.gguf"), text: want.text, dataset: "x", ctx: CTX, chunks: SAMPLES, threads: 1 });
    expect([...stats.entries.keys()]).toEqual([...direct.entries.keys()]);
    for (const [k, e] of direct.entries) {
      expect(stats.entries.get(k)!.counts).toEqual(e.counts);
      expect(Buffer.from(stats.entries.get(k)!.sums.buffer).equals(Buffer.from(e.sums.buffer))).toBe(true);
    }
  });

  it("runs again through the CLI offline from the cache, with no request, to the same imatrix", async () => {
    const before = server.requests.length;
    const out = join(dir, "again");
    const exports = `export HF_HOME=${shellQuote(env.HF_HOME!)} HF_DATASETS_SERVER=${shellQuote(server.endpoint)} HF_HUB_OFFLINE=1`;
    const args = ["convert", "--model", join(FIXTURES, "llama-tiny"), "--output", out, "--precision", "q4_k_m", "--calibrate",
      "--calibration-dataset", "wikitext", "--calibration-samples", String(SAMPLES), "--calibration-ctx", String(CTX), "--threads", "1", "--json"];
    const r = await startCli(args, { shell: exports, timeoutMs: 120_000 }).done;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(server.requests.length).toBe(before);
    const json = JSON.parse(r.stdout) as ConvertResult;
    expect(json.calibration!.text).toEqual(result.calibration!.text);
    expect(sha256(await readFile(join(out, "imatrix.gguf")))).toBe(sha256(await readFile(join(dir, "cal", "imatrix.gguf"))));

    // offline with an empty cache: exit 1 before any work, naming the way out
    const empty = `export HF_HOME=${shellQuote(join(dir, "empty"))} HF_DATASETS_SERVER=${shellQuote(server.endpoint)} HF_HUB_OFFLINE=1`;
    const failed = await startCli([...args.slice(0, 4), join(dir, "never"), ...args.slice(5)], { shell: empty }).done;
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^error: HF_HUB_OFFLINE is set and the cache .* does not hold rows 0-99 of Salesforce\/wikitext .*--calibration-file FILE/);
    await expect(stat(join(dir, "never"))).rejects.toThrow();
    expect(server.requests.length).toBe(before);
  });

  it("reads more rows when the text tokenizes short of samples x ctx", async () => {
    const f16 = join(dir, "cal", "gguf", "llama-tiny-f16.gguf");
    const cal = await calibrateCheckpoint({
      model: "unused",
      calibrate: { dataset: "c4", samples: SAMPLES, ctx: CTX, threads: 1 },
      convertF16: async () => f16,
      hub: { env },
    });
    try {
      expect(cal.result.chunkCount).toBe(SAMPLES);
      expect(cal.result.tokens).toBe(SAMPLES * CTX);
      // the first read stopped at ~2.4 KB, about 200 tokens of this text
      const firstRows = LONG.reduce<{ n: number; bytes: number }>((a, r) => (a.bytes >= 2356 ? a : { n: a.n + 1, bytes: a.bytes + Buffer.byteLength(`${r.text as string}\n\n`) }), { n: 0, bytes: 0 }).n;
      expect(cal.text.info.rows).toBeGreaterThan(firstRows * 2);
      expect(cal.text.info.rows).toBeLessThan(LONG.length);
      const text = LONG.slice(0, cal.text.info.rows).map((r) => `${r.text as string}\n\n`).join("");
      expect(cal.text.info.sha256).toBe(sha256(text));
    } finally {
      await cal.cleanup();
    }
  });
});
