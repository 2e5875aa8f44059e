// mlx/metadata.json and the manifest's "mlx" entry (the seed's artifact contract).
//
// A directory has no single hash, so the manifest's sha256 for "mlx/" is defined as the sha256 of
// its `sha256sum` listing: one line `<sha256 hex>  <file name>\n` per file of mlx/ except
// metadata.json (which holds the listing), sorted by name. metadata.json lists the same
// files, so `sha256sum -c` can check each, and the digest checks the listing.
import { type ManifestFormat, mlxFilesDigest } from "@llama-pajamas/artifact";
import { RUNTIME_REQUIREMENT } from "../version.js";
import type { AffineKernel, MLXFloatDtype } from "@llama-pajamas/gguf/mlx/affine.js";
import type { MLXModule } from "./models/index.js";
import type { MLXMethod, QuantizationPlan } from "./recipes.js";

/** Layout version of our mlx/ directory, recorded as manifest format_versions.mlx. */
export const MLX_FORMAT_VERSION = "1";
/** The sources whose layout and arithmetic the exporter reproduces. */
export const MLX_REFERENCE = {
  mlx: "ml-explore/mlx@846d176227a0ac13d2667e58d2bb68b322109ab0",
  mlx_lm: "ml-explore/mlx-lm@d78bf58e217c904ec282ed8da9b947491f78c022",
} as const;
/** Per-module "mode" entries need to_quantized(mode=...): MLX 0.29, mlx-lm 0.27. */
export const MLX_MIN_VERSION = ">=0.29.0";
export const MLX_LM_MIN_VERSION = ">=0.27.0";

export interface MLXFileEntry {
  name: string;
  size_bytes: number;
  sha256: string;
}

export interface MLXMetadata {
  format: "mlx";
  format_version: string;
  quantization: {
    method: string;
    mode: "affine" | null;
    group_size: number | null;
    /** The width of most modules (uniform width, a recipe's low width, 16/32 for float). */
    body_bits: number;
    /** model.embed_tokens' width (16/32 when kept in float). */
    embedding_bits: number;
    /** lm_head's width, when the model has one (untied). */
    lm_head_bits?: number;
    /** A recipe's favoured width. */
    high_bits?: number;
    /** bits -> number of modules (float modules under "16"/"32"). */
    modules_by_bits: Record<string, number>;
    /** Quantizable modules left in float because the group size does not divide their rows. */
    not_divisible: string[];
    /** mlx-lm's "bits per weight": saved bytes * 8 / parameters. */
    bits_per_weight: number;
    /** Whose rounding was reproduced: "metal" (Apple GPU and CUDA) or "cpu". */
    kernel: AffineKernel;
    /** Present and true when scales and biases were chosen by importance-weighted error. */
    importance_weighted?: true;
    /** With importance_weighted: the imatrix used and what it changed. */
    importance?: MLXImportanceInfo;
  };
  dtype: MLXFloatDtype | "mixed";
  total_parameters: number;
  mlx_version: string;
  mlx_lm_version: string;
  reference: typeof MLX_REFERENCE;
  compatible_backends: string[];
  runtime_requirements: string;
  weights_bytes: number;
  files: MLXFileEntry[];
  /** sha256 of the listing of `files` (see the header). */
  files_sha256: string;
}

/** metadata.json's quantization.importance: the imatrix's provenance and the effect. */
export interface MLXImportanceInfo {
  /** The imatrix file as the artifact names it (imatrix.gguf after --calibrate). */
  imatrix: string;
  /** imatrix.datasets: the calibration text it was computed on. */
  datasets?: string[];
  chunks?: number;
  /** Weight tensors the imatrix has an entry for. */
  entries: number;
  /** Quantized modules weighted (the others, embeddings included, are plain MLX). */
  modules: number;
  groups: number;
  /** Groups whose scale, bias or codes differ from MLX's min/max choice. */
  groups_changed_pct: number;
  /** Drop of the summed importance-weighted squared error against MLX's choice, in %. */
  weighted_error_reduction_pct: number;
}

/** The manifest's digest of the mlx/ listing (the contract's definition, see the header). */
export const filesDigest = mlxFilesDigest;

const floatBits = (dtype: MLXFloatDtype | "mixed"): number => (dtype === "float32" || dtype === "mixed" ? 32 : 16);

export function buildMLXMetadata(opts: {
  method: MLXMethod;
  plan: QuantizationPlan;
  modules: readonly MLXModule[];
  moduleBits: Record<string, number>;
  dtype: MLXFloatDtype | "mixed";
  files: readonly { name: string; sizeBytes: number; sha256: string }[];
  sha256: string;
  weightBytes: number;
  totalSize: number;
  totalParameters: number;
  kernel: AffineKernel;
  importance?: MLXImportanceInfo;
}): MLXMetadata {
  const fb = floatBits(opts.dtype);
  const bitsOf = (path: string): number => opts.moduleBits[path] ?? fb;
  const byBits: Record<string, number> = {};
  for (const m of opts.modules) {
    if (m.kind === "rms_norm") continue;
    const b = String(bitsOf(m.path));
    byBits[b] = (byBits[b] ?? 0) + 1;
  }
  const q: MLXMetadata["quantization"] = {
    method: opts.method.name,
    mode: opts.plan.defaults ? "affine" : null,
    group_size: opts.plan.defaults?.group_size ?? null,
    body_bits: opts.method.bits ?? fb,
    embedding_bits: bitsOf("model.embed_tokens"),
    modules_by_bits: byBits,
    not_divisible: opts.plan.notDivisible,
    bits_per_weight: Math.round(((opts.totalSize * 8) / opts.totalParameters) * 1000) / 1000,
    kernel: opts.kernel,
  };
  if (opts.modules.some((m) => m.path === "lm_head")) q.lm_head_bits = bitsOf("lm_head");
  if (opts.method.highBits !== undefined) q.high_bits = opts.method.highBits;
  if (opts.importance && opts.importance.modules > 0) {
    q.importance_weighted = true;
    q.importance = opts.importance;
  }
  return {
    format: "mlx",
    format_version: MLX_FORMAT_VERSION,
    quantization: q,
    dtype: opts.dtype,
    total_parameters: opts.totalParameters,
    mlx_version: MLX_MIN_VERSION,
    mlx_lm_version: MLX_LM_MIN_VERSION,
    reference: MLX_REFERENCE,
    compatible_backends: ["mlx"],
    runtime_requirements: `llama-pajamas-run ${RUNTIME_REQUIREMENT}`,
    weights_bytes: opts.weightBytes,
    files: opts.files.map((f) => ({ name: f.name, size_bytes: f.sizeBytes, sha256: f.sha256 })),
    files_sha256: opts.sha256,
  };
}

/** The manifest's formats[] entry for an exported mlx/ directory. */
export function mlxManifestEntry(r: { method: string; sizeBytes: number; sha256: string; compressionRatio: number }): ManifestFormat {
  return {
    type: "mlx",
    path: "mlx/",
    method: r.method,
    size_mb: Math.round((r.sizeBytes / 2 ** 20) * 100) / 100,
    size_bytes: r.sizeBytes,
    compression: `${r.compressionRatio.toFixed(1)}x`,
    sha256: r.sha256,
  };
}
