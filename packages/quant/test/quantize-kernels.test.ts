// The WebAssembly port of ggml's Q4_K/Q5_K/Q6_K reference quantizers (assembly/k-quants.ts,
// chosen by quantize/kernels.ts) against ggml_quantize_chunk itself: every 2-D tensor of the
// trained fixtures and random data of several shapes must give the same bytes. The differential
// test (quantize-differential.test.ts) then checks whole conversions against llama_model_quantize;
// this file also makes sure the port is what those conversions used.

import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { arch } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { openCheckpointTensors, readTensorF32 } from "@llama-pajamas/gguf/formats/safetensors.js";
import { KERNELS_ENV, kernelStatus, quantizeValues } from "../src/quantize/kernels.js";
import { quantizeRows } from "../src/quantize/native.js";

const FIXTURES = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "models");
const PORTED = [
  { name: "Q4_K", type: GGMLType.Q4_K, blockBytes: 144 },
  { name: "Q5_K", type: GGMLType.Q5_K, blockBytes: 176 },
  { name: "Q6_K", type: GGMLType.Q6_K, blockBytes: 210 },
];

/** Blocks whose bytes differ, and the first of them. */
function diffBlocks(a: Uint8Array, b: Uint8Array, blockBytes: number): { blocks: number; differing: number; first?: number } {
  expect(a.length).toBe(b.length);
  let differing = 0;
  let first: number | undefined;
  for (let blk = 0; blk < a.length / blockBytes; blk++) {
    for (let i = blk * blockBytes; i < (blk + 1) * blockBytes; i++) {
      if (a[i] !== b[i]) {
        differing++;
        first ??= blk;
        break;
      }
    }
  }
  return { blocks: a.length / blockBytes, differing, first };
}

/** A seeded generator (xorshift32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}

describe("k-quant kernels", () => {
  it("uses the WebAssembly port on x86-64, where it matches the prebuilt ggml", () => {
    const status = kernelStatus();
    if (arch() === "x64") {
      expect(status).toEqual({ types: { Q4_K: "wasm-simd", Q5_K: "wasm-simd", Q6_K: "wasm-simd" } });
    } else {
      // elsewhere ggml may be built with fused multiply-adds; then the probe keeps it on ggml
      expect(Object.keys(status.types).sort()).toEqual(["Q4_K", "Q5_K", "Q6_K"]);
    }
  });

  it(`${KERNELS_ENV}=ggml keeps every type on ggml`, () => {
    const url = pathToFileURL(join(import.meta.dirname, "..", "dist", "quantize", "kernels.js")).href;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(url)}); console.log(JSON.stringify(m.kernelStatus()))`], {
      env: { ...process.env, [KERNELS_ENV]: "ggml" },
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual({ types: { Q4_K: "ggml", Q5_K: "ggml", Q6_K: "ggml" }, reason: `${KERNELS_ENV}=ggml` });
  });

  for (const fixture of ["llama-tiny", "qwen3-tiny"]) {
    it(`gives ggml's bytes for every 2-D tensor of ${fixture}`, async () => {
      const tensors = await openCheckpointTensors(join(FIXTURES, fixture));
      const report: string[] = [];
      let compared = 0;
      for (const [name, t] of tensors) {
        if (t.shape.length !== 2 || t.shape[1]! % 256 !== 0) continue;
        const values = await readTensorF32(t);
        const [nRows, nPerRow] = [t.shape[0]!, t.shape[1]!];
        for (const { name: typeName, type, blockBytes } of PORTED) {
          const d = diffBlocks(quantizeValues(type, values, nRows, nPerRow), quantizeRows(type, values, nRows, nPerRow), blockBytes);
          compared += d.blocks;
          if (d.differing > 0) report.push(`${name} ${typeName}: ${d.differing}/${d.blocks} blocks differ, first ${d.first}`);
        }
      }
      expect(report).toEqual([]);
      expect(compared).toBeGreaterThan(1000);
    });
  }

  it("gives ggml's bytes on random data: gaussian, heavy-tailed, one-signed, sparse, constant and tiny", () => {
    const rand = rng(20261126);
    const cases: [string, (i: number) => number][] = [
      ["gaussian", () => 0.02 * gaussian(rand)],
      ["heavy tails", () => 0.02 * gaussian(rand) * (rand() < 0.01 ? 50 : 1)],
      ["positive", () => Math.abs(0.02 * gaussian(rand))],
      ["negative", () => -Math.abs(0.02 * gaussian(rand))],
      ["sparse", () => (rand() < 0.9 ? 0 : gaussian(rand))],
      ["constant runs", (i) => (Math.floor(i / 32) % 3 === 0 ? 0.5 : Math.floor(i / 16) % 5 === 0 ? 0 : gaussian(rand))],
      ["tiny", () => 1e-20 * gaussian(rand)],
      ["large", () => 1e4 * gaussian(rand)],
      ["integers", () => Math.round(8 * gaussian(rand))],
    ];
    const report: string[] = [];
    for (const nPerRow of [256, 768, 2048]) {
      const nRows = 24;
      for (const [label, gen] of cases) {
        const values = new Float32Array(nRows * nPerRow);
        for (let i = 0; i < values.length; i++) values[i] = gen(i);
        for (const { name, type, blockBytes } of PORTED) {
          const d = diffBlocks(quantizeValues(type, values, nRows, nPerRow), quantizeRows(type, values, nRows, nPerRow), blockBytes);
          if (d.differing > 0) report.push(`${label} x${nPerRow} ${name}: ${d.differing}/${d.blocks} blocks differ, first ${d.first}`);
        }
      }
    }
    expect(report).toEqual([]);
  });

  it("leaves rows the port does not cover to ggml: importance weights, other types, rows not a multiple of 256", () => {
    const rand = rng(7);
    const values = new Float32Array(8 * 512).map(() => 0.02 * gaussian(rand));
    const imatrix = new Float32Array(512).map(() => rand() + 0.1);
    // with an importance vector Q4_K is ggml's make_qkx3_quants path, which differs from the plain one
    const withImatrix = quantizeValues(GGMLType.Q4_K, values, 8, 512, imatrix);
    expect(Buffer.from(withImatrix).equals(Buffer.from(quantizeRows(GGMLType.Q4_K, values, 8, 512, imatrix)))).toBe(true);
    expect(Buffer.from(withImatrix).equals(Buffer.from(quantizeRows(GGMLType.Q4_K, values, 8, 512)))).toBe(false);
    expect(Buffer.from(quantizeValues(GGMLType.Q8_0, values, 8, 512)).equals(Buffer.from(quantizeRows(GGMLType.Q8_0, values, 8, 512)))).toBe(true);
    // 96 values per row: ggml's own error, not the port's
    expect(() => quantizeValues(GGMLType.Q4_K, values.subarray(0, 96 * 4), 4, 96)).toThrow(/not a multiple of the Q4_K block size 256/);
  });
});
