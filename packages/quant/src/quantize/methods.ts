// The GGUF methods users can ask for, by the names llama-quantize takes. Names, order and
// descriptions are those of QUANT_OPTIONS in llama.cpp tools/quantize/quantize.cpp at the
// commit node-llama-cpp 3.21.1 ships (descriptions quote llama.cpp's Llama-3-8B numbers).

import { UsageError } from "@llama-pajamas/artifact";
import { ggmlTypeTraits } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { tensorBytes } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { chooseTensorTypes, ftypeDefaultType, type RecipeTensor } from "./recipes.js";

export interface QuantMethod {
  /** Upstream spelling: "Q4_K_M", "IQ2_XS", "F16" ... */
  name: string;
  ftype: LlamaFtype;
  /** The type most tensors get (llama_ftype_get_default_type). */
  defaultType: GGMLType;
  /** Bits per weight of the default type alone (block bytes * 8 / block size). */
  defaultTypeBitsPerWeight: number;
  /**
   * Bits per weight of the whole mixture on a Llama-3-8B-shaped model, computed with this
   * package's own port of llama.cpp's type rules (output, attn_v, ffn_down bumps included).
   */
  bitsPerWeight: number;
  /** QUANT_OPTIONS' description. */
  description: string;
  /**
   * llama_model_quantize refuses to run without an importance matrix: some tensor gets a type
   * tensor_requires_imatrix lists (IQ1/IQ2/IQ3_XXS, or Q2_K in Q2_K_S).
   */
  requiresImatrix: boolean;
  /** An importance matrix, when given, changes the result (every quantized method). */
  usesImatrix: boolean;
  /** Other names that select it ("Q4_K" for Q4_K_M). */
  aliases: string[];
}

interface Row {
  name: string;
  ftype: LlamaFtype;
  description: string;
  requiresImatrix?: boolean;
  aliases?: string[];
}

const F = LlamaFtype;

// QUANT_OPTIONS order. requiresImatrix: the default type, or a type the mixture gives to
// attn_q/attn_k/ffn tensors of any model, is one tensor_requires_imatrix lists; the suite
// checks these flags against planTensorTypes on a real model.
const ROWS: Row[] = [
  { name: "Q4_0", ftype: F.MOSTLY_Q4_0, description: "4.34G, +0.4685 ppl @ Llama-3-8B" },
  { name: "Q4_1", ftype: F.MOSTLY_Q4_1, description: "4.78G, +0.4511 ppl @ Llama-3-8B" },
  { name: "Q5_0", ftype: F.MOSTLY_Q5_0, description: "5.21G, +0.1316 ppl @ Llama-3-8B" },
  { name: "Q5_1", ftype: F.MOSTLY_Q5_1, description: "5.65G, +0.1062 ppl @ Llama-3-8B" },
  { name: "IQ2_XXS", ftype: F.MOSTLY_IQ2_XXS, description: "2.06 bpw quantization", requiresImatrix: true },
  { name: "IQ2_XS", ftype: F.MOSTLY_IQ2_XS, description: "2.31 bpw quantization", requiresImatrix: true },
  { name: "IQ2_S", ftype: F.MOSTLY_IQ2_S, description: "2.5  bpw quantization", requiresImatrix: true },
  { name: "IQ2_M", ftype: F.MOSTLY_IQ2_M, description: "2.7  bpw quantization", requiresImatrix: true },
  { name: "Q2_K", ftype: F.MOSTLY_Q2_K, description: "2.96G, +3.5199 ppl @ Llama-3-8B" },
  { name: "Q2_K_S", ftype: F.MOSTLY_Q2_K_S, description: "2.96G, +3.1836 ppl @ Llama-3-8B", requiresImatrix: true },
  { name: "IQ3_XXS", ftype: F.MOSTLY_IQ3_XXS, description: "3.06 bpw quantization", requiresImatrix: true },
  { name: "IQ3_S", ftype: F.MOSTLY_IQ3_S, description: "3.44 bpw quantization" },
  { name: "IQ3_M", ftype: F.MOSTLY_IQ3_M, description: "3.66 bpw quantization mix" },
  { name: "IQ3_XS", ftype: F.MOSTLY_IQ3_XS, description: "3.3 bpw quantization", requiresImatrix: true },
  { name: "Q3_K_S", ftype: F.MOSTLY_Q3_K_S, description: "3.41G, +1.6321 ppl @ Llama-3-8B" },
  { name: "Q3_K_M", ftype: F.MOSTLY_Q3_K_M, description: "3.74G, +0.6569 ppl @ Llama-3-8B", aliases: ["Q3_K"] },
  { name: "Q3_K_L", ftype: F.MOSTLY_Q3_K_L, description: "4.03G, +0.5562 ppl @ Llama-3-8B" },
  { name: "IQ4_NL", ftype: F.MOSTLY_IQ4_NL, description: "4.50 bpw non-linear quantization" },
  { name: "IQ4_XS", ftype: F.MOSTLY_IQ4_XS, description: "4.25 bpw non-linear quantization" },
  { name: "Q4_K_S", ftype: F.MOSTLY_Q4_K_S, description: "4.37G, +0.2689 ppl @ Llama-3-8B" },
  { name: "Q4_K_M", ftype: F.MOSTLY_Q4_K_M, description: "4.58G, +0.1754 ppl @ Llama-3-8B", aliases: ["Q4_K"] },
  { name: "Q5_K_S", ftype: F.MOSTLY_Q5_K_S, description: "5.21G, +0.1049 ppl @ Llama-3-8B" },
  { name: "Q5_K_M", ftype: F.MOSTLY_Q5_K_M, description: "5.33G, +0.0569 ppl @ Llama-3-8B", aliases: ["Q5_K"] },
  { name: "Q6_K", ftype: F.MOSTLY_Q6_K, description: "6.14G, +0.0217 ppl @ Llama-3-8B" },
  { name: "Q8_0", ftype: F.MOSTLY_Q8_0, description: "7.96G, +0.0026 ppl @ Llama-3-8B" },
  { name: "F16", ftype: F.MOSTLY_F16, description: "14.00G, +0.0020 ppl @ Mistral-7B" },
  { name: "BF16", ftype: F.MOSTLY_BF16, description: "14.00G, -0.0050 ppl @ Mistral-7B" },
  { name: "F32", ftype: F.ALL_F32, description: "26.00G              @ 7B" },
];

/** Llama-3-8B's tensors (ggml ne order) in file order: 32 blocks, GQA 4, untied output. */
function llama3Tensors(): RecipeTensor[] {
  const t: RecipeTensor[] = [{ name: "token_embd.weight", ne: [4096, 128256], type: GGMLType.F16 }];
  for (let b = 0; b < 32; b++) {
    const w = (n: string, ne: number[]) => t.push({ name: `blk.${b}.${n}.weight`, ne, type: GGMLType.F16 });
    w("attn_q", [4096, 4096]);
    w("attn_k", [4096, 1024]);
    w("attn_v", [4096, 1024]);
    w("attn_output", [4096, 4096]);
    w("ffn_gate", [4096, 14336]);
    w("ffn_up", [4096, 14336]);
    w("ffn_down", [14336, 4096]);
    t.push({ name: `blk.${b}.attn_norm.weight`, ne: [4096], type: GGMLType.F32 });
    t.push({ name: `blk.${b}.ffn_norm.weight`, ne: [4096], type: GGMLType.F32 });
  }
  t.push({ name: "output_norm.weight", ne: [4096], type: GGMLType.F32 }, { name: "output.weight", ne: [4096, 128256], type: GGMLType.F16 });
  return t;
}

function llama3MixBitsPerWeight(ftype: LlamaFtype): number {
  const tensors = llama3Tensors();
  const types = chooseTensorTypes({
    ftype,
    tensors,
    model: { arch: "llama", blockCount: 32, headCount: 32, headCountKv: 8 },
    haveImatrix: true,
  });
  let bytes = 0;
  let weights = 0;
  tensors.forEach((t, i) => {
    bytes += tensorBytes(types[i]!, t.ne);
    weights += t.ne.reduce((a, b) => a * b, 1);
  });
  return Math.round(((bytes * 8) / weights) * 100) / 100;
}

function build(row: Row): QuantMethod {
  const defaultType = ftypeDefaultType(row.ftype) as GGMLType;
  const { blockSize, typeSize } = ggmlTypeTraits(defaultType);
  const float = defaultType === GGMLType.F32 || defaultType === GGMLType.F16 || defaultType === GGMLType.BF16;
  return Object.freeze({
    name: row.name,
    ftype: row.ftype,
    defaultType,
    defaultTypeBitsPerWeight: (typeSize * 8) / blockSize,
    bitsPerWeight: llama3MixBitsPerWeight(row.ftype),
    description: row.description,
    requiresImatrix: row.requiresImatrix === true,
    usesImatrix: !float,
    aliases: row.aliases ?? [],
  }) as QuantMethod;
}

/** Every supported method, in llama-quantize's order. */
export const METHODS: readonly QuantMethod[] = Object.freeze(ROWS.map(build));

/** The method a user typed, case-insensitively ("q4_k_m", "Q4_K", "iq2_xs" ...). */
export function parseMethod(name: string): QuantMethod {
  const want = name.trim().toUpperCase();
  const hit = METHODS.find((m) => m.name === want || m.aliases.includes(want));
  if (hit) return hit;
  throw new UsageError(
    `unknown quantization method "${name}"; valid: ${METHODS.map((m) => m.name.toLowerCase()).join(", ")} ` +
      `(aliases: q3_k, q4_k, q5_k; run list-methods for details)`,
  );
}

/** The method of a llama_ftype, if we support it. */
export function methodForFtype(ftype: LlamaFtype | number): QuantMethod | undefined {
  return METHODS.find((m) => m.ftype === ftype);
}
