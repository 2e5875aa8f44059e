import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
/** Test fixtures live beside the repo (../shared), in CI too. */
export const SHARED = resolve(REPO_ROOT, "..", "shared");
export const FIXTURES = join(SHARED, "fixtures", "models");
export const EVAL_TEXT = join(SHARED, "fixtures", "text", "eval.txt");
export const REFERENCE = join(REPO_ROOT, "packages", "quant", "test", "reference");
export const MODELS = ["qwen3-tiny", "llama-tiny", "mixtral-tiny"] as const;

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "lp-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
