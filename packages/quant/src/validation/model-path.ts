// What `validate --original/--quantized PATH` may name, resolved to one GGUF file the engine
// loads: a .gguf file; an artifact directory (manifest.json: its F16/BF16/F32 GGUF for the
// original, its first quantized GGUF, or the one `method` names, for the quantized side); or,
// for the original only, a Hugging Face checkpoint directory or hub id, converted to an F16
// GGUF in a temporary directory first. An MLX directory (or an artifact's mlx/ entry, chosen
// with method "mlx" or its MLX method name, or when the artifact has no quantized GGUF) goes
// through the runtime's MLX-to-GGUF transcode, so GGUF and MLX figures come from the same
// engine on the same tokens.

import { readFile, rm, stat, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { InputError, MANIFEST_FILE, type Manifest, parseManifest, UsageError } from "@llama-pajamas/artifact";
import { ensureTranscoded } from "llama-pajamas-run";
import { parseHubId } from "../source/hub-id.js";
import type { HubOptions } from "../source/index.js";

export type ModelRole = "original" | "quantized";

export interface ResolvedGGUF {
  /** The GGUF file to load. */
  path: string;
  /** The artifact directory, when PATH was one (its manifest receives the validation block). */
  artifactDir?: string;
  /** The method of that GGUF as the manifest names it (Q4_K_M, F16 ...). */
  method?: string;
  /** Set when the GGUF was converted from a checkpoint for this run (and is deleted after it). */
  convertedFrom?: string;
  /** Set when PATH was an MLX directory: the GGUF is its (cached) transcode. */
  transcodedFrom?: string;
  /** Removes what was made on the fly (a converted F16); no-op otherwise. */
  cleanup: () => Promise<void>;
}

const FLOAT_METHODS = new Set(["F16", "BF16", "F32"]);
const noop = async () => undefined;

async function kind(path: string): Promise<"file" | "dir" | "missing"> {
  try {
    const st = await stat(path);
    return st.isDirectory() ? "dir" : "file";
  } catch {
    return "missing";
  }
}

async function readManifest(dir: string): Promise<Manifest> {
  const p = join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(p, "utf8"));
  } catch (e) {
    throw new InputError(`cannot read ${p}: ${(e as Error).message}`, { path: p, cause: e });
  }
  return parseManifest(raw, p);
}

async function isMLXDir(dir: string): Promise<boolean> {
  try {
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    return typeof config.quantization === "object" && config.quantization !== null;
  } catch {
    return false;
  }
}

async function fromMLX(dir: string, extra: Partial<ResolvedGGUF> = {}): Promise<ResolvedGGUF> {
  const t = await ensureTranscoded(dir);
  return { path: t.path, transcodedFrom: dir, cleanup: noop, ...extra };
}

export interface ResolveOptions {
  role: ModelRole;
  /** Which GGUF of an artifact directory (quantized side), e.g. "Q4_K_M". */
  method?: string;
  /** Converts an HF checkpoint (original side) to an F16 GGUF in `dir`; the pipeline's convert(). */
  convertToF16?: (model: string, dir: string) => Promise<string>;
  hub?: HubOptions;
}

export async function resolveGGUF(spec: string, opts: ResolveOptions): Promise<ResolvedGGUF> {
  const path = resolve(spec);
  const k = await kind(path);
  if (k === "file") {
    if (!spec.toLowerCase().endsWith(".gguf")) {
      throw new InputError(`${path} is not a .gguf file; --${opts.role} takes a GGUF file or an artifact directory`, { path });
    }
    return { path, cleanup: noop };
  }
  if (k === "dir") {
    if ((await kind(join(path, MANIFEST_FILE))) === "file") return fromArtifact(path, opts);
    if (await isMLXDir(path)) return fromMLX(path, { method: "mlx" });
    if ((await kind(join(path, "config.json"))) === "file") {
      if (opts.role === "quantized") {
        throw new UsageError(`--quantized ${path} is a Hugging Face checkpoint; pass the quantized GGUF or artifact directory`);
      }
      return convertOriginal(spec, opts);
    }
    throw new InputError(
      `${path} is neither an artifact directory (manifest.json), a Hugging Face checkpoint (config.json) nor a GGUF file`,
      { path },
    );
  }
  if (opts.role === "original" && parseHubId(spec) !== undefined) return convertOriginal(spec, opts);
  throw new InputError(`${path} does not exist`, { path, code: "E_NOT_FOUND" });
}

async function convertOriginal(model: string, opts: ResolveOptions): Promise<ResolvedGGUF> {
  if (!opts.convertToF16) throw new UsageError(`--original ${model} is a checkpoint; pass its F16 GGUF`);
  const dir = await mkdtemp(join(tmpdir(), "llama-pajamas-validate-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    return { path: await opts.convertToF16(model, join(dir, "f16")), method: "F16", convertedFrom: model, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function fromArtifact(dir: string, opts: ResolveOptions): Promise<ResolvedGGUF> {
  const manifest = await readManifest(dir);
  const ggufs = manifest.formats.filter((f) => f.type === "gguf");
  let pick;
  if (opts.role === "original") {
    pick = ggufs.find((f) => FLOAT_METHODS.has(f.method.toUpperCase()));
    if (!pick) {
      throw new InputError(
        `artifact ${dir} has no F16/BF16/F32 GGUF to serve as the original (it has ${ggufs.map((f) => f.method).join(", ") || "none"}); ` +
          `pass --original the Hugging Face checkpoint or an F16 GGUF`,
        { path: dir },
      );
    }
  } else if (opts.method && mlxEntry(manifest, opts.method)) {
    const entry = mlxEntry(manifest, opts.method)!;
    return fromMLX(join(dir, entry.path), { artifactDir: dir, method: entry.method });
  } else if (opts.method) {
    pick = ggufs.find((f) => f.method.toUpperCase() === opts.method!.toUpperCase());
    if (!pick) {
      throw new UsageError(`artifact ${dir} has no ${opts.method} GGUF; it has ${ggufs.map((f) => f.method).join(", ") || "none"}`);
    }
  } else {
    pick = ggufs.find((f) => !FLOAT_METHODS.has(f.method.toUpperCase())) ?? ggufs[0];
    if (!pick) {
      const mlx = mlxEntry(manifest, "mlx");
      if (mlx) return fromMLX(join(dir, mlx.path), { artifactDir: dir, method: mlx.method });
      throw new InputError(`artifact ${dir} lists no GGUF file`, { path: dir });
    }
  }
  return { path: join(dir, pick.path), artifactDir: dir, method: pick.method, cleanup: noop };
}

/** The artifact's MLX entry when `method` is "mlx" or that entry's own method name ("4bit" ...). */
function mlxEntry(manifest: Manifest, method: string): Manifest["formats"][number] | undefined {
  const m = method.toLowerCase();
  return manifest.formats.find((f) => f.type === "mlx" && (m === "mlx" || f.method.toLowerCase() === m));
}
