// Reading config.json the way llama.cpp's converter sees it (conversion/base.py).
//
// The converter does not read config.json raw: ModelBase.load_hparams takes
// AutoConfig.from_pretrained(dir).to_dict(), so fields a checkpoint leaves out arrive with the
// transformers config class's defaults (LlamaConfig fills head_dim = hidden/heads and
// num_key_value_heads = heads, Gemma3TextConfig fills head_dim 256 ...). Each architecture lists
// the defaults that change what the converter writes, and `effectiveConfig` applies them.
import { InputError } from "@llama-pajamas/artifact";
import type { ArchitectureSummary, HFConfig } from "./types.js";

/** Marks a default computed from the fields already present (LlamaConfig's head_dim). */
export const computed = (fn: (config: HFConfig) => unknown): { computed: (config: HFConfig) => unknown } => ({
  computed: fn,
});
/** Field -> class default: a value, or computed(...). */
export type DefaultsTable = Record<string, unknown>;

/**
 * config.json as the converter's hparams: text_config lifted to the top level (TextModel.__init__:
 * `{**hparams, **hparams["text_config"]}`), then class defaults for absent or null fields.
 * Never mutates `config`.
 */
export function effectiveConfig(config: HFConfig, defaults: DefaultsTable = {}): HFConfig {
  const text = config["text_config"];
  const out: HFConfig = isRecord(text) ? { ...config, ...text } : { ...config };
  for (const [key, def] of Object.entries(defaults)) {
    if (out[key] !== undefined && out[key] !== null) continue;
    out[key] = isRecord(def) && typeof def["computed"] === "function" ? (def["computed"] as (c: HFConfig) => unknown)(out) : def;
  }
  return out;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * ModelBase.find_hparam: the value of the first key present (a present null counts as found, as
 * in Python, and comes back as undefined).
 */
export function findHparam(config: HFConfig, keys: readonly string[]): unknown {
  for (const k of keys) {
    if (Object.prototype.hasOwnProperty.call(config, k)) return config[k] ?? undefined;
  }
  return undefined;
}

// The spellings transformers writes; messages name these first, the converter's aliases after.
const CANONICAL = new Set(["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size"]);

function describe(keys: readonly string[]): string {
  const main = keys.find((k) => CANONICAL.has(k)) ?? keys[0];
  const rest = keys.filter((k) => k !== main);
  return rest.length > 0 ? `"${main}" (or ${rest.map((k) => `"${k}"`).join(", ")})` : `"${main}"`;
}

function missing(keys: readonly string[], arch: string): InputError {
  return new InputError(
    `config.json has no ${describe(keys)}, which the ${arch} architecture needs; ` +
      `the checkpoint's config.json looks incomplete: compare it with the published model's config.json`,
    { code: "E_CONFIG_FIELD" },
  );
}

function badValue(keys: readonly string[], value: unknown, expected: string): InputError {
  return new InputError(
    `config.json field ${describe(keys)} is ${JSON.stringify(value)}; expected ${expected}`,
    { code: "E_CONFIG_FIELD" },
  );
}

function asInt(keys: readonly string[], value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw badValue(keys, value, "a non-negative integer");
  }
  return value;
}

function asNumber(keys: readonly string[], value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw badValue(keys, value, "a number");
  return value;
}

/** A required non-negative integer; `keys` are tried in order, like find_hparam. */
export function requireInt(config: HFConfig, keys: string | readonly string[], arch: string): number {
  const ks = typeof keys === "string" ? [keys] : keys;
  const v = findHparam(config, ks);
  if (v === undefined) throw missing(ks, arch);
  return asInt(ks, v);
}

export function optionalInt(config: HFConfig, keys: string | readonly string[]): number | undefined {
  const ks = typeof keys === "string" ? [keys] : keys;
  const v = findHparam(config, ks);
  return v === undefined ? undefined : asInt(ks, v);
}

export function requireNumber(config: HFConfig, keys: string | readonly string[], arch: string): number {
  const ks = typeof keys === "string" ? [keys] : keys;
  const v = findHparam(config, ks);
  if (v === undefined) throw missing(ks, arch);
  return asNumber(ks, v);
}

export function optionalNumber(config: HFConfig, keys: string | readonly string[]): number | undefined {
  const ks = typeof keys === "string" ? [keys] : keys;
  const v = findHparam(config, ks);
  return v === undefined ? undefined : asNumber(ks, v);
}

/** Number of transformer blocks (TextModel.__init__ block_count). */
export function blockCount(config: HFConfig, arch: string): number {
  return requireInt(config, ["n_layers", "num_hidden_layers", "n_layer", "num_layers"], arch);
}

/**
 * TextModel.__init__'s rope_parameters: rope_parameters (transformers 5) or rope_scaling
 * (classic), with rope_theta, the sliding-window theta, rope_type (from the old "type"),
 * partial_rotary_factor and original_max_position_embeddings mirrored in. A fresh object.
 */
export function ropeParameters(config: HFConfig): Record<string, unknown> {
  const src = "rope_parameters" in config ? config["rope_parameters"] : config["rope_scaling"];
  const p: Record<string, unknown> = isRecord(src) ? { ...src } : {};
  const theta = findHparam(config, ["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"]);
  const localTheta = findHparam(config, ["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"]);
  const partial = findHparam(config, ["partial_rotary_factor", "rope_pct", "rope_percent"]);
  const origCtx = findHparam(config, ["original_max_position_embeddings"]);
  if (!("full_attention" in p) && !("sliding_attention" in p)) {
    if (localTheta !== undefined) p["sliding_attention"] = { rope_theta: localTheta };
    if (!("rope_theta" in p) && theta !== undefined) p["rope_theta"] = theta;
    if (!("rope_type" in p) && p["type"] !== undefined && p["type"] !== null) p["rope_type"] = p["type"];
    if (!("partial_rotary_factor" in p) && partial !== undefined) p["partial_rotary_factor"] = partial;
    if (!("original_max_position_embeddings" in p) && origCtx !== undefined) {
      p["original_max_position_embeddings"] = origCtx;
    }
  }
  return p;
}

/** The parameters that apply to full-attention layers: rope_parameters.full_attention or all of it. */
export function fullAttentionRope(params: Record<string, unknown>): Record<string, unknown> {
  const full = params["full_attention"];
  return isRecord(full) ? full : params;
}

/** head_dim as LlamaConfig computes it when config.json leaves it out. */
export const headDimFromHidden = computed((c) => {
  const hidden = c["hidden_size"];
  const heads = c["num_attention_heads"];
  return typeof hidden === "number" && typeof heads === "number" && heads > 0 ? Math.floor(hidden / heads) : undefined;
});

/** num_key_value_heads = num_attention_heads, as most config classes fill it. */
export const kvHeadsFromHeads = computed((c) => c["num_attention_heads"]);

/** The shape facts the pipeline reports; MoE when the config names an expert count. */
export function decoderSummary(cfg: HFConfig, arch: string): ArchitectureSummary {
  const experts = optionalInt(cfg, ["num_local_experts", "num_experts", "n_routed_experts"]);
  const s: ArchitectureSummary = {
    family: experts !== undefined ? "moe" : "dense_decoder",
    blockCount: blockCount(cfg, arch),
    headCount: requireInt(cfg, ["num_attention_heads", "n_head", "n_heads"], arch),
    headCountKv: optionalInt(cfg, ["num_key_value_heads", "n_kv_heads"]) ?? requireInt(cfg, ["num_attention_heads", "n_head", "n_heads"], arch),
  };
  if (experts !== undefined) {
    s.expertCount = experts;
    s.expertUsedCount = requireInt(cfg, ["num_experts_per_tok", "num_experts_per_token", "top_k_experts"], arch);
  }
  return s;
}

/**
 * The shape fields transformers would default but a usable checkpoint always states: a guess
 * would give a GGUF whose metadata contradicts its tensors, so their absence is an error.
 */
export function requireShape(config: HFConfig, arch: string, dense: boolean): HFConfig {
  blockCount(config, arch);
  requireInt(config, ["hidden_size", "n_embd", "dim"], arch);
  requireInt(config, ["num_attention_heads", "n_head", "n_heads"], arch);
  if (dense) requireInt(config, ["intermediate_size", "n_inner", "hidden_dim"], arch);
  return config;
}
