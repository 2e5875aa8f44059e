// Binds the parameters mlx-lm's model expects to the checkpoint's tensors, checking shapes as
// mlx-lm's strict load_weights does, and composes the llama-like blocks the model files share.
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import type { HFConfig, SourceTensorInfo } from "@llama-pajamas/gguf/architectures/types.js";
import type { MLXModule, MLXModuleKind, MLXParam, SourceRun } from "./types.js";

const elements = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const show = (shape: readonly number[]): string => `[${shape.join(", ")}]`;

export class Binder {
  private readonly used = new Set<string>();
  readonly modules: MLXModule[] = [];

  constructor(
    readonly arch: string,
    private readonly sources: ReadonlyMap<string, SourceTensorInfo>,
    /** HF tensors mlx-lm's sanitize drops (rotary inv_freq, a tied lm_head). */
    private readonly dropped: (name: string) => boolean = () => false,
  ) {}

  has(name: string): boolean {
    return this.sources.has(name);
  }

  /** The whole HF tensor `name`, which must have `shape`. */
  tensor(name: string, shape: number[]): SourceRun[] {
    const t = this.sources.get(name);
    if (!t) throw new ConversionError(`${this.arch}: the checkpoint has no tensor "${name}", which mlx-lm's ${this.arch} model needs`);
    if (show(t.shape) !== show(shape)) {
      throw new InputError(
        `${this.arch}: tensor "${name}" has shape ${show(t.shape)} but config.json implies ${show(shape)}; ` +
          `config.json and the weights do not match (mlx-lm's load would refuse them too)`,
        { code: "E_MISMATCH" },
      );
    }
    this.used.add(name);
    return [{ tensor: name, startElement: 0, elementCount: elements(shape) }];
  }

  /** mx.stack of per-expert tensors, each of shape `shape.slice(1)` (mlx-lm's sanitize). */
  stack(names: string[], shape: number[]): SourceRun[] {
    return names.flatMap((n) => this.tensor(n, shape.slice(1)));
  }

  /** Part of a tensor used whole elsewhere too (a fused tensor split in two); marks it used. */
  runs(name: string, shape: number[], runs: (expected: number) => SourceRun[]): SourceRun[] {
    this.tensor(name, shape);
    return runs(elements(shape));
  }

  module(path: string, kind: MLXModuleKind, params: MLXParam[]): void {
    this.modules.push({ path, kind, params });
  }

  /** A Linear/Embedding/RMSNorm whose parameters are the HF tensors of the same name. */
  plain(path: string, kind: MLXModuleKind, weightShape: number[], biasShape?: number[]): void {
    const params: MLXParam[] = [{ name: "weight", shape: weightShape, runs: this.tensor(`${path}.weight`, weightShape) }];
    if (biasShape) params.push({ name: "bias", shape: biasShape, runs: this.tensor(`${path}.bias`, biasShape) });
    this.module(path, kind, params);
  }

  /** Every tensor is used or dropped, as mlx-lm's strict load requires. */
  finish(): MLXModule[] {
    const extra = [...this.sources.keys()].filter((n) => !this.used.has(n) && !this.dropped(n));
    if (extra.length > 0) {
      throw new InputError(
        `${this.arch}: the checkpoint has ${extra.length} tensor(s) mlx-lm's ${this.arch} model has no place for: ` +
          `${extra.slice(0, 8).join(", ")}${extra.length > 8 ? " ..." : ""}; config.json and the weights do not match`,
        { code: "E_MISMATCH" },
      );
    }
    return this.modules;
  }
}

/** A positive integer config field, or a clear error (mlx-lm's ModelArgs would fail on it). */
export function intField(config: HFConfig, key: string, arch: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new InputError(
      `config.json ${v === undefined ? "has no" : `has an invalid (${JSON.stringify(v)})`} "${key}", which mlx-lm's ${arch} model needs`,
      { code: "E_CONFIG" },
    );
  }
  return v;
}

export function boolField(config: HFConfig, key: string, arch: string, fallback?: boolean): boolean {
  const v = config[key] ?? fallback;
  if (typeof v !== "boolean") {
    throw new InputError(`config.json ${v === undefined ? "has no" : `has an invalid (${JSON.stringify(v)})`} "${key}", which mlx-lm's ${arch} model needs`, {
      code: "E_CONFIG",
    });
  }
  return v;
}

export interface AttentionDims {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** q/k/v biases (qwen2: true; llama: attention_bias). */
  qkvBias: boolean;
  oBias: boolean;
  /** qwen3: per-head RMSNorm on q and k, after o_proj in attribute order. */
  qkNorm?: boolean;
}

/** self_attn: q_proj, k_proj, v_proj, o_proj [, q_norm, k_norm]. */
export function attention(b: Binder, prefix: string, d: AttentionDims): void {
  const q = d.heads * d.headDim;
  const kv = d.kvHeads * d.headDim;
  b.plain(`${prefix}.q_proj`, "linear", [q, d.hidden], d.qkvBias ? [q] : undefined);
  b.plain(`${prefix}.k_proj`, "linear", [kv, d.hidden], d.qkvBias ? [kv] : undefined);
  b.plain(`${prefix}.v_proj`, "linear", [kv, d.hidden], d.qkvBias ? [kv] : undefined);
  b.plain(`${prefix}.o_proj`, "linear", [d.hidden, q], d.oBias ? [d.hidden] : undefined);
  if (d.qkNorm) {
    b.plain(`${prefix}.q_norm`, "rms_norm", [d.headDim]);
    b.plain(`${prefix}.k_norm`, "rms_norm", [d.headDim]);
  }
}

/** MLP: gate_proj, down_proj, up_proj (the attribute order of mlx-lm's MLP classes). */
export function mlp(b: Binder, prefix: string, d: { hidden: number; inter: number; bias?: boolean }): void {
  const { hidden, inter } = d;
  b.plain(`${prefix}.gate_proj`, "linear", [inter, hidden], d.bias ? [inter] : undefined);
  b.plain(`${prefix}.down_proj`, "linear", [hidden, inter], d.bias ? [hidden] : undefined);
  b.plain(`${prefix}.up_proj`, "linear", [inter, hidden], d.bias ? [inter] : undefined);
}

/** The two RMSNorms of a decoder block. */
export function blockNorms(b: Binder, prefix: string, hidden: number): void {
  b.plain(`${prefix}.input_layernorm`, "rms_norm", [hidden]);
  b.plain(`${prefix}.post_attention_layernorm`, "rms_norm", [hidden]);
}

/** SwitchGLU(gate_proj, up_proj, down_proj) of SwitchLinear [experts, out, in]; `source` binds each. */
export function switchGLU(
  b: Binder,
  prefix: string,
  d: { experts: number; hidden: number; inter: number; source: (part: "gate_proj" | "up_proj" | "down_proj", shape: number[]) => SourceRun[] },
): void {
  for (const part of ["gate_proj", "up_proj", "down_proj"] as const) {
    const shape = part === "down_proj" ? [d.experts, d.hidden, d.inter] : [d.experts, d.inter, d.hidden];
    b.module(`${prefix}.${part}`, "switch_linear", [{ name: "weight", shape, runs: d.source(part, shape) }]);
  }
}

/** HF tensors no mlx-lm model loads: precomputed rotary frequencies. */
export const isRotaryInvFreq = (name: string): boolean => name.includes("rotary_emb.inv_freq");

/** Model: model.embed_tokens, model.layers.*, model.norm, then lm_head unless tied. */
export function decoder(b: Binder, opts: { vocab: number; hidden: number; layers: number; tied: boolean; block: (prefix: string, index: number) => void }): MLXModule[] {
  b.plain("model.embed_tokens", "embedding", [opts.vocab, opts.hidden]);
  for (let i = 0; i < opts.layers; i++) opts.block(`model.layers.${i}`, i);
  b.plain("model.norm", "rms_norm", [opts.hidden]);
  if (!opts.tied) b.plain("lm_head", "linear", [opts.vocab, opts.hidden]);
  return b.finish();
}
