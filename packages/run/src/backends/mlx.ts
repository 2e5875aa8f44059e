import type { Backend } from "./types.js";
import { BackendUnavailableError } from "../errors.js";

/**
 * MLX (Apple silicon) sits behind the same Backend interface but has no engine in this
 * runtime yet (a later issue). It reports why, so `--backend mlx` and MLX directories fail
 * with one clear message instead of a missing-file or format error.
 */
export function mlxUnavailableReason(): string {
  const here = `${process.platform} ${process.arch}`;
  if (process.platform !== "darwin" || process.arch !== "arm64") {
    return `MLX runs only on Apple silicon macOS, and this machine is ${here}`;
  }
  return "MLX models are not supported by llama-pajamas-run yet";
}

export const mlxBackend: Backend = {
  name: "mlx",
  format: "mlx",
  async unavailableReason() {
    return mlxUnavailableReason();
  },
  async load() {
    throw new BackendUnavailableError(`the mlx backend is not available: ${mlxUnavailableReason()}`, {
      requested: "mlx",
      available: [],
    });
  },
};
