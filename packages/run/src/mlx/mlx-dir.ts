// An MLX model directory as mlx_lm.convert writes it (config.json with a `quantization` block,
// safetensors weights, tokenizer files), read into what the GGUF converter understands: a map
// of Hugging Face tensor names to logical tensors. A quantized module `p` is stored as
// `p.weight` (uint32 words of packed values), `p.scales` and `p.biases` (one per group of
// `group_size` values of a row); its logical tensor is the unquantized [..., rows, cols] one.
// mlx-lm's stacked experts (`...switch_mlp.{gate,up,down}_proj.weight`, [experts, rows, cols])
// are presented per expert under the checkpoint's names, so the converter's architecture
// files stack them again exactly as they stack a checkpoint's experts.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import type { HFConfig, SourceTensorInfo } from "@llama-pajamas/gguf/architectures/types.js";
import { compareCodePoints, openCheckpointTensors, type SafetensorsTensor } from "@llama-pajamas/gguf/formats/safetensors.js";
import { MLX_AFFINE_BITS, MLX_GROUP_SIZES, MLX_QUANT_MODES } from "@llama-pajamas/gguf/mlx/affine.js";

export interface AffineParams {
  bits: number;
  groupSize: number;
}

/** One quantized module: packed weight, scales and biases. */
export interface QuantizedModule extends AffineParams {
  path: string;
  weight: SafetensorsTensor;
  scales: SafetensorsTensor;
  biases: SafetensorsTensor;
  /** Dtype of scales and biases (and of what MLX dequantizes to). */
  dtype: "F16" | "BF16" | "F32";
  /** Logical shape, outermost first: [..., rows, cols]. */
  shape: number[];
  /** Rows of all outer dims together (product of shape without its last entry). */
  rows: number;
  cols: number;
}

/** A tensor the converter sees: a float tensor (or a row range of one), or rows of a quantized module. */
export type LogicalTensor =
  | { kind: "float"; info: SourceTensorInfo; tensor: SafetensorsTensor; startElement: number }
  | { kind: "quantized"; info: SourceTensorInfo; module: QuantizedModule; rowStart: number; rows: number };

export interface MLXDirectory {
  dir: string;
  config: HFConfig;
  /** null when config.json has no quantization block (an unquantized MLX export). */
  quantization: AffineParams | null;
  modules: QuantizedModule[];
  /** Logical tensors by checkpoint name, in name order. */
  tensors: Map<string, LogicalTensor>;
  /** Bytes of all safetensors data. */
  weightBytes: number;
}

/** mlx-lm model files whose sanitize renames expert parts (mixtral: w1/w2/w3). */
const EXPERT_PART_NAMES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  mixtral: { gate_proj: "w1", down_proj: "w2", up_proj: "w3" },
};

const SWITCH = /^(.*)\.switch_mlp\.(gate_proj|up_proj|down_proj)\.weight$/;

function bad(dir: string, message: string): InputError {
  return new InputError(`${dir} is not a usable MLX model: ${message}`, { path: dir, code: "E_MLX_DIR" });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function params(dir: string, where: string, v: Record<string, unknown>, fallback?: AffineParams): AffineParams {
  const bits = v["bits"] ?? fallback?.bits;
  const groupSize = v["group_size"] ?? fallback?.groupSize;
  if (typeof bits !== "number" || !MLX_AFFINE_BITS.includes(bits)) {
    throw bad(dir, `${where} has bits ${JSON.stringify(bits)}; MLX affine quantization uses ${MLX_AFFINE_BITS.join(", ")}`);
  }
  if (typeof groupSize !== "number" || !MLX_GROUP_SIZES.includes(groupSize)) {
    throw bad(dir, `${where} has group_size ${JSON.stringify(groupSize)}; MLX affine quantization uses ${MLX_GROUP_SIZES.join(", ")}`);
  }
  return { bits, groupSize };
}

/**
 * config.json's quantization block ("quantization", or "quantization_config" as mlx-lm also
 * writes it): the default params and the per-module overrides mlx-lm keys by module path
 * (an object with bits/group_size, or false for a module left unquantized).
 */
function readQuantization(dir: string, config: HFConfig): { defaults: AffineParams | null; overrides: Map<string, AffineParams | false> } {
  const q = config["quantization"] ?? config["quantization_config"];
  const overrides = new Map<string, AffineParams | false>();
  if (q === undefined || q === null) return { defaults: null, overrides };
  if (!isRecord(q)) throw bad(dir, `config.json "quantization" must be an object, got ${JSON.stringify(q)}`);
  const mode = q["mode"] ?? "affine";
  if (mode !== "affine") {
    const known = typeof mode === "string" && MLX_QUANT_MODES.includes(mode);
    throw bad(
      dir,
      `quantization mode ${JSON.stringify(mode)} is ${known ? "an MLX mode this runtime cannot transcode" : "not an MLX quantization mode"}; ` +
        `only "affine" (mlx_lm.convert's default) maps onto GGUF. Re-export the model with mlx_lm.convert -q (affine)`,
    );
  }
  const defaults = params(dir, 'config.json "quantization"', q);
  for (const [key, value] of Object.entries(q)) {
    if (value === false) overrides.set(key, false);
    else if (isRecord(value)) overrides.set(key, params(dir, `config.json "quantization"."${key}"`, value, defaults));
  }
  return { defaults, overrides };
}

function product(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

function quantizedModule(dir: string, path: string, tensors: Map<string, SafetensorsTensor>, p: AffineParams): QuantizedModule {
  const weight = tensors.get(`${path}.weight`);
  const scales = tensors.get(`${path}.scales`)!;
  const biases = tensors.get(`${path}.biases`);
  if (!weight) throw bad(dir, `${path}.scales has no ${path}.weight beside it`);
  if (!biases) {
    throw bad(dir, `${path} has scales but no ${path}.biases; affine quantization stores both (a scales-only module is another MLX mode)`);
  }
  if (weight.dtype !== "U32") throw bad(dir, `${path}.weight is ${weight.dtype}; a quantized weight holds packed uint32 words`);
  if (!["F16", "BF16", "F32"].includes(scales.dtype) || biases.dtype !== scales.dtype) {
    throw bad(dir, `${path}.scales/.biases are ${scales.dtype}/${biases.dtype}; they must share one float dtype (float16, bfloat16 or float32)`);
  }
  const ws = weight.shape;
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (ws.length < 2 || !same(scales.shape, biases.shape) || !same(ws.slice(0, -1), scales.shape.slice(0, -1))) {
    throw bad(dir, `${path}: weight [${ws.join(", ")}], scales [${scales.shape.join(", ")}] and biases [${biases.shape.join(", ")}] do not describe the same rows`);
  }
  const cols = (ws[ws.length - 1]! * 32) / p.bits;
  const groups = scales.shape[scales.shape.length - 1]!;
  if (!Number.isInteger(cols) || groups * p.groupSize !== cols) {
    throw bad(
      dir,
      `config.json says ${path} is ${p.bits}-bit with group_size ${p.groupSize}, but its weight has ${ws[ws.length - 1]} words per row ` +
        `(${cols} values at ${p.bits} bits) and its scales ${groups} groups (${groups * p.groupSize} values); config.json and the weights do not match`,
    );
  }
  const shape = [...ws.slice(0, -1), cols];
  return { path, weight, scales, biases, dtype: scales.dtype as QuantizedModule["dtype"], shape, rows: product(shape.slice(0, -1)), cols, ...p };
}

/** Reads config.json and the safetensors headers of an MLX directory (no weights). */
export async function openMLXDirectory(dir: string): Promise<MLXDirectory> {
  let config: HFConfig;
  try {
    const raw: unknown = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    if (!isRecord(raw)) throw new Error("not a JSON object");
    config = raw;
  } catch (e) {
    throw bad(dir, `cannot read config.json: ${(e as Error).message}`);
  }
  const { defaults, overrides } = readQuantization(dir, config);
  const files = await openCheckpointTensors(dir);
  const modules = new Map<string, QuantizedModule>();
  for (const name of files.keys()) {
    if (!name.endsWith(".scales")) continue;
    const path = name.slice(0, -".scales".length);
    const p = overrides.get(path) ?? defaults;
    if (p === false || p === null) {
      throw bad(dir, `${path} is stored quantized but config.json ${p === false ? "marks it unquantized" : "has no quantization block"}`);
    }
    modules.set(path, quantizedModule(dir, path, files, p));
  }
  const modelType = typeof config["model_type"] === "string" ? config["model_type"] : "";
  const tensors = new Map<string, LogicalTensor>();
  for (const [name, t] of files) {
    if (name.endsWith(".scales") || name.endsWith(".biases")) {
      if (modules.has(name.slice(0, name.lastIndexOf(".")))) continue;
    }
    const module = name.endsWith(".weight") ? modules.get(name.slice(0, -".weight".length)) : undefined;
    if (!module && t.dtype === "U32") throw bad(dir, `${name} holds packed uint32 words but has no ${name.replace(/\.weight$/, "")}.scales`);
    const sw = SWITCH.exec(name);
    if (sw) {
      const [, prefix, part] = sw as unknown as [string, string, string];
      const shape = module ? module.shape : t.shape;
      if (shape.length !== 3) throw bad(dir, `${name} has shape [${shape.join(", ")}]; stacked experts are [experts, rows, cols]`);
      const [experts, rows, cols] = shape as [number, number, number];
      const hfPart = EXPERT_PART_NAMES[modelType]?.[part] ?? part;
      for (let e = 0; e < experts; e++) {
        const expertName = `${prefix}.experts.${e}.${hfPart}.weight`;
        const info: SourceTensorInfo = { name: expertName, dtype: module ? module.dtype : t.dtype, shape: [rows, cols] };
        tensors.set(
          expertName,
          module
            ? { kind: "quantized", info, module, rowStart: e * rows, rows }
            : { kind: "float", info, tensor: t, startElement: e * rows * cols },
        );
      }
      continue;
    }
    const info: SourceTensorInfo = { name, dtype: module ? module.dtype : t.dtype, shape: module ? module.shape : [...t.shape] };
    tensors.set(name, module ? { kind: "quantized", info, module, rowStart: 0, rows: module.rows } : { kind: "float", info, tensor: t, startElement: 0 });
  }
  let weightBytes = 0;
  for (const t of files.values()) weightBytes += t.end - t.start;
  // In name order, as a checkpoint's safetensors header lists them: the converter then writes
  // the tensors in the order it writes them for the original checkpoint.
  const sorted = new Map([...tensors].sort(([a], [b]) => compareCodePoints(a, b)));
  return { dir, config, quantization: defaults, modules: [...modules.values()], tensors: sorted, weightBytes };
}
