import { randomBytes } from "node:crypto";
import { copyFile, lstat, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import { SAFETENSORS_MAX_INDEX_BYTES } from "@llama-pajamas/gguf/formats/safetensors.js";
import { COMMIT_HASH } from "./hub-id.js";

/**
 * huggingface_hub's cache layout (file_download.py), shared with Python tools:
 *
 *   <cacheDir>/models--org--name/
 *     blobs/<etag>                      file contents; etag = LFS sha256, or git blob sha1
 *     blobs/<etag>.incomplete           a download in progress, resumed with HTTP Range
 *     snapshots/<commit>/<file>         -> ../../blobs/<etag> (relative symlink)
 *     refs/<revision>                   the commit hash (no newline) a branch or tag pointed to
 */
export interface RepoCache {
  cacheDir: string;
  /** <cacheDir>/models--org--name */
  root: string;
}

export const CACHEDIR_TAG_CONTENT =
  "Signature: 8a477f597d28d172789f06886806bc55\n" +
  "# This file is a cache directory tag created by huggingface_hub.\n" +
  "# For information about cache directory tags, see:\n" +
  "#\thttps://bford.info/cachedir/\n";

/** Files a conversion reads, when the repo has them (safetensors weights are chosen apart). */
export const CONVERSION_FILES = [
  "config.json",
  "generation_config.json",
  "model.safetensors.index.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "tekken.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "chat_template.jinja",
  "chat_template.json",
] as const;

export const INDEX_FILE = "model.safetensors.index.json";
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer.model", "tekken.json"];

export function repoCache(cacheDir: string, repo: string): RepoCache {
  return { cacheDir, root: join(cacheDir, ["models", ...repo.split("/")].join("--")) };
}

export const blobPath = (rc: RepoCache, etag: string) => join(rc.root, "blobs", etag);
export const snapshotDir = (rc: RepoCache, commit: string) => join(rc.root, "snapshots", commit);
export const refPath = (rc: RepoCache, revision: string) => join(rc.root, "refs", ...revision.split("/"));

/** Like os.path.exists: follows links, so a link to a deleted blob does not count. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The commit a branch or tag last resolved to, when the cache knows it. */
export async function readRef(rc: RepoCache, revision: string): Promise<string | undefined> {
  if (COMMIT_HASH.test(revision)) return revision;
  try {
    const commit = (await readFile(refPath(rc, revision), "utf8")).trim();
    return COMMIT_HASH.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** Records revision -> commit, atomically and only when it changed (a read-only cache stays usable). */
export async function writeRef(rc: RepoCache, revision: string, commit: string): Promise<void> {
  if (revision === commit || (await readRef(rc, revision)) === commit) return;
  const path = refPath(rc, revision);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, commit);
  await rename(tmp, path);
}

export async function writeCacheDirTag(cacheDir: string): Promise<void> {
  const path = join(cacheDir, "CACHEDIR.TAG");
  if (await exists(path)) return;
  await writeFile(path, CACHEDIR_TAG_CONTENT).catch(() => undefined);
}

/**
 * snapshots/<commit>/<file> -> blob, as a relative link (huggingface_hub _create_symlink), so
 * the cache can move. Where links are not allowed, the blob is copied, as Python does.
 */
export async function linkPointer(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw e;
    await copyFile(blob, pointer);
  }
}

/** Commits that have a snapshot folder, for messages that suggest one. */
export async function cachedSnapshots(rc: RepoCache): Promise<string[]> {
  try {
    return (await readdir(join(rc.root, "snapshots"))).filter((c) => COMMIT_HASH.test(c));
  } catch {
    return [];
  }
}

/**
 * What a conversion needs that a snapshot lacks, judged without the hub's file list (offline,
 * or the hub unreachable): config.json, every shard the index names (or some *.safetensors),
 * and a tokenizer file. Empty when the snapshot looks complete.
 */
export async function snapshotGaps(dir: string): Promise<string[]> {
  const gaps: string[] = [];
  if (!(await exists(join(dir, "config.json")))) gaps.push("config.json");
  const index = join(dir, INDEX_FILE);
  const brokenIndex = !(await exists(index)) && (await lstat(index).then(() => true, () => false));
  const shards = await indexShards(index);
  if (brokenIndex) {
    gaps.push(INDEX_FILE); // a link to a deleted blob
  } else if (shards !== undefined) {
    for (const shard of shards) if (!(await exists(join(dir, shard)))) gaps.push(shard);
  } else {
    let names: string[] = [];
    try {
      names = await readdir(dir);
    } catch {
      // No snapshot folder: everything is missing.
    }
    let weights = false;
    for (const n of names) if (n.endsWith(".safetensors") && (await exists(join(dir, n)))) weights = true;
    if (!weights) gaps.push("*.safetensors weights");
  }
  let tokenizer = false;
  for (const t of TOKENIZER_FILES) if (await exists(join(dir, t))) tokenizer = true;
  if (!tokenizer) gaps.push("a tokenizer (tokenizer.json or tokenizer.model)");
  return gaps;
}

/**
 * Shard file names of a safetensors index, or undefined when there is no index. Names are
 * checked to be plain file names: they are joined onto the snapshot folder.
 */
export async function indexShards(path: string): Promise<string[] | undefined> {
  let info;
  try {
    info = await lstat(path);
  } catch {
    return undefined;
  }
  if (info.isSymbolicLink() && !(await exists(path))) return undefined; // link to a deleted blob
  const size = (await stat(path)).size;
  if (size > SAFETENSORS_MAX_INDEX_BYTES) {
    throw new InputError(`${path}: ${size} bytes exceeds the limit of ${SAFETENSORS_MAX_INDEX_BYTES} bytes for an index`, { path });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new InputError(`${path} is not valid JSON: ${(e as Error).message}`, { path, cause: e });
  }
  const weightMap = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new InputError(`${path} has no "weight_map" object; a safetensors index maps tensor names to shard files`, { path });
  }
  const shards = new Set<string>();
  for (const [tensor, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || !isPlainFileName(file) || !file.endsWith(".safetensors")) {
      throw new InputError(
        `${path}: weight_map[${JSON.stringify(tensor)}] is ${JSON.stringify(file)}, not a *.safetensors file name`,
        { path },
      );
    }
    shards.add(file);
  }
  return [...shards].sort();
}

/** A file name with no directory part, safe to join onto a folder. */
export function isPlainFileName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !/[/\\\0]/.test(name) && name !== "." && name !== "..";
}
