import { constants } from "node:fs";
import { access, readdir, readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import type { HFConfig } from "@llama-pajamas/gguf/architectures/types.js";

/** A checkpoint directory on disk, checked enough to start reading it. */
export interface LocalCheckpoint {
  dir: string;
  /** What the manifest records as model_id: the hub id when known, else the dir name. */
  modelId: string;
  /** The model's own name (GGUF general.name, output file stem): the dir name, or the hub repo's name. */
  name: string;
  /** Where a hub checkpoint came from; absent for a local directory. */
  hub?: { repo: string; revision: string; commit: string };
  config: HFConfig;
  generationConfig: Record<string, unknown> | undefined;
  /** Names of *.safetensors files present. */
  safetensorsFiles: string[];
  /** Sum of the safetensors files' sizes: the "uncompressed" size compressions refer to. */
  weightBytes: number;
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`, { path, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} ${path} is not valid JSON: ${(e as Error).message}`, { path, cause: e });
  }
}

/**
 * Opens a local Hugging Face checkpoint directory: config.json plus safetensors weights.
 * Errors say which file is missing and what a checkpoint directory holds.
 */
export async function openLocalCheckpoint(model: string, modelId?: string): Promise<LocalCheckpoint> {
  const dir = resolve(model);
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno !== "ENOENT" && errno !== "ENOTDIR") {
      // EACCES on a parent, ELOOP ...: the dir may well exist, so don't say it doesn't.
      throw new InputError(`cannot access model directory ${dir}: ${(e as Error).message}; check its and its parents' permissions`, {
        path: dir,
        cause: e,
      });
    }
    throw new InputError(
      `model directory ${dir} does not exist; pass --model a local Hugging Face checkpoint directory ` +
        `(config.json + *.safetensors) or a hub id org/name[@revision]`,
      { path: dir, code: "E_NOT_FOUND" },
    );
  }
  if (!st.isDirectory()) {
    throw new InputError(`--model ${dir} is a file, not a directory; pass the checkpoint directory that holds config.json`, {
      path: dir,
    });
  }
  try {
    await access(dir, constants.R_OK | constants.X_OK);
  } catch {
    throw new InputError(`model directory ${dir} is not readable; check its permissions`, { path: dir });
  }
  const entries = await readdir(dir);
  if (!entries.includes("config.json")) {
    throw new InputError(
      `${dir} is not a Hugging Face model directory: config.json is missing ` +
        `(found ${entries.length === 0 ? "nothing" : entries.slice(0, 6).join(", ")})`,
      { path: dir, code: "E_NOT_A_MODEL" },
    );
  }
  const config = await readJson(join(dir, "config.json"), "config");
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new InputError(`${join(dir, "config.json")} must hold a JSON object`, { path: join(dir, "config.json") });
  }
  const safetensorsFiles = entries.filter((e) => e.endsWith(".safetensors")).sort();
  if (safetensorsFiles.length === 0) {
    const other = entries.filter((e) => /\.(bin|pt|pth|gguf)$/.test(e));
    throw new InputError(
      `${dir} has no *.safetensors weights` +
        (other.length > 0 ? ` (found ${other.join(", ")}; only safetensors checkpoints are supported)` : ""),
      { path: dir, code: "E_NOT_A_MODEL" },
    );
  }
  let weightBytes = 0;
  for (const f of safetensorsFiles) weightBytes += (await stat(join(dir, f))).size;
  const generationConfig = entries.includes("generation_config.json")
    ? ((await readJson(join(dir, "generation_config.json"), "generation config")) as Record<string, unknown>)
    : undefined;
  return {
    dir,
    modelId: modelId ?? basename(dir),
    name: basename(dir),
    config: config as HFConfig,
    generationConfig,
    safetensorsFiles,
    weightBytes,
  };
}
