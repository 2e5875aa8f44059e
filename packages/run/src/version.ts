import { readFileSync } from "node:fs";

/** This package's name and version, from its package.json (dist/ and src/ both sit one level below it). */
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { name: string; version: string };

export const RUNTIME_NAME: string = pkg.name;
export const RUNTIME_VERSION: string = pkg.version;

/**
 * Layout versions this runtime reads (manifest `format_versions`). GGUF: llama.cpp's gguf.cpp
 * accepts versions 2 and 3; version 1 was dropped upstream. MLX: the pipeline's mlx/ layout
 * version 1 (mlx_lm.convert's directory), run here through a GGUF transcode (mlx/transcode.ts).
 */
export const SUPPORTED_FORMAT_VERSIONS: Readonly<Record<string, readonly string[]>> = { gguf: ["2", "3"], mlx: ["1"] };
