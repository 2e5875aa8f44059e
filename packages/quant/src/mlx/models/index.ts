// MLX model files by config.json model_type, with mlx-lm's MODEL_REMAPPING aliases.
import { ConversionError } from "@llama-pajamas/artifact";
import type { HFConfig } from "@llama-pajamas/gguf/architectures/types.js";
import { llama } from "./llama.js";
import { mixtral } from "./mixtral.js";
import { qwen2 } from "./qwen2.js";
import { qwen3 } from "./qwen3.js";
import { qwen3_moe } from "./qwen3_moe.js";
import type { MLXModelFile } from "./types.js";

export type { MLXModelFile, MLXModule, MLXModuleKind, MLXParam, QuantParams, QuantPredicate, SourceRun } from "./types.js";
export { isQuantizable } from "./types.js";

const MODELS: Readonly<Record<string, MLXModelFile>> = { llama, mixtral, qwen2, qwen3, qwen3_moe };
/** mlx_lm/utils.py MODEL_REMAPPING, the entries whose target we have. */
const ALIASES: Readonly<Record<string, string>> = { mistral: "llama", iquestcoder: "llama" };

export const MLX_MODEL_TYPES: readonly string[] = [...Object.keys(MODELS), ...Object.keys(ALIASES)].sort();

export function getMLXModel(config: HFConfig): MLXModelFile {
  const type = config["model_type"];
  const name = typeof type === "string" ? (ALIASES[type] ?? type) : undefined;
  const found = name !== undefined ? MODELS[name] : undefined;
  if (!found) {
    throw new ConversionError(
      `MLX export does not support model_type ${JSON.stringify(type ?? null)}; supported: ${MLX_MODEL_TYPES.join(", ")}`,
      { code: "E_UNSUPPORTED_ARCH" },
    );
  }
  return found;
}
