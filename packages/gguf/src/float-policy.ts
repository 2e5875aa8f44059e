import type { TensorPlan } from "./architectures/types.js";
import { GGMLType } from "./formats/gguf-types.js";

/** Output float types a converter can write directly (convert_hf_to_gguf.py --outtype). */
export type FloatOutType = GGMLType.F32 | GGMLType.F16 | GGMLType.BF16 | GGMLType.Q8_0;

/**
 * The storage type llama.cpp's converter gives one tensor for an --outtype
 * (conversion/base.py ModelBase.prepare_tensors): 1-D tensors, norms, names not ending in
 * ".weight" and the architecture's keep-F32 list stay F32; Q8_0 falls back to F16 where
 * rows do not divide into 32-wide blocks.
 */
export function converterTensorType(plan: TensorPlan, outType: FloatOutType): GGMLType {
  const nDims = plan.shape.length;
  if (nDims <= 1 || plan.name.endsWith("_norm.weight") || plan.keepF32 || !plan.name.endsWith(".weight")) {
    return GGMLType.F32;
  }
  if (outType === GGMLType.Q8_0) {
    const rowLength = plan.shape[nDims - 1]!;
    return rowLength % 32 === 0 ? GGMLType.Q8_0 : GGMLType.F16;
  }
  return outType;
}
