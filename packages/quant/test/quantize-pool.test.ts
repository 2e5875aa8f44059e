// QuantizePool with real worker threads. Workers cannot load .ts, so the worker module is
// bundled with esbuild (vitest's own dependency) into node_modules/.cache for the test, where
// koffi and node-llama-cpp resolve as they do for the compiled package.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { UsageError } from "@llama-pajamas/artifact";
import { GGMLType } from "../src/formats/gguf-types.js";
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

  it("rejects after close", async () => {
    const p = new QuantizePool({ threads: 2, workerUrl });
    await p.close();
    await expect(p.quantize({ type: GGMLType.Q4_0, data: weights(256), nRows: 1, nPerRow: 256 })).rejects.toThrow(/closed/);
  });
});
