// KL divergence in one lockstep pass, against llama-perplexity --kl-divergence on the same GGUF
// files (our conversions of the fixtures). Reference figures, llama.cpp 80fb11ac, -t 2:
//
//   llama-perplexity -m MODEL-f16.gguf -f shared/fixtures/text/eval.txt -c 512 --chunks 8 \
//       --kl-divergence-base MODEL-f16.kld
//   llama-perplexity -m MODEL-QUANT.gguf --kl-divergence-base MODEL-f16.kld --kl-divergence -c 512 --chunks 8
//
// Values are what it prints: Mean PPL(Q), Mean PPL(base), Mean KLD, Median KLD, 99.0% KLD,
// Maximum KLD, RMS Δp, Same top p. llama.cpp stores the F16 log-probabilities in 16 bits, so
// its PPL(base) is not the F16 run's; with base16Bit our pass reads them the same way.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "@llama-pajamas/artifact";
import { convert } from "../src/pipeline.js";
import { checkSameVocabulary, klDivergence, percentile } from "../src/validation/kl-divergence.js";
import type { EngineModel } from "../src/quantize/native.js";
import { EVAL_TEXT, FIXTURES } from "./helpers.js";

interface Ref {
  model: "llama-tiny" | "mixtral-tiny";
  quant: string;
  pplQ: number;
  pplBase16: number;
  pplF16: number;
  mean: number;
  median: number;
  p99: number;
  max: number;
  rmsDp: number;
  sameTop: number;
}

const REFS: Ref[] = [
  { model: "llama-tiny", quant: "Q8_0", pplQ: 10.358775, pplBase16: 10.350638, pplF16: 10.3506, mean: 0.000833, median: 0.000413, p99: 0.006703, max: 0.062259, rmsDp: 0.668, sameTop: 98.431 },
  { model: "llama-tiny", quant: "Q2_K", pplQ: 11.715551, pplBase16: 10.350638, pplF16: 10.3506, mean: 0.154157, median: 0.098789, p99: 0.957945, max: 2.044897, rmsDp: 10.208, sameTop: 81.569 },
  { model: "mixtral-tiny", quant: "Q4_K_M", pplQ: 14.451018, pplBase16: 14.3657, pplF16: 14.3825, mean: 0.016439, median: 0.008768, p99: 0.101255, max: 1.688483, rmsDp: 2.811, sameTop: 94.314 },
];

const rel = (a: number, b: number) => Math.abs(a / b - 1);

let dir: string;
let text: Buffer;
const gguf = (model: string, method: string) => join(dir, model, "gguf", `${model}-${method.toLowerCase()}.gguf`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-validate-kld-"));
  text = await readFile(EVAL_TEXT);
  await convert({ model: join(FIXTURES, "llama-tiny"), output: join(dir, "llama-tiny"), precisions: ["F16", "Q8_0", "Q2_K"], threads: 1 });
  await convert({ model: join(FIXTURES, "mixtral-tiny"), output: join(dir, "mixtral-tiny"), precisions: ["F16", "Q4_K_M"], threads: 1 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("KL divergence vs llama-perplexity --kl-divergence", () => {
  const results = new Map<string, Awaited<ReturnType<typeof klDivergence>>>();

  for (const ref of REFS) {
    it(`${ref.model} ${ref.quant}: mean KLD, same-top and RMS Δp within 1%, both perplexities within 0.1%`, async () => {
      const r = await klDivergence({ original: gguf(ref.model, "F16"), quantized: gguf(ref.model, ref.quant), text, ctx: 512, chunks: 8, threads: 1 });
      results.set(`${ref.model} ${ref.quant}`, r);
      expect(rel(r.kld.mean, ref.mean)).toBeLessThan(0.01);
      expect(rel(r.sameTopPct, ref.sameTop)).toBeLessThan(0.01);
      expect(rel(r.rmsDpPct, ref.rmsDp)).toBeLessThan(0.01);
      expect(rel(r.kld.p99, ref.p99)).toBeLessThan(0.01);
      expect(rel(r.kld.max, ref.max)).toBeLessThan(0.01);
      expect(rel(r.kld.median, ref.median)).toBeLessThan(0.02); // the median of tiny values moves with llama.cpp's 16-bit storage
      expect(rel(r.perplexity.quantized, ref.pplQ)).toBeLessThan(0.001);
      expect(rel(r.perplexity.original, ref.pplF16)).toBeLessThan(0.001); // exact F16 log-probabilities: the F16 run's own figure
      expect(r.tokensScored).toBe(8 * 255);
    });
  }

  it("orders the quantizations: Q2_K diverges more than Q8_0", () => {
    const q8 = results.get("llama-tiny Q8_0")!;
    const q2 = results.get("llama-tiny Q2_K")!;
    expect(q8 && q2).toBeTruthy();
    expect(q2.kld.mean).toBeGreaterThan(20 * q8.kld.mean);
    expect(q2.sameTopPct).toBeLessThan(q8.sameTopPct);
    expect(q2.perplexity.quantized).toBeGreaterThan(q8.perplexity.quantized);
  });

  it("with base16Bit, reproduces llama.cpp's printed figures digit for digit (PPL(base) included)", async () => {
    const ref = REFS[0]!;
    const r = await klDivergence({
      original: gguf(ref.model, "F16"), quantized: gguf(ref.model, ref.quant), text, ctx: 512, chunks: 8, threads: 1, base16Bit: true,
    });
    expect(r.perplexity.original.toFixed(6)).toBe(ref.pplBase16.toFixed(6));
    expect(r.perplexity.quantized.toFixed(6)).toBe(ref.pplQ.toFixed(6));
    expect(r.kld.mean.toFixed(6)).toBe(ref.mean.toFixed(6));
    expect(r.kld.median.toFixed(6)).toBe(ref.median.toFixed(6));
    expect(r.kld.p99.toFixed(6)).toBe(ref.p99.toFixed(6));
    expect(r.kld.max.toFixed(6)).toBe(ref.max.toFixed(6));
    expect(r.rmsDpPct.toFixed(3)).toBe(ref.rmsDp.toFixed(3));
    expect(r.sameTopPct.toFixed(3)).toBe(ref.sameTop.toFixed(3));
  });

  it("refuses models with different vocabularies, and texts shorter than two windows", async () => {
    const stub = (path: string, nVocab: number) => ({ path, info: { nVocab, bos: 1, addBos: true } }) as unknown as EngineModel;
    expect(() => checkSameVocabulary(stub("a.gguf", 32000), stub("b.gguf", 151936))).toThrow(/different vocabularies/);
    expect(() => checkSameVocabulary(stub("a.gguf", 32000), stub("b.gguf", 32000))).not.toThrow();
    await expect(klDivergence({ original: gguf("llama-tiny", "F16"), quantized: gguf("llama-tiny", "Q8_0"), text: "too short", threads: 1 }))
      .rejects.toThrow(UsageError);
  });
});

describe("percentile", () => {
  it("interpolates as perplexity.cpp does", () => {
    const v = Float32Array.from([1, 2, 3, 4, 5]);
    expect(percentile(v, 0)).toBe(1);
    expect(percentile(v, 1)).toBe(5);
    expect(percentile(v, 0.5)).toBe(3);
    expect(percentile(v, 0.99)).toBeCloseTo(4.96, 5);
  });
});
