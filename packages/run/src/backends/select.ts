import { InputError } from "@llama-pajamas/artifact";
import type { BackendName, BackendRequest } from "../config.js";
import { BackendUnavailableError } from "../errors.js";
import { llamaCppBackend } from "./llama-cpp.js";
import { directCpuBackend, directCudaBackend } from "./llama-direct.js";
import { mlxBackend } from "./mlx.js";
import type { Backend } from "./types.js";

/** Every backend, best first: the order `auto` tries them in (the cuda, metal, vulkan, cpu). */
const BACKENDS: readonly Backend[] = [
  mlxBackend,
  directCudaBackend,
  llamaCppBackend("metal"),
  llamaCppBackend("vulkan"),
  directCpuBackend,
];

export function getBackend(name: BackendName): Backend {
  const b = BACKENDS.find((x) => x.name === name);
  if (b === undefined) throw new InputError(`no backend named ${JSON.stringify(name)}`);
  return b;
}

/** Backends that can run on this machine, best first. */
export async function availableBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const b of BACKENDS) if ((await b.unavailableReason()) === undefined) out.push(b.name);
  return out;
}

/**
 * Picks the backend for a model offered in `formats` (what the file or artifact has).
 * `auto` takes the best available one that reads one of them; an explicit name must be
 * available, else the error lists what is.
 */
export async function selectBackend(request: BackendRequest, formats: readonly ("gguf" | "mlx")[]): Promise<Backend> {
  const available = await availableBackends();
  if (request === "auto") {
    for (const b of BACKENDS) if (formats.includes(b.format) && available.includes(b.name)) return b;
    const why = formats.includes("mlx") && !formats.includes("gguf") ? `: ${await mlxBackend.unavailableReason()}` : "";
    throw new BackendUnavailableError(
      `no available backend reads this model's format (${formats.join(", ")})${why}; available backends: ${list(available)}`,
      { requested: "auto", available },
    );
  }
  const backend = getBackend(request);
  const reason = await backend.unavailableReason();
  if (reason !== undefined) {
    throw new BackendUnavailableError(`backend ${request} is not available: ${reason}; available backends: ${list(available)}`, {
      requested: request,
      available,
    });
  }
  if (!formats.includes(backend.format)) {
    throw new BackendUnavailableError(
      `backend ${request} reads ${backend.format} models, but this model is ${formats.join(", ")}; ` +
        `use --backend auto or one of: ${list(available.filter((n) => formats.includes(getBackend(n).format)))}`,
      { requested: request, available },
    );
  }
  return backend;
}

function list(names: readonly string[]): string {
  return names.length > 0 ? names.join(", ") : "none";
}
