// Which kernel quantizes a run of rows: ggml's (through koffi, native.ts), or for Q4_K, Q5_K and
// Q6_K without an importance matrix our WebAssembly SIMD port of the same reference code
// (assembly/k-quants.ts, built into dist/quantize/k-quants.wasm by `npm run build`).
//
// Why a port: these three are the k-quant mixes' bulk, and ggml quantizes them with its scalar
// reference code (quantize_row_q{4,5,6}_K_ref live in libggml-base, which is built without ISA
// flags). The port runs the same float operations in the same order, four sub-blocks per SIMD
// vector, so it gives the same bytes 1.8-3.5x faster. It is only trusted where it is shown to: the
// first use on each thread quantizes a probe (random rows and the edge cases: zero, constant,
// one-signed and outlier sub-blocks) both ways, and a type whose bytes differ from this
// machine's ggml (say a ggml built with fused multiply-adds) stays on ggml. Set
// LLAMA_PAJAMAS_QUANT_KERNELS=ggml to use ggml for every type.

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { quantizeRows } from "./native.js";

export const KERNELS_ENV = "LLAMA_PAJAMAS_QUANT_KERNELS";

const QK_K = 256;

// The project compiles without the DOM library, and @types/node 20 does not declare WebAssembly:
// the little used here, declared.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
};

interface KQuantExports {
  memory: WasmMemory;
  heapBase(): number;
  quantizeQ4K(src: number, dst: number, nBlocks: number): void;
  quantizeQ5K(src: number, dst: number, nBlocks: number): void;
  quantizeQ6K(src: number, dst: number, nBlocks: number): void;
}

/** Bytes per block and the export that fills them, per type the port covers. */
const PORTED: ReadonlyMap<number, { blockBytes: number; fn: "quantizeQ4K" | "quantizeQ5K" | "quantizeQ6K" }> = new Map([
  [GGMLType.Q4_K, { blockBytes: 144, fn: "quantizeQ4K" as const }],
  [GGMLType.Q5_K, { blockBytes: 176, fn: "quantizeQ5K" as const }],
  [GGMLType.Q6_K, { blockBytes: 210, fn: "quantizeQ6K" as const }],
]);

export type KernelChoice = "wasm-simd" | "ggml";

export interface KernelStatus {
  /** Per type name (Q4_K, Q5_K, Q6_K), the kernel this thread uses without an importance matrix. */
  types: Record<string, KernelChoice>;
  /** Why a type is on ggml, when it is. */
  reason?: string;
}

/** The compiled module: next to this file in dist, or in dist when running from the sources. */
function wasmPath(): string | undefined {
  for (const rel of ["./k-quants.wasm", "../../dist/quantize/k-quants.wasm"]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** One instance per thread; its linear memory holds one chunk's input floats and output blocks. */
class KQuantKernels {
  private readonly base: number;
  private constructor(private readonly ex: KQuantExports) {
    this.base = (ex.heapBase() + 63) & ~63;
  }

  static load(path: string): KQuantKernels {
    const module = new WebAssembly.Module(readFileSync(path));
    return new KQuantKernels(new WebAssembly.Instance(module, {}).exports as unknown as KQuantExports);
  }

  /**
   * A Float32Array of n values inside the module's memory, for `quantize` to read without a copy.
   * Valid until the next call (growing the memory detaches earlier views).
   */
  input(n: number, type: number): Float32Array {
    const blockBytes = PORTED.get(type)!.blockBytes;
    const need = this.base + n * 4 + (n / QK_K) * blockBytes;
    const mem = this.ex.memory;
    if (mem.buffer.byteLength < need) mem.grow(Math.ceil((need - mem.buffer.byteLength) / 65536));
    return new Float32Array(mem.buffer, this.base, n);
  }

  /** Quantizes nRows * nPerRow values (copied into the module's memory unless already there). */
  quantize(type: number, values: Float32Array, nRows: number, nPerRow: number): Uint8Array {
    const { blockBytes, fn } = PORTED.get(type)!;
    const n = nRows * nPerRow;
    const nBlocks = n / QK_K;
    const at = this.input(n, type);
    if (values.buffer !== at.buffer || values.byteOffset !== at.byteOffset) at.set(values);
    const dst = this.base + n * 4;
    this.ex[fn](this.base, dst, nBlocks);
    return new Uint8Array(this.ex.memory.buffer, dst, nBlocks * blockBytes).slice();
  }
}

/**
 * Rows of the probe: 256 blocks, about 15 ms per thread. A port whose last search step were
 * missing changes ~0.5% of blocks (measured on the fixtures), so it would show here; a ggml with
 * fused multiply-adds changes the rounding of nearly every sum.
 */
const PROBE_ROWS = 256;

/** A deterministic probe: random rows, plus sub-blocks that take the reference code's rare branches. */
function probeRows(nRows: number): Float32Array {
  const out = new Float32Array(nRows * QK_K);
  let s = 0x9e3779b9;
  const rand = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  for (let i = 0; i < out.length; i++) {
    const row = Math.floor(i / QK_K);
    const sub = Math.floor(i / 16);
    let v = (rand() - 0.5) * 0.08;
    switch (row % 8) {
      case 1: if (sub % 3 === 0) v = 0; break; // zero sub-blocks
      case 2: if (sub % 4 === 1) v = 0.0123; break; // constant sub-blocks
      case 3: v = Math.abs(v); break; // one sign: the min clamps to 0
      case 4: v = -Math.abs(v); break;
      case 5: if (rand() < 0.02) v *= 300; break; // outliers
      case 6: v *= 1e-6; break; // tiny values
      case 7: if (row % 16 === 7) v = 0; break; // a whole zero row
    }
    out[i] = v;
  }
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface ThreadKernels {
  kernels: KQuantKernels | undefined;
  /** Types that passed the probe. */
  trusted: Set<number>;
  reason?: string;
}

let state: ThreadKernels | undefined;

function threadKernels(): ThreadKernels {
  if (state) return state;
  if ((process.env[KERNELS_ENV] ?? "").toLowerCase() === "ggml") {
    return (state = { kernels: undefined, trusted: new Set(), reason: `${KERNELS_ENV}=ggml` });
  }
  const path = wasmPath();
  if (path === undefined) {
    return (state = { kernels: undefined, trusted: new Set(), reason: "k-quants.wasm not built (npm run build)" });
  }
  let kernels: KQuantKernels;
  try {
    kernels = KQuantKernels.load(path);
  } catch (e) {
    return (state = { kernels: undefined, trusted: new Set(), reason: `k-quants.wasm did not load: ${(e as Error).message}` });
  }
  const probe = probeRows(PROBE_ROWS);
  const trusted = new Set<number>();
  const failed: string[] = [];
  for (const [type] of PORTED) {
    const want = quantizeRows(type, probe, PROBE_ROWS, QK_K);
    if (bytesEqual(kernels.quantize(type, probe, PROBE_ROWS, QK_K), want)) trusted.add(type);
    else failed.push(GGMLType[type] ?? String(type));
  }
  const reason = failed.length > 0 ? `the WebAssembly port differs from this machine's ggml for ${failed.join(", ")}` : undefined;
  return (state = { kernels, trusted, reason });
}

/** Which kernel quantizes each ported type on this thread (loads and probes on first use). */
export function kernelStatus(): KernelStatus {
  const s = threadKernels();
  const types: Record<string, KernelChoice> = {};
  for (const [type] of PORTED) types[GGMLType[type]!] = s.trusted.has(type) ? "wasm-simd" : "ggml";
  return s.reason === undefined ? { types } : { types, reason: s.reason };
}

function portFor(type: number, nPerRow: number, imatrix: Float32Array | undefined): KQuantKernels | undefined {
  if (imatrix !== undefined || !PORTED.has(type) || nPerRow % QK_K !== 0) return undefined;
  const s = threadKernels();
  return s.trusted.has(type) ? s.kernels : undefined;
}

/**
 * Where to widen a chunk's values so that quantizing them needs no copy: a view into the port's
 * memory when the port takes this job, else undefined. Valid until the next kernel call.
 */
export function inputBufferFor(type: number, nRows: number, nPerRow: number, imatrix: Float32Array | undefined): Float32Array | undefined {
  return portFor(type, nPerRow, imatrix)?.input(nRows * nPerRow, type);
}

/**
 * ggml_quantize_chunk's bytes for nRows rows of nPerRow values: from the WebAssembly port for
 * the types it covers (and passed the probe), else from ggml itself.
 */
export function quantizeValues(type: number, values: Float32Array, nRows: number, nPerRow: number, imatrix?: Float32Array): Uint8Array {
  const port = values.length === nRows * nPerRow ? portFor(type, nPerRow, imatrix) : undefined;
  if (port) return port.quantize(type, values, nRows, nPerRow);
  return quantizeRows(type, values, nRows, nPerRow, imatrix);
}
