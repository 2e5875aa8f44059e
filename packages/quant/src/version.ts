import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
}

/** This package's version, from its package.json (dist/ and src/ both sit one level below it). */
export const PIPELINE_VERSION = String(readJson(new URL("../package.json", import.meta.url).pathname).version);

/** Runtimes that can load what this pipeline writes. */
export const RUNTIME_REQUIREMENT = ">=0.1.0 <1.0.0";

/** The llama.cpp build whose kernels quantize: the one node-llama-cpp ships. */
export const LLAMA_CPP_VERSION: string = (() => {
  try {
    // node-llama-cpp's exports hide its package.json; find it above the resolved entry point.
    let dir = dirname(require.resolve("node-llama-cpp"));
    while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
    const pkg = readJson(join(dir, "package.json"));
    const info = readJson(join(dir, "llama", "llama.cpp.info.json"));
    return `node-llama-cpp ${String(pkg.version)} (llama.cpp ${String(info.tag)})`;
  } catch {
    return "unknown";
  }
})();
