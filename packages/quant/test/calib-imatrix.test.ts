// Importance matrices computed with the engine (cb_eval through koffi), against llama.cpp's own
// llama-imatrix on the same F16 GGUFs, text, context and chunks. The reference files are
// test/reference/{llama,mixtral}-tiny.imatrix.gguf, made with (see that folder's README)
//
//   llama-imatrix -m MODEL-f16.gguf -f shared/fixtures/text/calib.txt -c 512 --chunks 32 -o MODEL.imatrix.gguf -t 2
//
// which printed calibration perplexities of 20.56 (llama-tiny) and 30.59 (mixtral-tiny).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convert } from "../src/pipeline.js";
import { readGGUF } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { readImatrix } from "../src/quantize/imatrix.js";
import { llamaModelQuantize, type MatMulInput } from "../src/quantize/native.js";
import { ImatrixCollector, type ImatrixResult, computeImatrix, importanceFromImatrix } from "../src/calibration/imatrix.js";
import { readImatrixStats, writeImatrixGGUF } from "../src/calibration/imatrix-file.js";
import { calibrationText } from "../src/calibration/text.js";
import { FIXTURES, REFERENCE, SHARED } from "./helpers.js";

const DATASET = "../shared/fixtures/text/calib.txt"; // as the reference files record it
const CALIB = join(SHARED, "fixtures", "text", "calib.txt");
/** llama-imatrix's calibration perplexity; checked for llama-tiny (scoring it costs time). */
const MODELS: Record<string, number | undefined> = { "llama-tiny": 20.56, "mixtral-tiny": undefined };

let dir: string;
const computed = new Map<string, ImatrixResult>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-calib-imatrix-"));
  for (const m of Object.keys(MODELS)) {
    await convert({ model: join(FIXTURES, m), output: join(dir, m), precisions: ["F16"], threads: 1 });
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("importance matrix vs llama-imatrix", () => {
  for (const [model, ppl] of Object.entries(MODELS)) {
    it(`${model}: every sum within 1e-3 relative, counts and chunk count equal${ppl ? ", same calibration PPL" : ""}`, async () => {
      const text = await readFile(CALIB);
      const r = await computeImatrix({
        model: join(dir, model, "gguf", `${model}-f16.gguf`), text, dataset: DATASET, ctx: 512, chunks: 32, threads: 1, perplexity: ppl !== undefined,
      });
      computed.set(model, r);
      const ref = await readImatrixStats(join(REFERENCE, `${model}.imatrix.gguf`));
      expect([...r.entries.keys()]).toEqual([...ref.entries.keys()]);
      expect(r.chunkCount).toBe(ref.chunkCount);
      expect(r.chunkSize).toBe(ref.chunkSize);
      let worst = { rel: 0, where: "" };
      for (const [name, e] of ref.entries) {
        const o = r.entries.get(name)!;
        expect({ name, counts: o.counts }).toEqual({ name, counts: e.counts });
        expect(o.sums.length).toBe(e.sums.length);
        for (let i = 0; i < e.sums.length; i++) {
          const rel = Math.abs(o.sums[i]! - e.sums[i]!) / Math.max(Math.abs(e.sums[i]!), 1e-30);
          if (rel > worst.rel) worst = { rel, where: `${name}[${i}]: ${o.sums[i]} vs ${e.sums[i]}` };
        }
      }
      expect(worst.rel, worst.where).toBeLessThan(1e-3);
      if (ppl !== undefined) expect(r.perplexity).toBeCloseTo(ppl, 2);
      else expect(r.perplexity).toBeNaN();
      expect(r.tokens).toBe(32 * 512);
    });
  }

  it("covers every expert of the MoE fixture (8 experts, top-2, all routed)", () => {
    const r = computed.get("mixtral-tiny")!;
    expect(r).toBeDefined();
    expect(r.unroutedExperts).toEqual([]);
    const down = r.entries.get("blk.0.ffn_down_exps.weight")!;
    expect(down.counts).toHaveLength(8);
    expect(down.columns).toBe(512);
    // top-2 routing: the experts' counts add up to twice the tokens
    expect(down.counts.reduce((a, b) => a + b, 0)).toBe(2 * 32 * 512);
  });

  it("writes llama.cpp's imatrix GGUF: same header as llama-imatrix's file, read back by the quantizer's reader", async () => {
    const r = computed.get("llama-tiny")!;
    const path = join(dir, "llama-tiny.imatrix.gguf");
    await writeImatrixGGUF(path, r);
    const [ours, theirs] = await Promise.all([readGGUF(path), readGGUF(join(REFERENCE, "llama-tiny.imatrix.gguf"))]);
    expect(ours.dataOffset).toBe(theirs.dataOffset);
    expect(ours.fileBytes).toBe(theirs.fileBytes);
    const [a, b] = await Promise.all([readFile(path), readFile(join(REFERENCE, "llama-tiny.imatrix.gguf"))]);
    expect(a.subarray(0, ours.dataOffset).equals(b.subarray(0, theirs.dataOffset))).toBe(true);
    // llama-quantize's view (per-column means) equals importanceFromImatrix
    const read = await readImatrix(path);
    const direct = importanceFromImatrix(r);
    expect([...read.keys()]).toEqual([...direct.keys()]);
    for (const [k, v] of read) expect(Array.from(v)).toEqual(Array.from(direct.get(k)!));
    expect(read.chunkCount).toBe(32);
    expect(read.datasets).toEqual([DATASET]);
  });

  it("drives llama_model_quantize to IQ3_XXS (an imatrix-only type) for the MoE fixture", async () => {
    const r = computed.get("mixtral-tiny")!;
    const path = join(dir, "mixtral-tiny.imatrix.gguf");
    await writeImatrixGGUF(path, r);
    const out = join(dir, "mixtral-tiny-iq3_xxs.gguf");
    await llamaModelQuantize({
      input: join(dir, "mixtral-tiny", "gguf", "mixtral-tiny-f16.gguf"),
      output: out,
      ftype: LlamaFtype.MOSTLY_IQ3_XXS,
      nThread: 1,
      imatrix: await readImatrix(path),
    });
    expect((await readGGUF(out)).tensors.length).toBeGreaterThan(0);
  });
});

describe("the collector (llama-imatrix's rules)", () => {
  const f32 = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

  it("sums squares per column, skips small and non-blk multiplications, counts rows", () => {
    const c = new ImatrixCollector();
    expect(c.wants({ op: "MUL_MAT", weight: "blk.0.attn_q.weight", xRows: 16, xIsF32: true })).toBe(true);
    expect(c.wants({ op: "MUL_MAT", weight: "blk.0.attn_q.weight", xRows: 15, xIsF32: true })).toBe(false);
    expect(c.wants({ op: "MUL_MAT", weight: "output.weight", xRows: 512, xIsF32: true })).toBe(false);
    expect(new ImatrixCollector(true).wants({ op: "MUL_MAT", weight: "output.weight", xRows: 512, xIsF32: true })).toBe(true);
    expect(c.wants({ op: "MUL_MAT", weight: "cache_k_l0", xRows: 512, xIsF32: true })).toBe(false);
    expect(c.wants({ op: "MUL_MAT_ID", weight: "blk.0.ffn_up_exps.weight", xRows: 1, xIsF32: true })).toBe(true);
    const m: MatMulInput = { op: "MUL_MAT", weight: "w", weightNe: [3, 5, 1, 1], x: f32(3 * 20, (i) => (i % 3) + 1), xNe: [3, 20, 1, 1], xStride: [1, 3, 60, 60] };
    c.observe(m);
    c.observe(m);
    const e = c.entries.get("w")!;
    expect(Array.from(e.sums)).toEqual([40, 160, 360]);
    expect(e.counts).toEqual([40]);
  });

  it("keeps per-expert sums and counts for MUL_MAT_ID, and reports experts never routed", () => {
    const c = new ImatrixCollector();
    // 4 experts of 2 columns; 3 tokens, top-2: token t goes to experts [0, 1], [1, 0], [0, 1]
    const ids = Int32Array.from([0, 1, 1, 0, 0, 1]); // ne [2 slots, 3 tokens]
    const x = f32(2 * 1 * 3, (i) => i + 1); // ne [2 cols, 1 (broadcast), 3 tokens]
    c.observe({ op: "MUL_MAT_ID", weight: "e", weightNe: [2, 4, 4, 1], x, xNe: [2, 1, 3, 1], xStride: [1, 2, 2, 6], ids, idsNe: [2, 3], idsStride: [1, 2] });
    const e = c.entries.get("e")!;
    expect(e.counts).toEqual([3, 3, 0, 0]);
    // every token's row goes to both its experts: both see 1+9+25 / 4+16+36
    expect(Array.from(e.sums)).toEqual([35, 56, 35, 56, 0, 0, 0, 0]);
    const imp = importanceFromImatrix({ entries: c.entries, datasets: [], chunkCount: 0, chunkSize: 512 });
    expect(Array.from(imp.get("e")!)).toEqual([35 / 3, 56 / 3, 35 / 3, 56 / 3, 1, 1, 1, 1].map(Math.fround));
  });
});

describe("calibration text", () => {
  it("defaults to the built-in text, reads files, and says what to do when a dataset cannot be had", async () => {
    const d = await calibrationText();
    expect(d.text.byteLength).toBeGreaterThan(200_000);
    expect(Buffer.from(d.text).subarray(0, 6).toString()).toBe("sunau ");
    expect((await calibrationText({ file: CALIB })).name).toBe(CALIB);
    // offline with an empty cache (no request is made; calibration-hub-*.test.ts covers fetching)
    const offline = { HF_HUB_OFFLINE: "1", HF_HOME: join(tmpdir(), "lp-no-such-hf-home") };
    await expect(calibrationText({ dataset: "wikitext", hub: { env: offline } })).rejects.toThrow(/calibration-file/);
    await expect(calibrationText({ dataset: "pile" })).rejects.toThrow(/unknown calibration dataset/);
  });
});
