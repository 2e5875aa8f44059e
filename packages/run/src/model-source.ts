import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import {
  checkRequirement,
  InputError,
  type Manifest,
  MANIFEST_FILE,
  ManifestError,
  METADATA_FILE,
  mlxFilesDigest,
  parseGGUFMetadata,
  parseManifest,
  VersionMismatchError,
} from "@llama-pajamas/artifact";
import { RUNTIME_NAME, RUNTIME_VERSION, SUPPORTED_FORMAT_VERSIONS } from "./version.js";

/**
 * What a model path is: a .gguf file, an artifact directory (manifest.json), or an MLX
 * directory. Opening one checks everything that can be checked before native code runs:
 * existence, the GGUF magic and version, the manifest contract and its version requirements.
 */
export interface ModelSource {
  kind: "gguf" | "artifact" | "mlx";
  /** Absolute path of what the caller gave. */
  path: string;
  /** Formats on offer, for backend selection. */
  formats: ("gguf" | "mlx")[];
  manifest?: Manifest;
}

export interface ChosenFile {
  /** Absolute path of the file to load. */
  file: string;
  /** The quantization method, when a manifest or metadata.json says. */
  method?: string;
  /** Where the expected sha256 came from, when known. */
  sha256?: { expected: string; from: string };
}

const GGUF_MAGIC = "GGUF";
/** Bytes read to identify a file: magic (4) and version (uint32). */
const HEADER_BYTES = 8;
/** A manifest is a few KB; anything far larger is not one. */
const MAX_MANIFEST_BYTES = 1 << 20;

export async function openModelSource(path: string): Promise<ModelSource> {
  const abs = resolve(path);
  const st = await stat(abs).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(
      e.code === "ENOENT" ? `model not found: ${path} does not exist` : `cannot read model ${path}: ${e.message}`,
      { path: abs, cause: e, code: e.code === "ENOENT" ? "E_NOT_FOUND" : "E_INPUT" },
    );
  });
  if (st.isFile()) {
    await checkGGUFHeader(abs);
    return { kind: "gguf", path: abs, formats: ["gguf"] };
  }
  if (!st.isDirectory()) throw new InputError(`${path} is neither a file nor a directory`, { path: abs });
  const entries = await readdir(abs);
  if (entries.includes(MANIFEST_FILE)) {
    const manifest = await readManifest(join(abs, MANIFEST_FILE));
    checkRuntimeRequirements(manifest);
    return { kind: "artifact", path: abs, formats: [...new Set(manifest.formats.map((f) => f.type))], manifest };
  }
  if (entries.includes("config.json") && entries.some((e) => e.endsWith(".safetensors"))) {
    return { kind: "mlx", path: abs, formats: ["mlx"] };
  }
  const ggufs = entries.filter((e) => e.endsWith(".gguf"));
  throw new InputError(
    `${path} is a directory without ${MANIFEST_FILE}; pass an artifact directory or a .gguf file` +
      (ggufs.length > 0 ? ` (it holds ${ggufs.slice(0, 3).join(", ")}${ggufs.length > 3 ? ", ..." : ""})` : ""),
    { path: abs, code: "E_NOT_MODEL" },
  );
}

/**
 * The file a backend of `format` should load. In an artifact: the format entry whose method is
 * `method` (case-insensitive), else the first of that format, as the pipeline lists its primary
 * precision first.
 */
export async function chooseFile(source: ModelSource, format: "gguf" | "mlx", method?: string): Promise<ChosenFile> {
  if (source.kind === "gguf") {
    const meta = await siblingMetadata(source.path);
    const chosen: ChosenFile = { file: source.path };
    if (meta?.method !== undefined) chosen.method = meta.method;
    if (meta?.sha256 !== undefined) chosen.sha256 = meta.sha256;
    return chosen;
  }
  if (source.kind === "mlx" || source.manifest === undefined) return { file: source.path };
  const manifest = source.manifest;
  const offered = manifest.formats.filter((f) => f.type === format);
  const entry = method === undefined ? offered[0] : offered.find((f) => f.method.toLowerCase() === method.toLowerCase());
  if (entry === undefined) {
    throw new InputError(
      method === undefined
        ? `${source.path}/${MANIFEST_FILE} lists no ${format} format (it has ${manifest.formats.map((f) => f.type).join(", ")})`
        : `${source.path}/${MANIFEST_FILE} has no ${format} file with method ${method}; methods: ${offered.map((f) => f.method).join(", ")}`,
      { path: source.path, code: "E_NO_FORMAT" },
    );
  }
  checkFormatVersion(manifest, format);
  const file = join(source.path, entry.path);
  await checkInside(source.path, file, entry.path);
  if (format === "gguf") await checkGGUFHeader(file);
  const chosen: ChosenFile = { file, method: entry.method };
  if (entry.sha256 !== undefined) chosen.sha256 = { expected: entry.sha256, from: join(source.path, MANIFEST_FILE) };
  return chosen;
}

/** Streams the file through sha256 and compares with what the artifact recorded. */
export async function verifyChecksum(chosen: ChosenFile): Promise<void> {
  if (chosen.sha256 === undefined) {
    throw new InputError(
      `cannot verify ${chosen.file}: no sha256 is recorded for it; load the artifact directory ` +
        `(manifest.json) or keep gguf/${METADATA_FILE} beside the file`,
      { path: chosen.file, code: "E_NO_CHECKSUM" },
    );
  }
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(chosen.file)) hash.update(chunk as Buffer);
  const actual = hash.digest("hex");
  if (actual !== chosen.sha256.expected) {
    throw new InputError(
      `sha256 mismatch for ${chosen.file}: the file hashes to ${actual}, but ${chosen.sha256.from} records ` +
        `${chosen.sha256.expected}; the file is damaged or was replaced, so convert or download it again`,
      { path: chosen.file, code: "E_CHECKSUM" },
    );
  }
}

async function readManifest(path: string): Promise<Manifest> {
  const st = await stat(path);
  if (st.size > MAX_MANIFEST_BYTES) throw new ManifestError(`${path} is ${st.size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ManifestError(`${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseManifest(raw, path);
}

/**
 * runtime_requirements entries name a package and a semver range. Ours is checked; an `[mlx]`
 * extra names an MLX engine install (mlx, mlx-lm), which this runtime does not use; entries for other runtimes
 * (llama-cpp-python, mlx) describe other installations and are not ours to judge.
 */
function checkRuntimeRequirements(manifest: Manifest): void {
  for (const [name, range] of Object.entries(manifest.runtime_requirements)) {
    const m = /^([^[\s]+)(?:\[(\w+)\])?$/.exec(name.trim());
    if (m?.[1] !== RUNTIME_NAME || m[2] !== undefined) continue;
    checkRequirement(RUNTIME_NAME, RUNTIME_VERSION, range);
  }
}

function checkFormatVersion(manifest: Manifest, format: "gguf" | "mlx"): void {
  const version = manifest.format_versions[format];
  const supported = SUPPORTED_FORMAT_VERSIONS[format] ?? [];
  if (version !== undefined && !supported.includes(version)) {
    throw new VersionMismatchError(
      `this artifact's ${format} files are format version ${version}, but ${RUNTIME_NAME} ${RUNTIME_VERSION} reads ` +
        `${format} versions ${supported.join(", ")}; install a ${RUNTIME_NAME} that reads version ${version}`,
      { required: version, actual: supported.join(", ") },
    );
  }
}

/** parseManifest already refuses "..": this also refuses symlinks that lead out of the artifact. */
async function checkInside(dir: string, file: string, listed: string): Promise<void> {
  const real = await realpath(file).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`${join(dir, MANIFEST_FILE)} lists ${listed}, but it cannot be read: ${e.code === "ENOENT" ? "it does not exist" : e.message}`, {
      path: file,
      cause: e,
      code: "E_NOT_FOUND",
    });
  });
  const root = await realpath(dir);
  if (!real.startsWith(root + sep)) {
    throw new ManifestError(`${join(dir, MANIFEST_FILE)}: ${listed} resolves to ${real}, outside the artifact directory ${root}`);
  }
}

async function checkGGUFHeader(file: string): Promise<void> {
  const fh = await open(file, "r").catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot read ${file}: ${e.message}`, { path: file, cause: e });
  });
  try {
    const buf = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEADER_BYTES, 0);
    const magic = buf.subarray(0, 4).toString("latin1");
    if (bytesRead < HEADER_BYTES || magic !== GGUF_MAGIC) {
      const seen = bytesRead === 0 ? "it is empty" : `it starts with ${JSON.stringify(buf.subarray(0, Math.min(4, bytesRead)).toString("latin1"))}`;
      throw new InputError(`${file} is not a GGUF file (${seen}, expected "${GGUF_MAGIC}"); pass a .gguf file or an artifact directory`, {
        path: file,
        code: "E_NOT_GGUF",
      });
    }
    const version = String(buf.readUInt32LE(4));
    const supported = SUPPORTED_FORMAT_VERSIONS.gguf ?? [];
    if (!supported.includes(version)) {
      throw new VersionMismatchError(`${file} is GGUF version ${version}; ${RUNTIME_NAME} reads GGUF versions ${supported.join(", ")}`, {
        required: version,
        actual: supported.join(", "),
      });
    }
  } finally {
    await fh.close();
  }
}

/** A bare .gguf inside an artifact's gguf/ directory still has its metadata.json checksum. */
async function siblingMetadata(file: string): Promise<{ method?: string; sha256?: { expected: string; from: string } } | undefined> {
  const path = join(dirname(file), METADATA_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch {
    return undefined; // absent or unreadable: the file stands alone
  }
  try {
    const entry = parseGGUFMetadata(raw, path).files.find((f) => f.file === basename(file));
    if (entry === undefined) return undefined;
    return { method: entry.quantization_method, sha256: { expected: entry.sha256, from: path } };
  } catch {
    return undefined;
  }
}

/**
 * --verify for an MLX directory: every file its metadata.json lists (name and sha256, as the
 * pipeline writes them) hashes to what is recorded, and the listing's digest matches the
 * manifest's sha256 for the directory when the artifact records one.
 */
export async function verifyMLXFiles(chosen: ChosenFile): Promise<void> {
  const listPath = join(chosen.file, METADATA_FILE);
  let files: { name: string; sha256: string }[];
  try {
    const raw = JSON.parse(await readFile(listPath, "utf8")) as { files?: unknown };
    if (!Array.isArray(raw.files)) throw new Error("it has no files list");
    files = raw.files.map((f: { name?: unknown; sha256?: unknown }) => {
      if (typeof f.name !== "string" || typeof f.sha256 !== "string" || f.name.includes("/") || f.name.includes("\\")) throw new Error(`bad entry ${JSON.stringify(f)}`);
      return { name: f.name, sha256: f.sha256 };
    });
  } catch (e) {
    throw new InputError(
      `cannot verify ${chosen.file}: ${listPath} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `is unusable (${(e as Error).message})`}; ` +
        `--verify needs the checksums the pipeline writes there`,
      { path: chosen.file, code: "E_NO_CHECKSUM" },
    );
  }
  for (const f of files) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(join(chosen.file, f.name))) hash.update(chunk as Buffer);
    const actual = hash.digest("hex");
    if (actual !== f.sha256) {
      throw new InputError(
        `sha256 mismatch for ${join(chosen.file, f.name)}: the file hashes to ${actual}, but ${listPath} records ${f.sha256}; ` +
          `the file is damaged or was replaced, so convert or download it again`,
        { path: join(chosen.file, f.name), code: "E_CHECKSUM" },
      );
    }
  }
  if (chosen.sha256 !== undefined) {
    const listing = mlxFilesDigest(files);
    if (listing !== chosen.sha256.expected) {
      throw new InputError(
        `the file list in ${listPath} hashes to ${listing}, but ${chosen.sha256.from} records ${chosen.sha256.expected} for the MLX directory; ` +
          `metadata.json was changed, so convert again`,
        { path: chosen.file, code: "E_CHECKSUM" },
      );
    }
  }
}
