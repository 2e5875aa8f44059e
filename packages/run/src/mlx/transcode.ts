// MLX directory -> GGUF, so that llama.cpp runs MLX artifacts on machines without MLX.
//
// The converter's own rules decide names, order, metadata and tokenizer (the same architecture
// and tokenizer code the pipeline uses on a Hugging Face checkpoint, fed the MLX directory's
// logical tensors, see mlx-dir.ts). What differs is the tensor data:
//
//   4-bit and 5-bit affine    -> Q4_1 / Q5_1 blocks holding MLX's own q, scale and bias
//                                (blocks.ts): no requantization, the same float32 values.
//   8, 6, 3, 2 bits           -> the nearest GGUF type (Q8_0, Q6_K, Q3_K, Q2_K; IQ4_NL or Q8_0
//                                where a row is not whole 256-blocks), quantized by ggml from
//                                MLX's dequantized values; the error is measured and reported.
//   float tensors             -> as the converter stores them (norms F32, the rest their dtype).
//
// A converter transform on a quantized tensor (llama's q/k row permutation, stacking experts,
// trimming rows) is applied to rows: it is run once on row indices to learn where each row
// goes. A transform that is not a row rearrangement (or a tensor llama.cpp keeps in F32, like
// the MoE router) gets the dequantized values instead.
import { readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ConversionError } from "@llama-pajamas/artifact";
import { getArchitecture, tensorOptionsFor } from "@llama-pajamas/gguf/architectures/index.js";
import type { TensorPlan } from "@llama-pajamas/gguf/architectures/types.js";
import { converterTensorType } from "@llama-pajamas/gguf/float-policy.js";
import { f32ToBF16, f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
import { tensorBytes } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, type GGUFKV, GGUFValueType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { readTensorBytesInto, readTensorF32 } from "@llama-pajamas/gguf/formats/safetensors.js";
import { generalMetadata, ggufHeaderKVs } from "@llama-pajamas/gguf/general-metadata.js";
import { dequantizeRows, quantizeRows } from "@llama-pajamas/gguf/ggml.js";
import { buildTokenizerKV } from "@llama-pajamas/gguf/tokenizer/index.js";
import { type AffineRows, blockSource, dequantizeAffineRow, encodeRowAsBlocks, exactParams, widenParams } from "./blocks.js";
import { type LogicalTensor, type MLXDirectory, type QuantizedModule, openMLXDirectory } from "./mlx-dir.js";

/** Bumped whenever the output for the same input changes (it invalidates cached transcodes). */
export const TRANSCODER_VERSION = 1;

export interface TranscodeProgress {
  tensorIndex: number; // 1-based
  tensorCount: number;
  tensorName: string;
  bytesDone: number;
  bytesTotal: number;
}

export interface TranscodeOptions {
  /** The MLX directory (config.json + safetensors). */
  dir: string;
  /** The GGUF to write; written to a temporary name first and renamed when complete. */
  output: string;
  onProgress?: (p: TranscodeProgress) => void;
  signal?: AbortSignal;
}

/** How one group of tensors was stored. */
export interface TranscodeTypeReport {
  /** GGUF type written. */
  type: string;
  /** What it came from: "mlx 4-bit g64", "float", ... */
  from: string;
  tensors: number;
  elements: number;
  /** True when the GGUF values equal MLX's float32 dequantization (or the float source) bit for bit. */
  exact: boolean;
  /** For inexact groups: RMS of (GGUF - MLX) over RMS of MLX, over all their elements. */
  relativeRmsError?: number;
  maxAbsError?: number;
}

export interface TranscodeReport {
  transcoderVersion: number;
  source: string;
  /** Affine quantization of the body (config.json's default), null for an unquantized export. */
  quantization: { bits: number; groupSize: number } | null;
  ggufArch: string;
  fileType: string;
  tensors: number;
  /** Per (GGUF type, source) group, largest first. */
  types: TranscodeTypeReport[];
  sizeBytes: number;
  sha256: string;
  seconds: number;
}

/** Where a GGUF type of MLX bits comes from, and whether it is exact. */
export function targetType(bits: number, cols: number): { type: GGMLType; exact: boolean } {
  const k = cols % 256 === 0;
  switch (bits) {
    case 4:
      return { type: GGMLType.Q4_1, exact: true };
    case 5:
      return { type: GGMLType.Q5_1, exact: true };
    case 8:
      return { type: GGMLType.Q8_0, exact: false };
    case 6:
      return { type: k ? GGMLType.Q6_K : GGMLType.Q8_0, exact: false };
    case 3:
      return { type: k ? GGMLType.Q3_K : GGMLType.IQ4_NL, exact: false };
    case 2:
      return { type: k ? GGMLType.Q2_K : GGMLType.IQ4_NL, exact: false };
    default:
      throw new ConversionError(`no GGUF type for ${bits}-bit MLX quantization`);
  }
}

const FTYPE_OF: Partial<Record<GGMLType, LlamaFtype>> = {
  [GGMLType.F32]: LlamaFtype.ALL_F32,
  [GGMLType.F16]: LlamaFtype.MOSTLY_F16,
  [GGMLType.BF16]: LlamaFtype.MOSTLY_BF16,
  [GGMLType.Q4_1]: LlamaFtype.MOSTLY_Q4_1,
  [GGMLType.Q5_1]: LlamaFtype.MOSTLY_Q5_1,
  [GGMLType.Q8_0]: LlamaFtype.MOSTLY_Q8_0,
  [GGMLType.Q6_K]: LlamaFtype.MOSTLY_Q6_K,
  [GGMLType.Q3_K]: LlamaFtype.MOSTLY_Q3_K_M,
  [GGMLType.Q2_K]: LlamaFtype.MOSTLY_Q2_K,
  [GGMLType.IQ4_NL]: LlamaFtype.MOSTLY_IQ4_NL,
};

type Recipe =
  | { how: "generate"; type: GGMLType }
  | { how: "float"; type: GGMLType; sources: LogicalTensor[] }
  /** Quantized rows moved as they are (map: output row -> index into the sources' rows). */
  | { how: "rows"; type: GGMLType; exact: boolean; module: QuantizedModule; sources: LogicalTensor[]; map: Int32Array }
  /** Dequantized, transformed, stored as floats. */
  | { how: "dequantize"; type: GGMLType; sources: LogicalTensor[] };

function product(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

function floatType(dtype: string): GGMLType.F32 | GGMLType.F16 | GGMLType.BF16 {
  return dtype === "BF16" ? GGMLType.BF16 : dtype === "F16" ? GGMLType.F16 : GGMLType.F32;
}

/**
 * Output row -> source row, when the plan's transform only moves whole rows: the transform is
 * run on row numbers (and on twice them, which a shift or scale would not map to twice the
 * result). Undefined when it does anything else.
 */
export function rowMapping(plan: TensorPlan, sourceRows: readonly number[]): Int32Array | undefined {
  const outRows = product(plan.shape.slice(0, -1));
  const total = sourceRows.reduce((a, b) => a + b, 0);
  if (!plan.build) return sourceRows.length === 1 && sourceRows[0] === outRows ? Int32Array.from({ length: outRows }, (_, i) => i) : undefined;
  if (total >= 1 << 23) return undefined;
  const inputs = (scale: number) => {
    let offset = 0;
    return sourceRows.map((n) => {
      const a = Float32Array.from({ length: n }, (_, i) => (offset + i) * scale);
      offset += n;
      return a;
    });
  };
  let once: Float32Array;
  let twice: Float32Array;
  try {
    once = plan.build(inputs(1));
    twice = plan.build(inputs(2));
  } catch {
    return undefined;
  }
  if (once.length !== outRows || twice.length !== outRows) return undefined;
  const map = new Int32Array(outRows);
  for (let i = 0; i < outRows; i++) {
    const r = once[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= total || twice[i] !== 2 * r) return undefined;
    map[i] = r;
  }
  return map;
}

function recipeFor(plan: TensorPlan, mlx: MLXDirectory): Recipe {
  if (plan.generate) return { how: "generate", type: converterTensorType(plan, GGMLType.F32) };
  const sources = plan.sources.map((n) => {
    const t = mlx.tensors.get(n);
    if (!t) throw new ConversionError(`the converter asked for tensor ${n}, which ${mlx.dir} does not have`);
    return t;
  });
  const quantized = sources.filter((s) => s.kind === "quantized");
  if (quantized.length === 0) return { how: "float", type: converterTensorType(plan, floatType(sources[0]!.info.dtype)), sources };
  const first = quantized[0]!;
  const module = first.kind === "quantized" ? first.module : undefined!;
  const dequantized = (): Recipe => ({ how: "dequantize", type: converterTensorType(plan, floatType(module.dtype)), sources });
  const sameParams = quantized.length === sources.length && quantized.every((s) => s.kind === "quantized" && s.module.bits === module.bits && s.module.groupSize === module.groupSize && s.module.cols === module.cols && s.module.dtype === module.dtype);
  const cols = plan.shape[plan.shape.length - 1]!;
  if (!sameParams || plan.keepF32 || cols !== module.cols || converterTensorType(plan, GGMLType.F16) === GGMLType.F32) return dequantized();
  const map = rowMapping(plan, sources.map((s) => (s.kind === "quantized" ? s.rows : 0)));
  if (!map) return dequantized();
  const { type, exact } = targetType(module.bits, cols);
  return { how: "rows", type, exact, module, sources, map };
}

/** The rows `t` covers, read from disk. */
async function readAffine(t: Extract<LogicalTensor, { kind: "quantized" }>): Promise<AffineRows> {
  const m = t.module;
  const wordsPerRow = (m.cols * m.bits) / 32;
  const groups = m.cols / m.groupSize;
  const pBytes = m.dtype === "F32" ? 4 : 2;
  const words = await readTensorBytesInto(m.weight, t.rowStart * wordsPerRow * 4, new Uint8Array(t.rows * wordsPerRow * 4));
  const scales = await readTensorBytesInto(m.scales, t.rowStart * groups * pBytes, new Uint8Array(t.rows * groups * pBytes));
  const biases = await readTensorBytesInto(m.biases, t.rowStart * groups * pBytes, new Uint8Array(t.rows * groups * pBytes));
  return {
    bits: m.bits,
    groupSize: m.groupSize,
    cols: m.cols,
    words: new Uint32Array(words.buffer, 0, words.byteLength / 4),
    scales: widenParams(scales, m.dtype),
    biases: widenParams(biases, m.dtype),
  };
}

async function readFloat(t: LogicalTensor): Promise<Float32Array> {
  if (t.kind === "float") return readTensorF32(t.tensor, { startElement: t.startElement, elementCount: product(t.info.shape) });
  const a = await readAffine(t);
  const out = new Float32Array(t.rows * a.cols);
  const q = new Uint8Array(a.cols);
  for (let r = 0; r < t.rows; r++) dequantizeAffineRow(a, r, out.subarray(r * a.cols, (r + 1) * a.cols), q);
  return out;
}

function encodeFloat(data: Float32Array, type: GGMLType): Uint8Array {
  if (type === GGMLType.F32) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const halves = type === GGMLType.F16 ? f32ToF16(data) : f32ToBF16(data);
  return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength);
}

/** Running error of one report group. */
class ErrorTally {
  sumSqErr = 0;
  sumSqRef = 0;
  maxAbs = 0;
  add(ref: Float32Array, got: Float32Array): void {
    for (let i = 0; i < ref.length; i++) {
      const d = got[i]! - ref[i]!;
      this.sumSqErr += d * d;
      this.sumSqRef += ref[i]! * ref[i]!;
      const a = Math.abs(d);
      if (a > this.maxAbs || Number.isNaN(a)) this.maxAbs = a;
    }
  }
}

/** Rows checked per exactly-moved tensor: enough to catch a layout mistake, cheap on any model. */
const CHECK_ROWS = 16;
/** Output rows per requantized chunk: bounds the float32 buffer (16M values). */
const CHUNK_VALUES = 1 << 24;

/** Writes the GGUF of an MLX directory and says how each tensor was stored. */
export async function transcodeMLX(opts: TranscodeOptions): Promise<TranscodeReport> {
  const started = performance.now();
  const mlx = await openMLXDirectory(opts.dir);
  const arch = getArchitecture(mlx.config);
  const modelType = String(mlx.config["model_type"]);
  const tokenizerKV = await buildTokenizerKV({ dir: mlx.dir, config: mlx.config, ggufArch: arch.ggufArch, modelType });
  const infos = new Map([...mlx.tensors].map(([n, t]) => [n, t.info]));
  const plans = arch.tensors(mlx.config, infos, tensorOptionsFor(mlx.dir, tokenizerKV));
  const recipes = plans.map((p) => recipeFor(p, mlx));

  // The body's type names the file (general.file_type), as llama-quantize's ftype does.
  const elementsByType = new Map<GGMLType, number>();
  plans.forEach((p, i) => {
    const t = recipes[i]!.type;
    if (p.shape.length >= 2) elementsByType.set(t, (elementsByType.get(t) ?? 0) + product(p.shape));
  });
  // The body is config.json's default width (a mixed recipe's larger embedding does not name
  // the file); an unquantized export is named by its most common type.
  const body = mlx.quantization ? targetType(mlx.quantization.bits, 256).type : ([...elementsByType].sort((a, b) => b[1] - a[1])[0]?.[0] ?? GGMLType.F32);
  const fileType = FTYPE_OF[body] ?? LlamaFtype.MOSTLY_F16;
  const paramsTotal = plans.reduce((s, p) => s + product(p.shape), 0);
  const name = basename(mlx.dir) === "mlx" ? basename(dirname(mlx.dir)) : basename(mlx.dir);
  const general = generalMetadata({ ggufArch: arch.ggufArch, dirName: name, generationConfig: await readGenerationConfig(mlx.dir), paramsTotal });
  const q = mlx.quantization;
  const kvs: GGUFKV[] = [
    ...ggufHeaderKVs({ general, arch: arch.metadata(mlx.config), fileType, tokenizer: tokenizerKV }),
    { key: "llama_pajamas.source_format", type: GGUFValueType.STRING, value: "mlx" },
    { key: "llama_pajamas.mlx_quantization", type: GGUFValueType.STRING, value: q ? `affine ${q.bits}-bit group ${q.groupSize}` : "none" },
    { key: "llama_pajamas.transcoder_version", type: GGUFValueType.UINT32, value: TRANSCODER_VERSION },
  ];

  const writer = new GGUFWriter();
  for (const kv of kvs) writer.addKV(kv);
  plans.forEach((p, i) => {
    const type = recipes[i]!.type;
    writer.addTensorInfo({ name: p.name, shape: p.shape, type, byteLength: tensorBytes(type, [...p.shape].reverse()) });
  });
  const tmp = `${opts.output}.tmp-${process.pid}`;
  const groups = new Map<string, TranscodeTypeReport & { tally?: ErrorTally }>();
  const group = (type: GGMLType, from: string, exact: boolean, elements: number) => {
    const key = `${type}|${from}|${exact}`;
    const g = groups.get(key) ?? { type: GGMLType[type] ?? String(type), from, tensors: 0, elements: 0, exact, ...(exact ? {} : { tally: new ErrorTally() }) };
    g.tensors++;
    g.elements += elements;
    groups.set(key, g);
    return g;
  };
  const bytesTotal = mlx.weightBytes;
  let bytesDone = 0;
  try {
    await writer.open(tmp);
    await writer.writeHeader();
    for (let i = 0; i < plans.length; i++) {
      opts.signal?.throwIfAborted();
      const plan = plans[i]!;
      const recipe = recipes[i]!;
      const elements = product(plan.shape);
      if (recipe.how === "generate") {
        await writer.writeTensorData(plan.name, encodeFloat(plan.generate!(), recipe.type));
        group(recipe.type, "generated", true, elements);
      } else if (recipe.how === "float" || recipe.how === "dequantize") {
        const inputs = await Promise.all(recipe.sources.map(readFloat));
        const data = plan.build ? plan.build(inputs) : inputs[0]!;
        // Float sources are stored as the converter stores them (their own type, or F32): exact.
        const exact = recipe.how === "float" || recipe.type === GGMLType.F32;
        const bytes = encodeFloat(data, recipe.type);
        await writer.writeTensorData(plan.name, bytes);
        const from = recipe.how === "float" ? `float (${recipe.sources[0]!.info.dtype})` : describe(recipe.sources);
        const g = group(recipe.type, from, exact, elements);
        if (g.tally) g.tally.add(data, widenStored(bytes, recipe.type));
        for (const s of recipe.sources) bytesDone += sourceBytes(s);
      } else {
        await writeRows(writer, plan, recipe, group(recipe.type, describe(recipe.sources), recipe.exact, elements));
        for (const s of recipe.sources) bytesDone += sourceBytes(s);
      }
      opts.onProgress?.({ tensorIndex: i + 1, tensorCount: plans.length, tensorName: plan.name, bytesDone, bytesTotal });
    }
    await writer.finish();
    await rename(tmp, opts.output);
  } catch (e) {
    await writer.abort().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  const types: TranscodeTypeReport[] = [...groups.values()]
    .sort((a, b) => b.elements - a.elements)
    .map(({ tally, ...g }) =>
      tally ? { ...g, relativeRmsError: tally.sumSqRef > 0 ? Math.sqrt(tally.sumSqErr / tally.sumSqRef) : 0, maxAbsError: tally.maxAbs } : g,
    );
  return {
    transcoderVersion: TRANSCODER_VERSION,
    source: mlx.dir,
    quantization: q,
    ggufArch: arch.ggufArch,
    fileType: LlamaFtype[fileType] ?? String(fileType),
    tensors: plans.length,
    types,
    sizeBytes: (await stat(opts.output)).size,
    sha256: writer.sha256!,
    seconds: (performance.now() - started) / 1000,
  };
}

function describe(sources: readonly LogicalTensor[]): string {
  const s = sources.find((x) => x.kind === "quantized");
  if (!s || s.kind !== "quantized") return `float (${sources[0]?.info.dtype ?? "?"})`;
  return `mlx ${s.module.bits}-bit g${s.module.groupSize}`;
}

function sourceBytes(t: LogicalTensor): number {
  if (t.kind === "float") return product(t.info.shape) * (t.info.dtype === "F32" ? 4 : 2);
  const m = t.module;
  return (t.rows / m.rows) * (m.weight.end - m.weight.start + m.scales.end - m.scales.start + m.biases.end - m.biases.start);
}

function widenStored(bytes: Uint8Array, type: GGMLType): Float32Array {
  const elements = type === GGMLType.F32 ? bytes.byteLength / 4 : bytes.byteLength / 2;
  return dequantizeRows(type, bytes, 1, elements);
}

/** Gathers the plan's rows from its sources (in map order) and stores them as `recipe.type`. */
async function writeRows(
  writer: GGUFWriter,
  plan: TensorPlan,
  recipe: Extract<Recipe, { how: "rows" }>,
  report: TranscodeTypeReport & { tally?: ErrorTally },
): Promise<void> {
  const rowsOf = await Promise.all(recipe.sources.map((s) => readAffine(s as Extract<LogicalTensor, { kind: "quantized" }>)));
  // Global source row -> (source, row).
  const starts: number[] = [];
  let total = 0;
  for (const r of rowsOf) {
    starts.push(total);
    total += r.words.length / ((r.cols * r.bits) / 32);
  }
  const locate = (g: number): [AffineRows, number] => {
    let k = starts.length - 1;
    while (starts[k]! > g) k--;
    return [rowsOf[k]!, g - starts[k]!];
  };
  const cols = recipe.module.cols;
  const outRows = recipe.map.length;
  const q = new Uint8Array(cols);
  if (recipe.exact) {
    const exactValues = rowsOf.every((r) => exactParams(r.scales) && exactParams(r.biases));
    const rowBytes = tensorBytes(recipe.type, [cols]);
    const out = new Uint8Array(outRows * rowBytes);
    const blockSources = new Map(rowsOf.map((r) => [r, blockSource(r)]));
    for (let i = 0; i < outRows; i++) {
      const [src, row] = locate(recipe.map[i]!);
      encodeRowAsBlocks(blockSources.get(src)!, row, out, i * rowBytes, q);
    }
    // Check the first rows against MLX's own dequantization: equal bit for bit when every
    // scale and bias is a float16 number; otherwise the rounding error is measured instead.
    const check = exactValues ? Math.min(outRows, CHECK_ROWS) : outRows;
    const got = dequantizeRows(recipe.type, out.subarray(0, check * rowBytes), check, cols);
    const want = new Float32Array(check * cols);
    for (let i = 0; i < check; i++) {
      const [src, row] = locate(recipe.map[i]!);
      dequantizeAffineRow(src, row, want.subarray(i * cols, (i + 1) * cols), q);
    }
    if (exactValues) {
      for (let i = 0; i < want.length; i++) {
        if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
          throw new ConversionError(`${plan.name}: ${GGMLType[recipe.type]} blocks dequantize to ${got[i]} at ${i} where MLX gives ${want[i]}; the transcoder is wrong`);
        }
      }
    } else {
      report.exact = false;
      report.tally ??= new ErrorTally();
      report.tally.add(want, got);
    }
    await writer.writeTensorData(plan.name, out);
    return;
  }
  // Nearest type: ggml quantizes MLX's dequantized values, in chunks of rows.
  const chunkRows = Math.max(1, Math.floor(CHUNK_VALUES / cols));
  for (let first = 0; first < outRows; first += chunkRows) {
    const n = Math.min(chunkRows, outRows - first);
    const values = new Float32Array(n * cols);
    for (let i = 0; i < n; i++) {
      const [src, row] = locate(recipe.map[first + i]!);
      dequantizeAffineRow(src, row, values.subarray(i * cols, (i + 1) * cols), q);
    }
    const bytes = quantizeRows(recipe.type, values, n, cols);
    report.tally!.add(values, dequantizeRows(recipe.type, bytes, n, cols));
    await writer.writeTensorPart(plan.name, bytes);
  }
}

/** generation_config.json's sampling defaults, when the directory has a readable one. */
async function readGenerationConfig(dir: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = JSON.parse(await readFile(join(dir, "generation_config.json"), "utf8"));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
