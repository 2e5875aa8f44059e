// Architecture lookup by config.json model_type (architectures[0] when model_type is absent).
import { ConversionError } from "@llama-pajamas/artifact";
import { gemma3 } from "./gemma3.js";
import { isRecord } from "./hparams.js";
import { llama } from "./llama.js";
import { mixtral } from "./mixtral.js";
import { phi3 } from "./phi3.js";
import { qwen2 } from "./qwen2.js";
import { qwen3 } from "./qwen3.js";
import { qwen3_moe } from "./qwen3_moe.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type GGUFKV, GGUFValueType } from "../formats/gguf-types.js";
import type { Architecture, HFConfig, TensorOptions } from "./types.js";

export type { Architecture, ArchitectureMetadata, ArchitectureSummary, HFConfig, SourceTensorInfo, TensorOptions, TensorPlan } from "./types.js";

export const ARCHITECTURES: readonly Architecture[] = [llama, mixtral, qwen2, qwen3, qwen3_moe, phi3, gemma3];

/** Every supported model_type, aliases included, in a stable order for messages. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = ARCHITECTURES.flatMap((a) => a.modelTypes);

/**
 * The architecture for a config.json. model_type decides; when it is missing, architectures[0]
 * does. A known model_type whose architectures[0] names a class llama.cpp converts differently
 * (Qwen3ForSequenceClassification ...) is refused too.
 */
export function getArchitecture(config: HFConfig): Architecture {
  const modelType = typeof config["model_type"] === "string" ? config["model_type"] : undefined;
  const text = isRecord(config["text_config"]) ? config["text_config"] : {};
  const archList = Array.isArray(text["architectures"]) ? text["architectures"] : config["architectures"];
  const hfArch = Array.isArray(archList) && typeof archList[0] === "string" ? archList[0] : undefined;
  const found = modelType !== undefined
    ? ARCHITECTURES.find((a) => a.modelTypes.includes(modelType))
    : ARCHITECTURES.find((a) => hfArch !== undefined && a.hfArchitectures.includes(hfArch));
  if (found && (hfArch === undefined || found.hfArchitectures.includes(hfArch))) return found;
  const detail = found
    ? `; model_type "${modelType}" is supported for ${found.hfArchitectures.join(", ")}`
    : `; supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`;
  throw new ConversionError(
    `unsupported architecture "${hfArch ?? "(no architectures in config.json)"}" (model_type "${modelType ?? "(none)"}")${detail}`,
    { code: "E_UNSUPPORTED_ARCH" },
  );
}

/**
 * Facts a plan needs beyond config.json: gemma3 without tokenizer.model has token_embd trimmed
 * to the vocabulary the tokenizer KVs hold (conversion/gemma.py), so the plan gets the count.
 */
export function tensorOptionsFor(dir: string, tokenizerKV: readonly GGUFKV[]): TensorOptions {
  if (existsSync(join(dir, "tokenizer.model"))) return {};
  const tokens = tokenizerKV.find((kv) => kv.key === "tokenizer.ggml.tokens");
  return tokens && tokens.type === GGUFValueType.ARRAY ? { tokenizerVocabCount: tokens.value.length } : {};
}
