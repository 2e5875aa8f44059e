// Block size and bytes per block of every ggml type, from gguf-py/gguf/constants.py
// GGML_QUANT_SIZES (QK_K = 256) at the llama.cpp commit node-llama-cpp 3.21.1 ships.
import { GGMLType } from "./gguf-types.js";

export interface GGMLTypeTraits {
  /** Upstream spelling: "F16", "Q4_K" ... */
  name: string;
  /** Elements per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const QK_K = 256;

/**
 * Types ggml knows that GGMLType does not name yet (gguf-types.ts is shared; adding members
 * there would break other modules' exhaustive tables). The reader accepts them by number.
 */
export const GGML_TYPE_NVFP4 = 40;
export const GGML_TYPE_Q1_0 = 41;
export const GGML_TYPE_Q2_0 = 42;

const TRAITS: ReadonlyMap<number, GGMLTypeTraits> = new Map<number, GGMLTypeTraits>([
  [GGMLType.F32, { name: "F32", blockSize: 1, typeSize: 4 }],
  [GGMLType.F16, { name: "F16", blockSize: 1, typeSize: 2 }],
  [GGMLType.Q4_0, { name: "Q4_0", blockSize: 32, typeSize: 2 + 16 }],
  [GGMLType.Q4_1, { name: "Q4_1", blockSize: 32, typeSize: 2 + 2 + 16 }],
  [GGMLType.Q5_0, { name: "Q5_0", blockSize: 32, typeSize: 2 + 4 + 16 }],
  [GGMLType.Q5_1, { name: "Q5_1", blockSize: 32, typeSize: 2 + 2 + 4 + 16 }],
  [GGMLType.Q8_0, { name: "Q8_0", blockSize: 32, typeSize: 2 + 32 }],
  [GGMLType.Q8_1, { name: "Q8_1", blockSize: 32, typeSize: 4 + 4 + 32 }],
  [GGMLType.Q2_K, { name: "Q2_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 16 + QK_K / 4 }],
  [GGMLType.Q3_K, { name: "Q3_K", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + 12 }],
  [GGMLType.Q4_K, { name: "Q4_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + 12 }],
  [GGMLType.Q5_K, { name: "Q5_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 }],
  [GGMLType.Q6_K, { name: "Q6_K", blockSize: QK_K, typeSize: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 }],
  [GGMLType.Q8_K, { name: "Q8_K", blockSize: QK_K, typeSize: 4 + QK_K + QK_K / 8 }],
  [GGMLType.IQ2_XXS, { name: "IQ2_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4 }],
  [GGMLType.IQ2_XS, { name: "IQ2_XS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 32 }],
  [GGMLType.IQ3_XXS, { name: "IQ3_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 }],
  [GGMLType.IQ1_S, { name: "IQ1_S", blockSize: QK_K, typeSize: 2 + QK_K / 8 + QK_K / 16 }],
  [GGMLType.IQ4_NL, { name: "IQ4_NL", blockSize: 32, typeSize: 2 + 16 }],
  [GGMLType.IQ3_S, { name: "IQ3_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 }],
  [GGMLType.IQ2_S, { name: "IQ2_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 16 }],
  [GGMLType.IQ4_XS, { name: "IQ4_XS", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 64 }],
  [GGMLType.I8, { name: "I8", blockSize: 1, typeSize: 1 }],
  [GGMLType.I16, { name: "I16", blockSize: 1, typeSize: 2 }],
  [GGMLType.I32, { name: "I32", blockSize: 1, typeSize: 4 }],
  [GGMLType.I64, { name: "I64", blockSize: 1, typeSize: 8 }],
  [GGMLType.F64, { name: "F64", blockSize: 1, typeSize: 8 }],
  [GGMLType.IQ1_M, { name: "IQ1_M", blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 16 + QK_K / 32 }],
  [GGMLType.BF16, { name: "BF16", blockSize: 1, typeSize: 2 }],
  [GGMLType.TQ1_0, { name: "TQ1_0", blockSize: QK_K, typeSize: 2 + 4 * 13 }],
  [GGMLType.TQ2_0, { name: "TQ2_0", blockSize: QK_K, typeSize: 2 + 64 }],
  [GGMLType.MXFP4, { name: "MXFP4", blockSize: 32, typeSize: 1 + 16 }],
  [GGML_TYPE_NVFP4, { name: "NVFP4", blockSize: 64, typeSize: 4 + 32 }],
  [GGML_TYPE_Q1_0, { name: "Q1_0", blockSize: 128, typeSize: 2 + 16 }],
  [GGML_TYPE_Q2_0, { name: "Q2_0", blockSize: 64, typeSize: 2 + 16 }],
]);

/** Traits of a type, or undefined for a number ggml does not define. */
export function findGGMLTypeTraits(type: number): GGMLTypeTraits | undefined {
  return TRAITS.get(type);
}

/** Traits of a type; throws a RangeError for a number ggml does not define. */
export function ggmlTypeTraits(type: GGMLType | number): GGMLTypeTraits {
  const traits = TRAITS.get(type);
  if (traits === undefined) {
    throw new RangeError(`unknown ggml type ${type}; known: ${[...TRAITS.keys()].join(", ")}`);
  }
  return traits;
}

/** "Q4_K" for GGMLType.Q4_K; "type 99" for a number ggml does not define. */
export function ggmlTypeName(type: GGMLType | number): string {
  return TRAITS.get(type)?.name ?? `type ${type}`;
}

/** GGMLType by upstream name ("Q8_0"), or undefined. */
export function ggmlTypeByName(name: string): GGMLType | undefined {
  for (const [type, traits] of TRAITS) if (traits.name === name) return type as GGMLType;
  return undefined;
}

/** Bytes of one row of `nPerRow` elements; throws unless nPerRow is a whole number of blocks. */
export function rowBytes(type: GGMLType | number, nPerRow: number): number {
  const { name, blockSize, typeSize } = ggmlTypeTraits(type);
  if (!Number.isSafeInteger(nPerRow) || nPerRow < 0) {
    throw new RangeError(`row length ${nPerRow} is not a non-negative integer`);
  }
  if (nPerRow % blockSize !== 0) {
    throw new RangeError(
      `row length ${nPerRow} is not a multiple of the ${name} block size ${blockSize}`,
    );
  }
  return (nPerRow / blockSize) * typeSize;
}

/**
 * Bytes of a whole tensor. `ne` is in ggml order (ne[0] = the contiguous row length), as
 * GGUF stores it; for PyTorch order pass the shape reversed. A 0-d tensor holds one element.
 */
export function tensorBytes(type: GGMLType | number, ne: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < ne.length; i++) {
    const n = ne[i] as number;
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`dimension ${n} is not a non-negative integer`);
    rows *= n;
  }
  const bytes = rowBytes(type, ne.length === 0 ? 1 : (ne[0] as number)) * rows;
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`tensor of ne [${ne.join(", ")}] is too large`);
  return bytes;
}
