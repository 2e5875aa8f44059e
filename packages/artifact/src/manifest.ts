import { ManifestError } from "./errors.js";

/**
 * The artifact contract: `manifest.json` at the root of an artifact directory and a
 * `metadata.json` beside each format. JSON field names keep the seed's snake_case spelling;
 * they are a file format, not an API.
 */

export const MANIFEST_FILE = "manifest.json";
export const METADATA_FILE = "metadata.json";
/** Version of the manifest layout itself; bumped on incompatible changes. */
export const MANIFEST_SCHEMA_VERSION = 1;

export type FormatType = "gguf" | "mlx";
export type ModelFamily = "dense_decoder" | "moe";

export interface ManifestArchitecture {
  family: ModelFamily;
  type: string; // HF model_type
  params_total: string; // human form, "8.2B"
  params_non_embedding: string;
  params_total_count?: number;
  params_non_embedding_count?: number;
}

export interface ManifestFormat {
  type: FormatType;
  /** Relative to the artifact directory, never outside it. */
  path: string;
  method: string; // "Q4_K_M", "4bit_mixed"
  size_mb: number;
  compression: string; // "8.9x" relative to the source checkpoint's bytes
  sha256?: string;
  size_bytes?: number;
}

export interface ManifestValidation {
  perplexity_fp16?: number;
  perplexity_quantized?: number;
  increase_pct?: number;
  kld_mean?: number;
  same_top_pct?: number;
  mmlu_fp16?: number;
  mmlu_quantized?: number;
  tokens?: number;
  text_sha256?: string;
}

export interface Manifest {
  schema_version: number;
  model_id: string;
  quantized_at: string; // ISO 8601
  pipeline_version: string;
  architecture: ManifestArchitecture;
  formats: ManifestFormat[];
  /** package name -> semver range, e.g. {"llama-pajamas-run": ">=0.1.0 <1.0.0"} */
  runtime_requirements: Record<string, string>;
  /** format -> version of that format's layout, e.g. {"gguf": "3"} */
  format_versions: Partial<Record<FormatType, string>>;
  validation?: ManifestValidation;
}

export interface GGUFFileMetadata {
  file: string; // relative to the gguf/ directory
  quantization_method: string;
  file_type: number; // llama_ftype written as general.file_type
  size_bytes: number;
  sha256: string;
  /** ggml type name -> number of tensors stored in it */
  tensor_types: Record<string, number>;
  imatrix?: string;
}

export interface GGUFMetadata {
  format: "gguf";
  quantization_method: string; // the first file's, as in the seed
  gguf_version: number;
  llama_cpp_version: string;
  compatible_backends: string[];
  runtime_requirements: string;
  files: GGUFFileMetadata[];
}

type Json = unknown;

function fail(where: string, field: string, expected: string, seen: Json): never {
  const shown = seen === undefined ? "missing" : JSON.stringify(seen)?.slice(0, 80);
  throw new ManifestError(`${where}: field "${field}" should be ${expected}, got ${shown}`);
}

function isRecord(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(obj: Record<string, Json>, where: string, field: string): string {
  const v = obj[field];
  if (typeof v !== "string" || v.length === 0) fail(where, field, "a non-empty string", v);
  return v;
}

function num(obj: Record<string, Json>, where: string, field: string): number {
  const v = obj[field];
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) fail(where, field, "a non-negative number", v);
  return v;
}

function stringMap(obj: Record<string, Json>, where: string, field: string): Record<string, string> {
  const v = obj[field];
  if (!isRecord(v)) fail(where, field, "an object of strings", v);
  for (const [k, x] of Object.entries(v)) if (typeof x !== "string") fail(where, `${field}.${k}`, "a string", x);
  return v as Record<string, string>;
}

/**
 * A format path must stay inside the artifact directory: relative, no "..", no absolute
 * or drive-letter forms. The runtime joins it onto the directory it loaded.
 */
export function checkRelativePath(path: string, where: string): string {
  const parts = path.replace(/\\/g, "/").split("/");
  if (path.startsWith("/") || /^[a-zA-Z]:/.test(path) || parts.includes("..") || path.includes("\0")) {
    throw new ManifestError(
      `${where}: path ${JSON.stringify(path)} points outside the artifact directory; ` +
        `format paths must be relative and must not contain ".."`,
    );
  }
  return path;
}

/** Parses and checks a manifest object (already JSON-decoded). Throws ManifestError. */
export function parseManifest(raw: Json, where = MANIFEST_FILE): Manifest {
  if (!isRecord(raw)) throw new ManifestError(`${where}: expected a JSON object`);
  const arch = raw.architecture;
  if (!isRecord(arch)) fail(where, "architecture", "an object", arch);
  const family = arch.family;
  if (family !== "dense_decoder" && family !== "moe") fail(where, "architecture.family", '"dense_decoder" or "moe"', family);
  const formats = raw.formats;
  if (!Array.isArray(formats) || formats.length === 0) fail(where, "formats", "a non-empty array", formats);
  const parsedFormats = formats.map((f: Json, i: number): ManifestFormat => {
    const at = `formats[${i}]`;
    if (!isRecord(f)) fail(where, at, "an object", f);
    const type = f.type;
    if (type !== "gguf" && type !== "mlx") fail(where, `${at}.type`, '"gguf" or "mlx"', type);
    const out: ManifestFormat = {
      type,
      path: checkRelativePath(str(f, where, `path`), `${where} ${at}`),
      method: str(f, where, "method"),
      size_mb: num(f, where, "size_mb"),
      compression: str(f, where, "compression"),
    };
    if (f.sha256 !== undefined) {
      if (typeof f.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256)) fail(where, `${at}.sha256`, "64 hex digits", f.sha256);
      out.sha256 = f.sha256;
    }
    if (f.size_bytes !== undefined) out.size_bytes = num(f, where, "size_bytes");
    return out;
  });
  const schema = raw.schema_version ?? 1;
  if (typeof schema !== "number" || schema > MANIFEST_SCHEMA_VERSION) {
    throw new ManifestError(
      `${where}: schema_version ${JSON.stringify(schema)} is newer than this reader understands ` +
        `(${MANIFEST_SCHEMA_VERSION}); upgrade llama-pajamas`,
    );
  }
  const quantizedAt = str(raw, where, "quantized_at");
  if (Number.isNaN(Date.parse(quantizedAt))) fail(where, "quantized_at", "an ISO 8601 date", quantizedAt);
  const manifest: Manifest = {
    schema_version: schema,
    model_id: str(raw, where, "model_id"),
    quantized_at: quantizedAt,
    pipeline_version: str(raw, where, "pipeline_version"),
    architecture: {
      family,
      type: str(arch, `${where} architecture`, "type"),
      params_total: str(arch, `${where} architecture`, "params_total"),
      params_non_embedding: str(arch, `${where} architecture`, "params_non_embedding"),
    },
    formats: parsedFormats,
    runtime_requirements: stringMap(raw, where, "runtime_requirements"),
    format_versions: stringMap(raw, where, "format_versions"),
  };
  if (typeof arch.params_total_count === "number") manifest.architecture.params_total_count = arch.params_total_count;
  if (typeof arch.params_non_embedding_count === "number") {
    manifest.architecture.params_non_embedding_count = arch.params_non_embedding_count;
  }
  if (raw.validation !== undefined) {
    if (!isRecord(raw.validation)) fail(where, "validation", "an object", raw.validation);
    manifest.validation = raw.validation as ManifestValidation;
  }
  return manifest;
}

/** Parses gguf/metadata.json. Throws ManifestError. */
export function parseGGUFMetadata(raw: Json, where = `gguf/${METADATA_FILE}`): GGUFMetadata {
  if (!isRecord(raw)) throw new ManifestError(`${where}: expected a JSON object`);
  if (raw.format !== "gguf") fail(where, "format", '"gguf"', raw.format);
  const files = raw.files;
  if (!Array.isArray(files)) fail(where, "files", "an array", files);
  return {
    format: "gguf",
    quantization_method: str(raw, where, "quantization_method"),
    gguf_version: num(raw, where, "gguf_version"),
    llama_cpp_version: str(raw, where, "llama_cpp_version"),
    compatible_backends: Array.isArray(raw.compatible_backends) ? (raw.compatible_backends as string[]) : [],
    runtime_requirements: str(raw, where, "runtime_requirements"),
    files: files.map((f: Json, i: number) => {
      if (!isRecord(f)) fail(where, `files[${i}]`, "an object", f);
      checkRelativePath(str(f, where, "file"), `${where} files[${i}]`);
      return f as unknown as GGUFFileMetadata;
    }),
  };
}

/** "8.2B", "42M", "950K": the size labels used in manifests (and llama.cpp's size_label). */
export function formatParamCount(n: number): string {
  const units: [number, string][] = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [scale, unit] of units) {
    if (n >= scale) {
      const v = n / scale;
      return `${v >= 100 ? Math.round(v) : Number(v.toPrecision(2))}${unit}`;
    }
  }
  return String(n);
}
