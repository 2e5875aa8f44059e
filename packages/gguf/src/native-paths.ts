// Finds the llama.cpp shared libraries node-llama-cpp ships for this platform. Only looks;
// native.ts is the one module that loads them.

import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { InputError } from "@llama-pajamas/artifact";

/** Overrides where the libraries are looked up (a folder holding libggml-base and libllama). */
export const NATIVE_DIR_ENV = "LLAMA_PAJAMAS_NATIVE_DIR";

/**
 * node-llama-cpp's prebuilt packages per `${process.platform}-${process.arch}`, CPU builds
 * first: quantization runs on the CPU, so the GPU variants only serve when they are all
 * that is installed.
 */
const PREBUILT_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  "linux-x64": ["linux-x64", "linux-x64-vulkan", "linux-x64-cuda"],
  "linux-arm64": ["linux-arm64"],
  "linux-arm": ["linux-armv7l"],
  "linux-riscv64": ["linux-riscv64"],
  "darwin-arm64": ["mac-arm64-metal"],
  "darwin-x64": ["mac-x64"],
  "win32-x64": ["win-x64", "win-x64-vulkan", "win-x64-cuda"],
  "win32-arm64": ["win-arm64"],
};

// libggml-base.so / libggml-base.dylib / ggml-base.dll
const GGML_BASE_FILE = /^(?:lib)?ggml-base\.(?:so|dylib|dll)$/;
// libggml.v0.4.0.so, libggml.cuda.v0.4.0.so, ggml.dll ... (not ggml-base, ggml-cpu-*)
const GGML_FILE = /^(?:lib)?ggml(?:\.[\w.]+)?\.(?:so|dylib|dll)$/;
// libllama.v0.4.0.so, libllama.vulkan.v0.4.0.so, llama.dll ... (not llama-common, llama-addon)
const LLAMA_FILE = /^(?:lib)?llama(?:\.[\w.]+)?\.(?:so|dylib|dll)$/;

export interface NativeLibraryPaths {
  dir: string;
  ggmlBase: string;
  ggml: string | undefined;
  llama: string | undefined;
}

/** The ggml-base, ggml and llama libraries in `dir`, if it holds ggml-base. */
export function libraryPathsIn(dir: string): NativeLibraryPaths | undefined {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return undefined;
  }
  const pick = (re: RegExp) => files.filter((f) => re.test(f)).sort()[0];
  const ggmlBase = pick(GGML_BASE_FILE);
  if (ggmlBase === undefined) return undefined;
  const ggml = pick(GGML_FILE);
  const llama = pick(LLAMA_FILE);
  return {
    dir,
    ggmlBase: join(dir, ggmlBase),
    ggml: ggml === undefined ? undefined : join(dir, ggml),
    llama: llama === undefined ? undefined : join(dir, llama),
  };
}

/**
 * Finds node-llama-cpp's prebuilt libraries for this platform: resolves node-llama-cpp,
 * then its `@node-llama-cpp/<platform>` package from there, then `bins/<folder>/`.
 */
export function locateNativeLibraries(): NativeLibraryPaths {
  const override = process.env[NATIVE_DIR_ENV];
  if (override) {
    const found = libraryPathsIn(override);
    if (!found) throw new InputError(`${NATIVE_DIR_ENV}=${override} holds no ggml-base library`, { path: override });
    return found;
  }
  const key = `${process.platform}-${process.arch}`;
  const candidates = PREBUILT_PACKAGES[key] ?? [];
  let llamaCppEntry: string;
  try {
    llamaCppEntry = createRequire(import.meta.url).resolve("node-llama-cpp");
  } catch (e) {
    throw new InputError("node-llama-cpp is not installed; it provides the llama.cpp libraries used to quantize", {
      cause: e,
    });
  }
  const lookup = createRequire(llamaCppEntry).resolve.paths("@node-llama-cpp/x") ?? [];
  const tried: string[] = [];
  for (const name of candidates) {
    for (const nodeModules of lookup) {
      const pkgDir = join(nodeModules, "@node-llama-cpp", name);
      if (!existsSync(join(pkgDir, "package.json"))) continue;
      tried.push(pkgDir);
      const binsDir = join(pkgDir, "bins");
      let folders: string[] = [];
      try {
        folders = readdirSync(binsDir).sort();
      } catch {
        continue;
      }
      for (const folder of folders) {
        const found = libraryPathsIn(join(binsDir, folder));
        if (found) return found;
      }
    }
  }
  throw new InputError(
    `no prebuilt llama.cpp library for ${key}: looked for @node-llama-cpp/{${candidates.join(",")}} ` +
      `near ${dirname(llamaCppEntry)}${tried.length ? ` (found without libraries: ${tried.join(", ")})` : ""}; ` +
      `reinstall node-llama-cpp, or set ${NATIVE_DIR_ENV} to a folder holding libggml-base and libllama`,
  );
}

/**
 * node-llama-cpp's libraries for a GPU type ("cuda", "vulkan"), where its binding for that type
 * comes from: a local build (`npx node-llama-cpp source build --gpu cuda`, in
 * node-llama-cpp/llama/localBuilds/<platform>-<gpu>.../Release) first, as node-llama-cpp prefers
 * it, else the prebuilt `@node-llama-cpp/<platform>-<gpu>` package. Undefined when neither is
 * installed. `LLAMA_PAJAMAS_NATIVE_DIR` overrides both.
 */
export function locateGpuLibraries(gpu: string): NativeLibraryPaths | undefined {
  const override = process.env[NATIVE_DIR_ENV];
  if (override) return libraryPathsIn(override);
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  } catch {
    return undefined;
  }
  const key = `${process.platform}-${process.arch}`;
  let root = dirname(entry);
  while (!existsSync(join(root, "llama")) && dirname(root) !== root) root = dirname(root);
  const localBuilds = join(root, "llama", "localBuilds");
  const list = (dir: string) => {
    try {
      return readdirSync(dir).sort();
    } catch {
      return [];
    }
  };
  for (const folder of list(localBuilds).filter((f) => f.startsWith(`${key}-${gpu}`))) {
    const found = libraryPathsIn(join(localBuilds, folder, "Release"));
    if (found?.llama) return found;
  }
  for (const nodeModules of createRequire(entry).resolve.paths("@node-llama-cpp/x") ?? []) {
    const bins = join(nodeModules, "@node-llama-cpp", `${key}-${gpu}`, "bins");
    for (const folder of list(bins)) {
      const found = libraryPathsIn(join(bins, folder));
      if (found?.llama) return found;
    }
  }
  return undefined;
}
