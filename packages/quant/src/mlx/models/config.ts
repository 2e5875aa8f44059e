// Reading config.json fields the way mlx-lm's ModelArgs.from_dict sees them.
import type { HFConfig } from "@llama-pajamas/gguf/architectures/types.js";

/** A bool field with a dataclass default: absent -> default; present -> Python truthiness (null is False). */
export function pyBool(config: HFConfig, key: string, fallback: boolean): boolean {
  if (!(key in config)) return fallback;
  const v = config[key];
  return v !== null && v !== false && v !== 0 && v !== "" && !(Array.isArray(v) && v.length === 0);
}
