import { formatParamCount } from "@llama-pajamas/artifact";
import type { ArchitectureMetadata } from "./architectures/types.js";
import { type GGUFKV, GGUFValueType } from "./formats/gguf-types.js";

/**
 * The `general.*` keys that open every GGUF we write, in the order llama.cpp's converter
 * writes them (gguf-py metadata.py + conversion/base.py): architecture, type, the sampling
 * defaults from generation_config.json, name, size label. These are provenance, so the
 * reference comparison ignores them, but runtimes read general.sampling.* as defaults.
 */
export function generalMetadata(opts: {
  ggufArch: string;
  dirName: string;
  generationConfig: Record<string, unknown> | undefined;
  paramsTotal: number;
  expertCount?: number;
  paramsPerExpertLabel?: string;
}): GGUFKV[] {
  const kv: GGUFKV[] = [
    { key: "general.architecture", type: GGUFValueType.STRING, value: opts.ggufArch },
    { key: "general.type", type: GGUFValueType.STRING, value: "model" },
  ];
  const g = opts.generationConfig ?? {};
  // Same keys and order as gguf-py's Metadata.set_gguf_meta_model for the common ones.
  const sampling: [string, string, GGUFValueType][] = [
    ["top_k", "general.sampling.top_k", GGUFValueType.INT32],
    ["top_p", "general.sampling.top_p", GGUFValueType.FLOAT32],
    ["min_p", "general.sampling.min_p", GGUFValueType.FLOAT32],
    ["temperature", "general.sampling.temp", GGUFValueType.FLOAT32],
    ["repetition_penalty", "general.sampling.penalty_repeat", GGUFValueType.FLOAT32],
  ];
  if (g.do_sample !== false) {
    for (const [from, key, type] of sampling) {
      const v = g[from];
      if (typeof v === "number" && Number.isFinite(v)) kv.push({ key, type: type as GGUFValueType.FLOAT32, value: v });
    }
  }
  kv.push({ key: "general.name", type: GGUFValueType.STRING, value: titleCase(opts.dirName) });
  const label =
    opts.expertCount && opts.paramsPerExpertLabel
      ? `${opts.expertCount}x${opts.paramsPerExpertLabel}`
      : formatParamCount(opts.paramsTotal);
  kv.push({ key: "general.size_label", type: GGUFValueType.STRING, value: label });
  return kv;
}

/** "qwen3-tiny" -> "Qwen3 Tiny", as gguf-py derives general.name from the directory name. */
function titleCase(name: string): string {
  return name
    .split(/[-_ ]+/)
    .filter((w) => w.length > 0)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join(" ");
}

/**
 * Every KV of a GGUF in llama.cpp's converter order (see ArchitectureMetadata):
 * general.architecture, the architecture's early keys, the other general.* keys, the
 * architecture keys, general.file_type, the late architecture keys,
 * general.quantization_version, then the tokenizer.
 */
export function ggufHeaderKVs(o: { general: readonly GGUFKV[]; arch: ArchitectureMetadata; fileType: number; tokenizer: readonly GGUFKV[] }): GGUFKV[] {
  return [
    o.general[0]!, // general.architecture
    ...o.arch.afterArchitecture,
    ...o.general.slice(1),
    ...o.arch.beforeFileType,
    { key: "general.file_type", type: GGUFValueType.UINT32, value: o.fileType },
    ...o.arch.afterFileType,
    { key: "general.quantization_version", type: GGUFValueType.UINT32, value: 2 },
    ...o.tokenizer,
  ];
}
