// Where checkpoints come from: a local directory, or a hub id resolved through the shared
// Hugging Face cache (downloading what it lacks).
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import { type HubOptions, type HubSnapshot, resolveHubModel } from "./hub.js";
import { parseHubId, repoName } from "./hub-id.js";
import { type LocalCheckpoint, openLocalCheckpoint } from "./local.js";

export { type HubEvent, type HubOptions, type HubSnapshot, resolveHubModel } from "./hub.js";
export { type HubModelId, parseHubId } from "./hub-id.js";
export { type HubSettings, hubSettingsFromEnv } from "./hub-settings.js";
export { DATASETS_SERVER, type DatasetRowsOptions, type DatasetSplitId, DatasetRows, datasetsCacheDir } from "./datasets.js";
export { type LocalCheckpoint, openLocalCheckpoint } from "./local.js";

export interface SourceOptions extends HubOptions {
  /** model_id for the manifest; default: the hub id, or the directory's name. */
  modelId?: string;
}

/** A model argument resolved to a directory to read. */
export interface ResolvedModel {
  dir: string;
  /** Set when `model` was a hub id. */
  hub?: HubSnapshot;
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    // EACCES and the like: something is there; the local reader says what is wrong with it.
    return (e as NodeJS.ErrnoException).code !== "ENOENT" && (e as NodeJS.ErrnoException).code !== "ENOTDIR";
  }
}

/**
 * `model` as a directory: an existing local path wins (`models/llama-tiny` stays a folder);
 * otherwise `org/name[@revision]` is resolved through the Hugging Face cache, downloading
 * what a conversion needs. Anything else is returned as the local path it looks like, for the
 * local reader to report.
 */
export async function resolveModel(model: string, opts: HubOptions = {}): Promise<ResolvedModel> {
  if (await pathExists(model)) return { dir: resolve(model) };
  const id = parseHubId(model);
  if (id === undefined) return { dir: resolve(model) };
  try {
    const hub = await resolveHubModel(id, opts);
    return { dir: hub.dir, hub };
  } catch (e) {
    if (e instanceof InputError && (e.code === "E_HUB_NOT_FOUND" || e.code === "E_OFFLINE_MISSING")) {
      throw new InputError(`${e.message} (nor is there a local directory ${resolve(model)})`, {
        code: e.code,
        path: e.path,
        cause: e,
      });
    }
    throw e;
  }
}

/** openLocalCheckpoint for a local directory or a hub id. */
export async function openCheckpoint(model: string, opts: SourceOptions = {}): Promise<LocalCheckpoint> {
  const { dir, hub } = await resolveModel(model, opts);
  if (!hub) return openLocalCheckpoint(dir, opts.modelId);
  const ckpt = await openLocalCheckpoint(dir, opts.modelId ?? hub.repo);
  return { ...ckpt, name: repoName(hub.repo), hub: { repo: hub.repo, revision: hub.revision, commit: hub.commit } };
}
