import { stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { formatParamCount, PajamasError } from "@llama-pajamas/artifact";
import { getArchitecture, SUPPORTED_MODEL_TYPES } from "@llama-pajamas/gguf/architectures/index.js";
import { GGMLType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { readGGUF } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { openCheckpointTensors } from "@llama-pajamas/gguf/formats/safetensors.js";
import { type HubOptions, openCheckpoint } from "./source/index.js";

export interface ModelInfo {
  kind: "checkpoint" | "gguf";
  path: string;
  modelType?: string;
  architecture?: string; // HF class, or GGUF general.architecture
  family?: "dense_decoder" | "moe";
  supported: boolean;
  reason?: string;
  params: number;
  paramsLabel: string;
  /** dtype (or ggml type) -> tensor count */
  dtypes: Record<string, number>;
  sizeBytes: number;
  tokenizer?: string;
  layers?: number;
  experts?: number;
  /** For a hub id: the repo, the revision asked for and the commit it resolved to. */
  hub?: { repo: string; revision: string; commit: string };
}

/**
 * Describes a checkpoint directory, a hub id `org/name[@revision]` (downloaded to the Hugging
 * Face cache first), or a GGUF file, without converting anything.
 */
export async function inspectModel(path: string, opts: { hub?: HubOptions } = {}): Promise<ModelInfo> {
  if (path.toLowerCase().endsWith(".gguf")) return inspectGGUF(path);
  const ckpt = await openCheckpoint(path, opts.hub);
  const tensors = await openCheckpointTensors(ckpt.dir);
  const dtypes: Record<string, number> = {};
  let params = 0;
  for (const t of tensors.values()) {
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    params += t.shape.reduce((a, b) => a * b, 1);
  }
  const info: ModelInfo = {
    kind: "checkpoint",
    path: ckpt.dir,
    modelType: String(ckpt.config.model_type ?? "?"),
    architecture: Array.isArray(ckpt.config.architectures) ? String(ckpt.config.architectures[0]) : undefined,
    supported: false,
    params,
    paramsLabel: formatParamCount(params),
    dtypes,
    sizeBytes: ckpt.weightBytes,
    tokenizer: describeTokenizer(ckpt.dir),
  };
  if (ckpt.hub) info.hub = ckpt.hub;
  try {
    const arch = getArchitecture(ckpt.config);
    const s = arch.summary(ckpt.config);
    info.supported = true;
    info.family = s.family;
    info.layers = s.blockCount;
    if (s.expertCount) info.experts = s.expertCount;
  } catch (e) {
    if (!(e instanceof PajamasError)) throw e;
    info.reason = e.message;
  }
  return info;
}

function describeTokenizer(dir: string): string {
  if (existsSync(join(dir, "tokenizer.model"))) return "SentencePiece (tokenizer.model)";
  if (existsSync(join(dir, "tokenizer.json"))) return "tokenizer.json";
  return "none found";
}

async function inspectGGUF(path: string): Promise<ModelInfo> {
  const g = await readGGUF(path);
  const dtypes: Record<string, number> = {};
  let params = 0;
  for (const t of g.tensors) {
    const name = GGMLType[t.type] ?? String(t.type);
    dtypes[name] = (dtypes[name] ?? 0) + 1;
    params += t.ne.reduce((a, b) => a * b, 1);
  }
  const arch = String(g.kv.get("general.architecture")?.value ?? "?");
  const experts = g.kv.get(`${arch}.expert_count`)?.value;
  const layers = g.kv.get(`${arch}.block_count`)?.value;
  return {
    kind: "gguf",
    path,
    architecture: arch,
    family: typeof experts === "number" && experts > 1 ? "moe" : "dense_decoder",
    supported: true,
    params,
    paramsLabel: formatParamCount(params),
    dtypes,
    sizeBytes: (await stat(path)).size,
    tokenizer: String(g.kv.get("tokenizer.ggml.model")?.value ?? "none"),
    layers: typeof layers === "number" ? layers : undefined,
    experts: typeof experts === "number" ? experts : undefined,
  };
}

export { SUPPORTED_MODEL_TYPES };
