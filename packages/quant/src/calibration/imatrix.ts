// Importance matrices computed with the real engine, by llama-imatrix's method
// (tools/imatrix/imatrix.cpp IMatrixCollector::collect_imatrix and compute_imatrix): the text
// is decoded in windows exactly as llama-perplexity's schedule does (chunks.ts, all positions
// output), and ggml's eval callback shows every matrix multiplication's input. For each weight
// W (name filtered of backend prefixes) the collector sums the squared activations per input
// column, and counts the rows seen:
//
//   MUL_MAT     (dense W, ne [n, m]):       sums[j] += x[row][j]^2 over every row; count += rows
//   MUL_MAT_ID  (experts W, ne [n, m, E]):   per routed (token, slot): expert e = ids[slot, token],
//                                            sums[e*n + j] += x^2, counts[e] += 1
//
// Dense multiplications with fewer than 16 rows, and those not of a `blk.*` weight (unless
// processOutput: output.weight), are skipped, as upstream. Sums accumulate in float32.

import { InputError } from "@llama-pajamas/artifact";
import { type MatMulInput, type MatMulObserver, EngineModel, EngineContext } from "../quantize/native.js";
import { ImportanceMatrix } from "../quantize/imatrix.js";
import { planChunks, runChunks } from "../validation/chunks.js";
import { newRowStats, rowStats, tokenNll } from "../validation/log-softmax.js";
import { NllSums } from "../validation/perplexity.js";

/** One weight's statistics (llama-imatrix's Stats). */
export interface ImatrixEntry {
  /** Sum of squared activations, nMat slices of `columns` values. */
  sums: Float32Array;
  /** Rows seen per slice (one per expert; a single count for dense weights). */
  counts: number[];
  columns: number;
}

export interface ImatrixResult {
  /** By weight tensor name, sorted. */
  entries: Map<string, ImatrixEntry>;
  /** Tokens per window (imatrix.chunk_size). */
  chunkSize: number;
  /** Windows processed, as llama-imatrix counts them (largest count / chunk size). */
  chunkCount: number;
  /** Names of the calibration texts (imatrix.datasets). */
  datasets: string[];
  /** Tokens decoded. */
  tokens: number;
  /** Perplexity of the calibration text (llama-imatrix prints it too); NaN when not scored. */
  perplexity: number;
  /** Expert tensors with experts that no token was routed to (their importance falls back to 1). */
  unroutedExperts: { tensor: string; experts: number[] }[];
  seconds: number;
}

/** imatrix.cpp's collector as an engine observer. */
export class ImatrixCollector implements MatMulObserver {
  readonly entries = new Map<string, ImatrixEntry>();
  constructor(private readonly processOutput = false) {}

  wants(node: { op: "MUL_MAT" | "MUL_MAT_ID"; weight: string; xRows: number; xIsF32: boolean }): boolean {
    if (node.op === "MUL_MAT_ID") return true;
    if (node.xRows < 16 || !node.xIsF32) return false;
    return node.weight.startsWith("blk.") || (this.processOutput && node.weight === "output.weight");
  }

  private entry(name: string, columns: number, nMat: number, nCounts: number): ImatrixEntry {
    let e = this.entries.get(name);
    if (!e) {
      e = { sums: new Float32Array(columns * nMat), counts: new Array<number>(nCounts).fill(0), columns };
      this.entries.set(name, e);
    } else if (e.sums.length !== columns * nMat) {
      throw new InputError(`inconsistent activation size for ${name}: ${e.sums.length} vs ${columns * nMat}`);
    }
    return e;
  }

  observe(m: MatMulInput): void {
    const [ne0, ne1, ne2, ne3] = m.xNe;
    const [, s1, s2, s3] = m.xStride;
    const x = m.x;
    if (m.op === "MUL_MAT_ID") {
      const nAs = m.weightNe[2];
      const ids = m.ids!;
      const [nIds, nTokens] = m.idsNe!;
      const [is0, is1] = m.idsStride!;
      if (nTokens !== ne2) throw new InputError(`${m.weight}: ${nTokens} routed tokens but ${ne2} activation rows`);
      const e = this.entry(m.weight, ne0, nAs, nAs);
      if (e.counts.length === 1 && nAs > 1) e.counts = new Array<number>(nAs).fill(e.counts[0]!);
      const acc = e.sums;
      for (let idx = 0; idx < nIds; idx++) {
        for (let row = 0; row < nTokens; row++) {
          const ex = ids[row * is1 + idx * is0]!;
          if (!(ex >= 0 && ex < nAs)) throw new InputError(`${m.weight}: expert id ${ex} outside 0..${nAs - 1}`);
          const xo = (idx % ne1) * s1 + row * s2;
          const ao = ex * ne0;
          e.counts[ex]!++;
          for (let j = 0; j < ne0; j++) {
            const v = x[xo + j]!;
            acc[ao + j]! += v * v;
          }
        }
      }
      checkFinite(m.weight, acc);
      return;
    }
    const w2 = m.weightNe[2];
    const w3 = m.weightNe[3];
    const nMat = w2 * w3;
    const e = this.entry(m.weight, ne0, nMat, 1);
    // a weight used by both MUL_MAT_ID and MUL_MAT keeps per-expert counts; dense ones keep one
    if (e.counts.length > 1 && e.counts.every((c) => c === e.counts[0])) e.counts.length = 1;
    const acc = e.sums;
    for (let i3 = 0; i3 < ne3; i3++) {
      for (let i2 = 0; i2 < ne2; i2++) {
        const ao = ((i3 % w3) * w2 + (i2 % w2)) * ne0;
        for (let row = 0; row < ne1; row++) {
          const xo = row * s1 + i2 * s2 + i3 * s3;
          for (let j = 0; j < ne0; j++) {
            const v = x[xo + j]!;
            acc[ao + j]! += v * v;
          }
        }
      }
    }
    checkFinite(m.weight, acc);
    const rows = (ne1 * ne2 * ne3) / nMat;
    for (let i = 0; i < e.counts.length; i++) e.counts[i]! += rows;
  }
}

function checkFinite(name: string, v: Float32Array): void {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw new InputError(`non-finite activations in ${name}: the model overflows on the calibration text`);
  }
}

export interface ComputeImatrixOptions {
  /** F16/BF16/F32 GGUF (or any GGUF llama.cpp loads), path or loaded. */
  model: string | EngineModel;
  /** Calibration text (UTF-8). */
  text: string | Uint8Array;
  /** Dataset name recorded in the file (llama-imatrix records the -f path). */
  dataset: string;
  /** Window size (default 512). */
  ctx?: number;
  /** At most this many windows (default: all the text holds). */
  chunks?: number;
  /** Logical batch (default 2048). */
  batch?: number;
  threads?: number;
  /** Also collect output.weight (llama-imatrix --process-output). */
  processOutput?: boolean;
  /** Parse special-token spellings in the text (llama-imatrix --parse-special). */
  parseSpecial?: boolean;
  /** Score the calibration text's perplexity on the way (default true; llama-imatrix --no-ppl turns it off). */
  perplexity?: boolean;
  onProgress?: (e: { chunk: number; chunks: number; perplexity: number; elapsedMs: number }) => void;
  signal?: AbortSignal;
}

/** Runs the calibration text through the model and collects the importance matrix. */
export async function computeImatrix(opts: ComputeImatrixOptions): Promise<ImatrixResult> {
  const model = typeof opts.model === "string" ? EngineModel.load(opts.model) : opts.model;
  const started = performance.now();
  try {
    if (model.info.addEos) throw new InputError(`${model.path}: the vocabulary appends EOS to every text; llama-imatrix refuses such models`);
    const tokens = model.tokenize(opts.text, { addSpecial: true, parseSpecial: opts.parseSpecial ?? false });
    const plan = planChunks({ tokens, ctx: opts.ctx, chunks: opts.chunks, batch: opts.batch, bos: model.info.addBos ? model.info.bos : undefined });
    const collector = new ImatrixCollector(opts.processOutput);
    const ctx = new EngineContext(model, {
      nCtx: plan.nSeq * plan.nCtx,
      nBatch: plan.nBatch,
      nSeqMax: plan.nSeq,
      threads: opts.threads,
      observer: collector,
    });
    const nll = new NllSums();
    const stats = newRowStats();
    try {
      for await (const chunk of runChunks(plan, [ctx], { signal: opts.signal, allOutputs: true })) {
        const logits = chunk.logits[0]!;
        for (let r = 0; opts.perplexity !== false && r < chunk.targets.length; r++) {
          rowStats(logits, r * ctx.nVocab, ctx.nVocab, stats);
          nll.add(tokenNll(logits, r * ctx.nVocab, stats, chunk.targets[r]!));
        }
        opts.onProgress?.({ chunk: chunk.index + 1, chunks: plan.nChunks, perplexity: nll.perplexity, elapsedMs: performance.now() - started });
      }
    } finally {
      ctx.free();
    }
    if (collector.entries.size === 0) throw new InputError(`${model.path}: no matrix multiplication of a blk.* weight was seen; nothing to calibrate`);
    const entries = new Map([...collector.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    let maxCount = 0;
    const unroutedExperts: ImatrixResult["unroutedExperts"] = [];
    for (const [name, e] of entries) {
      maxCount = Math.max(maxCount, ...e.counts);
      const zero = e.counts.flatMap((c, i) => (c === 0 ? [i] : []));
      if (zero.length > 0) unroutedExperts.push({ tensor: name, experts: zero });
    }
    return {
      entries,
      chunkSize: plan.nCtx,
      chunkCount: Math.floor(maxCount / plan.nCtx),
      datasets: [opts.dataset],
      tokens: plan.nChunks * plan.nCtx,
      perplexity: nll.perplexity,
      unroutedExperts,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    if (typeof opts.model === "string") model.free();
  }
}

/**
 * The importance vectors llama-quantize derives from the statistics (quantize.cpp
 * load_imatrix): per slice sums / count, 1 where a slice saw nothing.
 */
export function importanceFromImatrix(r: Pick<ImatrixResult, "entries" | "datasets" | "chunkCount" | "chunkSize">): ImportanceMatrix {
  const out = new ImportanceMatrix();
  out.datasets = [...r.datasets];
  out.chunkCount = r.chunkCount;
  out.chunkSize = r.chunkSize;
  for (const [name, e] of r.entries) {
    const v = new Float32Array(e.sums.length);
    for (let k = 0; k < e.counts.length; k++) {
      const count = Math.fround(e.counts[k]!);
      for (let j = 0; j < e.columns; j++) v[k * e.columns + j] = count > 0 ? e.sums[k * e.columns + j]! / count : 1;
    }
    out.set(name, v);
  }
  return out;
}
