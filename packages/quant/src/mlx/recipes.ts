// MLX precisions by name, and which modules get which bits: mlx-lm's quantize_model
// (mlx_lm/utils.py) and mixed_quant_predicate_builder (mlx_lm/convert.py) as data.
//
//   "2bit" ... "8bit"  every quantizable module at that width (mlx_lm.convert -q --q-bits N),
//                      the model's own quant_predicate applying (qwen3_moe: router 8 bits)
//   "4bit_mixed"       the seed's recipe: "4bit", with the embeddings (embed_tokens, lm_head) at 6
//   "mixed_2_6" ...    mlx-lm's recipes (--quant-predicate), which replace the model's predicate
//   "bf16" "f16" "f32" no quantization; every float parameter cast (mlx_lm.convert --dtype)
import { InputError } from "@llama-pajamas/artifact";
import { type MLXFloatDtype, MLX_AFFINE_BITS, MLX_GROUP_SIZES, checkAffineParams } from "@llama-pajamas/gguf/mlx/affine.js";
import { type MLXModule, type QuantParams, type QuantPredicate, isQuantizable } from "./models/index.js";

export interface MLXMethod {
  /** Canonical name, as the manifest records it. */
  name: string;
  kind: "uniform" | "mixed" | "float";
  /** uniform: the width; mixed: the body (low) width. */
  bits?: number;
  /** mixed: the width of the modules the recipe favours. */
  highBits?: number;
  /** float: the dtype every parameter is stored in. */
  dtype?: MLXFloatDtype;
}

/** mlx_lm.convert QUANT_RECIPES: (low, high) bits. */
const MLX_LM_RECIPES: Readonly<Record<string, [number, number]>> = {
  mixed_2_6: [2, 6],
  mixed_3_4: [3, 4],
  mixed_3_6: [3, 6],
  mixed_4_6: [4, 6],
};
const FLOAT_METHODS: Readonly<Record<string, MLXFloatDtype>> = { bf16: "bfloat16", f16: "float16", fp16: "float16", f32: "float32", fp32: "float32" };

export const MLX_METHOD_NAMES: readonly string[] = [
  ...MLX_AFFINE_BITS.map((b) => `${b}bit`),
  "4bit_mixed",
  ...Object.keys(MLX_LM_RECIPES),
  "bf16",
  "f16",
  "f32",
];

/** mlx-lm's defaults_for_mode("affine"): group 64, 4 bits. */
export const MLX_DEFAULT_GROUP_SIZE = 64;

export function parseMLXMethod(name: string): MLXMethod {
  const n = name.trim().toLowerCase();
  const bits = /^(\d+)[-_]?bits?$/.exec(n);
  if (bits) {
    const b = Number(bits[1]);
    if (!MLX_AFFINE_BITS.includes(b)) {
      throw new InputError(`MLX precision "${name}": ${b} bits is not supported by MLX affine quantization; supported: ${MLX_AFFINE_BITS.join(", ")} bits`, {
        code: "E_PRECISION",
      });
    }
    return { name: `${b}bit`, kind: "uniform", bits: b };
  }
  if (n === "4bit_mixed") return { name: "4bit_mixed", kind: "mixed", bits: 4, highBits: 6 };
  const recipe = MLX_LM_RECIPES[n];
  if (recipe) return { name: n, kind: "mixed", bits: recipe[0], highBits: recipe[1] };
  const dtype = FLOAT_METHODS[n];
  if (dtype) return { name: n === "fp16" ? "f16" : n === "fp32" ? "f32" : n, kind: "float", dtype };
  throw new InputError(`unknown MLX precision "${name}"; choose one of ${MLX_METHOD_NAMES.join(", ")}`, { code: "E_PRECISION" });
}

export function checkGroupSize(groupSize: number): void {
  if (!MLX_GROUP_SIZES.includes(groupSize)) {
    throw new InputError(`MLX group size ${groupSize} is not supported; choose ${MLX_GROUP_SIZES.join(", ")}`, { code: "E_PRECISION" });
  }
}

/**
 * mixed_quant_predicate_builder: v_proj and down_proj of the first and last eighth of the
 * layers and of every third layer between get the high width, lm_head too, the rest the low one.
 */
export function mixedRecipePredicate(opts: { low: number; high: number; groupSize: number; modules: readonly MLXModule[]; numLayers: number }): QuantPredicate {
  const down = opts.modules.filter((m) => m.path.includes("down_proj"));
  if (down.length === 0) throw new InputError("Model does not have expected keys for mixed quant (no down_proj module)", { code: "E_PRECISION" });
  // The first dotted component of the first down_proj path that is all digits (the last one if none is).
  const parts = down[0]!.path.split(".");
  let layerLocation = parts.findIndex((k) => /^\d+$/.test(k));
  if (layerLocation < 0) layerLocation = parts.length - 1;
  const n = opts.numLayers;
  const high: QuantParams = { group_size: opts.groupSize, bits: opts.high, mode: "affine" };
  const low: QuantParams = { group_size: opts.groupSize, bits: opts.low, mode: "affine" };
  return (path) => {
    const p = path.split(".");
    const index = p.length > layerLocation ? Number.parseInt(p[layerLocation]!, 10) : 0;
    const d8 = Math.floor(n / 8);
    const useMoreBits = index < d8 || index >= Math.floor((7 * n) / 8) || pyMod(index - d8, 3) === 2;
    if ((path.includes("v_proj") || path.includes("v_a_proj") || path.includes("v_b_proj")) && useMoreBits) return { ...high };
    if (path.includes("down_proj") && useMoreBits) return { ...high };
    if (path.includes("lm_head")) return { ...high };
    return { ...low };
  };
}

const pyMod = (a: number, b: number): number => ((a % b) + b) % b;

/** The seed's 4bit_mixed: embeddings (input and output) at 6 bits, the rest as "4bit". */
function embeddingPredicate(groupSize: number, high: number, model: QuantPredicate | undefined): QuantPredicate {
  return (path, m) => (m.kind === "embedding" || path === "lm_head" ? { group_size: groupSize, bits: high, mode: "affine" } : (model?.(path, m) ?? true));
}

/** How one module is stored: quantized with these parameters, or kept in float. */
export interface ModuleQuantization {
  groupSize: number;
  bits: number;
}

export interface QuantizationPlan {
  /** The defaults config.json's "quantization" starts with; undefined for float methods. */
  defaults?: { group_size: number; bits: number; mode: "affine" };
  /** path -> how it is quantized; absent = float. */
  modules: Map<string, ModuleQuantization>;
  /** config.json's per-module entries, in module order, as the predicate returned them. */
  overrides: [string, QuantParams][];
  /** Quantizable modules left in float because their rows are not whole groups. */
  notDivisible: string[];
}

/**
 * quantize_model's wrapped_predicate around nn.quantize: a module with to_quantized() whose
 * weight's last dimension the group size divides is offered to the predicate (the recipe's, else
 * the model's); True takes the defaults, a dict its own parameters (recorded in config.json), False
 * keeps it in float.
 */
export function planQuantization(opts: {
  method: MLXMethod;
  groupSize: number;
  modules: readonly MLXModule[];
  numLayers: number;
  modelPredicate?: QuantPredicate;
}): QuantizationPlan {
  const { method, groupSize } = opts;
  const plan: QuantizationPlan = { modules: new Map(), overrides: [], notDivisible: [] };
  if (method.kind === "float") return plan;
  checkGroupSize(groupSize);
  const bits = method.bits!;
  plan.defaults = { group_size: groupSize, bits, mode: "affine" };
  let predicate: QuantPredicate | undefined = opts.modelPredicate;
  if (method.name === "4bit_mixed") predicate = embeddingPredicate(groupSize, method.highBits!, opts.modelPredicate);
  else if (method.kind === "mixed") predicate = mixedRecipePredicate({ low: bits, high: method.highBits!, groupSize, modules: opts.modules, numLayers: opts.numLayers });
  for (const m of opts.modules) {
    if (!isQuantizable(m)) continue;
    const weight = m.params.find((p) => p.name === "weight")!;
    const cols = weight.shape[weight.shape.length - 1]!;
    if (cols % groupSize !== 0) {
      plan.notDivisible.push(m.path);
      continue;
    }
    const r = predicate ? predicate(m.path, m) : true;
    if (r === false) continue;
    let q: ModuleQuantization = { groupSize, bits };
    if (r !== true) {
      plan.overrides.push([m.path, r]);
      // to_quantized(**dict): missing keys take defaults_for_mode("affine").
      q = { groupSize: r.group_size ?? MLX_DEFAULT_GROUP_SIZE, bits: r.bits ?? 4 };
      checkAffineParams({ groupSize: q.groupSize, bits: q.bits, mode: r.mode ?? "affine", cols, name: m.path });
    }
    plan.modules.set(m.path, q);
  }
  return plan;
}
