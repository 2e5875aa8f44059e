// QuantizePool with real worker threads. Workers cannot load .ts, so the worker module is
// bundled with esbuild (vitest's own dependency) into node_modules/.cache for the test, where
// koffi and node-llama-cpp resolve as they do for the compiled package.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { UsageError } from "@llama-pajamas/artifact";
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { quantizeRows } from "../src/quantize/native.js";
import { QuantizePool, quantizeSync } from "../src/quantize/pool.js";

const REPO = join(import.meta.dirname, "..", "..", "..");
let workerUrl: URL;
let outfile: string;
let pool: QuantizePool;

beforeAll(async () => {
  const outDir = join(REPO, "node_modules", ".cache", "llama-pajamas-quant-test");
  await mkdir(outDir, { recursive: true });
  outfile = join(outDir, `worker-${process.pid}.mjs`);
  await build({
    entryPoints: [join(REPO, "packages", "quant", "src", "quantize", "worker.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["koffi"],
    logLevel: "error",
  });
  workerUrl = pathToFileURL(outfile);
  pool = new QuantizePool({ threads: 2, workerUrl });
});

afterAll(async () => {
  await pool?.close();
  await rm(outfile, { force: true });
});

function weights(n: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.1;
  });
}

describe("QuantizePool", () => {
  it("runs from .ts sources inline, and with workers when given a compiled worker", () => {
    expect(new QuantizePool({ threads: 4 }).mode).toBe("inline");
    expect(new QuantizePool({ threads: 1, workerUrl }).mode).toBe("inline");
    expect(pool.mode).toBe("workers");
    expect(pool.size).toBe(2);
    expect(() => new QuantizePool({ threads: 0 })).toThrow(UsageError);
  });

  it("returns the bytes of a single-threaded run, in row order", async () => {
    const nRows = 300, nPerRow = 512; // 300 rows -> several chunks per worker
    const data = weights(nRows * nPerRow);
    for (const type of [GGMLType.Q4_K, GGMLType.Q8_0, GGMLType.IQ4_NL, GGMLType.F16]) {
      const ours = await pool.quantize({ type, data, nRows, nPerRow });
      expect(Buffer.from(ours).equals(Buffer.from(quantizeRows(type, data, nRows, nPerRow))), `type ${type}`).toBe(true);
    }
    expect(data.length).toBe(nRows * nPerRow); // the caller's buffer is not transferred away
  });

  it("slices a per-expert importance vector by expert, never across an expert boundary", async () => {
    const nExpert = 3, rowsPerExpert = 70, nPerRow = 256;
    const data = weights(nExpert * rowsPerExpert * nPerRow, 5);
    const imatrix = Float32Array.from({ length: nExpert * nPerRow }, (_, i) => 0.1 + ((i * 7919) % 97));
    const ours = await pool.quantize({ type: GGMLType.IQ2_XS, data, nRows: nExpert * rowsPerExpert, nPerRow, imatrix });
    const expected = Buffer.concat(
      [...Array(nExpert).keys()].map((e) =>
        quantizeRows(
          GGMLType.IQ2_XS,
          data.subarray(e * rowsPerExpert * nPerRow, (e + 1) * rowsPerExpert * nPerRow),
          rowsPerExpert,
          nPerRow,
          imatrix.subarray(e * nPerRow, (e + 1) * nPerRow),
        ),
      ),
    );
    expect(Buffer.from(ours).equals(expected)).toBe(true);
    expect(Buffer.from(quantizeSync({ type: GGMLType.IQ2_XS, data, nRows: nExpert * rowsPerExpert, nPerRow, imatrix })).equals(expected)).toBe(true);
  });

  it("passes SharedArrayBuffer input as views", async () => {
    const nRows = 64, nPerRow = 256;
    const shared = new Float32Array(new SharedArrayBuffer(nRows * nPerRow * 4));
    shared.set(weights(nRows * nPerRow, 9));
    const ours = await pool.quantize({ type: GGMLType.Q5_K, data: shared, nRows, nPerRow });
    expect(Buffer.from(ours).equals(Buffer.from(quantizeRows(GGMLType.Q5_K, shared.slice(), nRows, nPerRow)))).toBe(true);
  });

  it("rejects with the worker's error and keeps working", async () => {
    const data = weights(4 * 256);
    await expect(pool.quantize({ type: GGMLType.IQ2_XXS, data, nRows: 4, nPerRow: 256 })).rejects.toThrow(UsageError);
    await expect(pool.quantize({ type: GGMLType.Q4_K, data, nRows: 4, nPerRow: 256, imatrix: new Float32Array(100) })).rejects.toThrow(
      /does not fit/,
    );
    expect(await pool.quantize({ type: GGMLType.Q4_0, data, nRows: 4, nPerRow: 256 })).toHaveLength(4 * 144);
  });

  it("encodes raw BF16/F16/F32 rows: widened, rounded and quantized in the workers", async () => {
    const nRows = 96, nPerRow = 512;
    const values = weights(nRows * nPerRow, 11);
    values[7] = NaN; // an F32/F16/BF16 output carries it through; the quantized types are checked without it
    const clean = weights(nRows * nPerRow, 11);
    const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const sources = {
      BF16: (v: Float32Array) => bytesOf(f32ToBF16(v)),
      F16: (v: Float32Array) => bytesOf(f32ToF16(v)),
      F32: (v: Float32Array) => bytesOf(v),
    };
    const widen = { BF16: (b: Uint8Array) => bf16ToF32(new Uint16Array(b.slice().buffer)), F16: (b: Uint8Array) => f16ToF32(new Uint16Array(b.slice().buffer)), F32: (b: Uint8Array) => new Float32Array(b.slice().buffer) };
    const round = { [GGMLType.F32]: (v: Float32Array) => v, [GGMLType.F16]: (v: Float32Array) => f16ToF32(f32ToF16(v)), [GGMLType.BF16]: (v: Float32Array) => bf16ToF32(f32ToBF16(v)) };
    for (const dtype of ["BF16", "F16", "F32"] as const) {
      for (const shared of [true, false]) {
        const raw = (v: Float32Array) => {
          const b = sources[dtype](v);
          if (!shared) return b;
          const s = new Uint8Array(new SharedArrayBuffer(b.byteLength));
          s.set(b);
          return s;
        };
        for (const via of [GGMLType.F32, GGMLType.F16, GGMLType.BF16] as const) {
          const src = raw(clean);
          const want = quantizeRows(GGMLType.Q4_K, round[via](widen[dtype](src)), nRows, nPerRow);
          const parts = await Promise.all(pool.encode({ type: GGMLType.Q4_K, src, dtype, nRows, nPerRow, via, floats: "converter" }));
          expect(parts.length, "several chunks").toBeGreaterThan(1);
          expect(Buffer.concat(parts).equals(Buffer.from(want)), `${dtype} via ${via} shared ${shared}`).toBe(true);
          const f32 = await Promise.all(pool.encode({ type: GGMLType.F32, src: raw(values), dtype, nRows, nPerRow, via, floats: "converter" }));
          expect(Buffer.concat(f32).equals(Buffer.from(bytesOf(round[via](widen[dtype](raw(values))))))).toBe(true);
        }
        const src = raw(values);
        const f16 = await Promise.all(pool.encode({ type: GGMLType.F16, src, dtype, nRows, nPerRow, floats: "converter" }));
        expect(Buffer.concat(f16).equals(Buffer.from(bytesOf(f32ToF16(widen[dtype](src)))))).toBe(true);
        const bf16 = await Promise.all(pool.encode({ type: GGMLType.BF16, src, dtype, nRows, nPerRow, floats: "converter" }));
        expect(Buffer.concat(bf16).equals(Buffer.from(bytesOf(f32ToBF16(widen[dtype](src)))))).toBe(true);
      }
    }
    // Inline (threads = 1) gives the same parts' bytes.
    const inline = new QuantizePool({ threads: 1 });
    const src = sources.BF16(clean);
    const a = Buffer.concat(await Promise.all(inline.encode({ type: GGMLType.Q6_K, src, dtype: "BF16", nRows, nPerRow, via: GGMLType.F16 })));
    const b = Buffer.concat(await Promise.all(pool.encode({ type: GGMLType.Q6_K, src, dtype: "BF16", nRows, nPerRow, via: GGMLType.F16 })));
    expect(a.equals(b)).toBe(true);
  });

  it("rejects after close", async () => {
    const p = new QuantizePool({ threads: 2, workerUrl });
    await p.close();
    await expect(p.quantize({ type: GGMLType.Q4_0, data: weights(256), nRows: 1, nPerRow: 256 })).rejects.toThrow(/closed/);
  });
});
