// MLX export: mlx_lm.convert's output written without MLX (see export.ts), and MLX's affine
// quantizer (see affine.ts).
export {
  type AffineKernel,
  type AffineQuantized,
  type MLXFloatDtype,
  MLX_AFFINE_BITS,
  MLX_GROUP_SIZES,
  affineDequantize,
  affineGroupParams,
  affineQuantize,
  packRow,
  unpackRow,
} from "@llama-pajamas/gguf/mlx/affine.js";
export { MLX_SHARD_BYTES, checkMLXRequest, type MLXExportOptions, type MLXExportResult, type MLXFile, type MLXProgressEvent, exportMLX } from "./export.js";
export { MLX_FORMAT_VERSION, type MLXImportanceInfo, type MLXMetadata, filesDigest, mlxManifestEntry } from "./metadata.js";
export { type WeightedAffineOptions, type WeightedGroup, type WeightedStats, affineQuantizeWeighted, weightedAffineGroup } from "./weighted.js";
export { MLX_MODEL_TYPES } from "./models/index.js";
export { DEFAULT_GGUF_PRECISION, DEFAULT_MLX_PRECISION, type OutputFormat, parseFormats, resolvePrecisions } from "./precision.js";
export { MLX_METHOD_NAMES, type MLXMethod, parseMLXMethod } from "./recipes.js";
