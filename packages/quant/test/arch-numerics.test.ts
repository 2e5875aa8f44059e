// build() and generate() against llama.cpp's bytes: with --outtype f32 every tensor is stored as
// float32, so the reference sha256 is the hash of the converter's float32 data.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { getArchitecture } from "@llama-pajamas/gguf/architectures/index.js";
import { addScalar, firstRows, llama3RopeFactors, permuteRopeRows, splitMiddle } from "@llama-pajamas/gguf/architectures/transforms.js";
import type { TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { FIXTURES, type LocatedTensor, loadConfig, loadRef, readF32, readSourceMap, sha256F32 } from "./arch-helpers.js";

function produce(plan: TensorPlan, source: Map<string, LocatedTensor>): Float32Array {
  if (plan.generate) return plan.generate();
  const inputs = plan.sources.map((s) => readF32(source.get(s)!));
  return plan.build ? plan.build(inputs) : inputs[0]!;
}

function checkAgainstRef(model: string, names: (plans: TensorPlan[]) => TensorPlan[]): number {
  const dir = join(FIXTURES, model);
  const config = loadConfig(dir);
  const source = readSourceMap(dir);
  const ref = new Map(loadRef(model, "f32").tensors.map((t) => [t.name, t]));
  const picked = names(getArchitecture(config).tensors(config, source));
  for (const plan of picked) {
    const data = produce(plan, source);
    expect(data.length, plan.name).toBe(plan.shape.reduce((a, b) => a * b, 1));
    expect(data.length * 4, plan.name).toBe(ref.get(plan.name)!.nbytes);
    expect(sha256F32(data), plan.name).toBe(ref.get(plan.name)!.sha256);
  }
  return picked.length;
}

describe("bit-exact against llama.cpp --outtype f32", () => {
  it("llama-tiny: permuted attn_q / attn_k of every layer, plain copies, rope_freqs", () => {
    const n = checkAgainstRef("llama-tiny", (plans) =>
      plans.filter((p) => /attn_[qk]\.weight$|^rope_freqs|blk\.0\.(attn_v|ffn_down|attn_norm)/.test(p.name)),
    );
    expect(n).toBe(4 * 2 + 1 + 3);
  });

  it("llama-tiny: every tensor", () => {
    expect(checkAgainstRef("llama-tiny", (plans) => plans.filter((p) => !p.name.startsWith("token_embd")))).toBe(38);
  });

  it("mixtral-tiny: stacked experts and router of every layer", () => {
    const n = checkAgainstRef("mixtral-tiny", (plans) => plans.filter((p) => /_exps\.weight$|ffn_gate_inp|attn_k\.weight/.test(p.name)));
    expect(n).toBe(2 * 5);
  });

  it("qwen3-tiny: q/k (unpermuted) and q_norm/k_norm", () => {
    const n = checkAgainstRef("qwen3-tiny", (plans) => plans.filter((p) => /blk\.[01]\.attn_[qk](_norm)?\.weight$/.test(p.name)));
    expect(n).toBe(8);
  });
});

describe("transforms", () => {
  it("permuteRopeRows interleaves the two halves of each head", () => {
    // 2 heads of 4 rows, 1 column: head rows [a0 a1 b0 b1] -> [a0 b0 a1 b1]
    const rows = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
    expect([...permuteRopeRows(rows, 8, 2)]).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
  });

  it("llama3RopeFactors: 1 for short wavelengths, factor for long ones, smooth between", () => {
    const f = llama3RopeFactors({ base: 500000, dim: 64, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 });
    expect(f.length).toBe(32);
    expect(f[0]).toBe(1);
    expect(f[31]).toBe(32);
    const mid = [...f].filter((v) => v !== 1 && v !== 32);
    expect(mid.length).toBeGreaterThan(0);
    for (const v of mid) expect(v > 1 && v < 32).toBe(true);
  });

  it("addScalar, firstRows and splitMiddle", () => {
    expect([...addScalar(Float32Array.from([0, -1, 0.5]), 1)]).toEqual([1, 0, 1.5]);
    expect([...firstRows(Float32Array.from([1, 2, 3, 4, 5, 6]), 3, 2)]).toEqual([1, 2, 3, 4]);
    // [2 experts, 2*1 rows, 2 cols]
    const w = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...splitMiddle(w, [2, 2, 2], 0)]).toEqual([1, 2, 5, 6]);
    expect([...splitMiddle(w, [2, 2, 2], 1)]).toEqual([3, 4, 7, 8]);
  });
});
