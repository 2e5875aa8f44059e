// The MLX side of an architecture: the parameters of mlx-lm's Model for a config, in the order
// model.parameters() flattens them, each bound to the HF tensors it is made of (mlx-lm's
// `sanitize`: renames, dropped tensors, experts stacked along a new first axis).
import type { HFConfig, SourceTensorInfo } from "@llama-pajamas/gguf/architectures/types.js";

/** The mlx.nn leaf module types whose parameters we write. */
export type MLXModuleKind = "linear" | "embedding" | "switch_linear" | "rms_norm";

/** A run of elements of one HF tensor (row-major); a parameter is the concatenation of its runs. */
export interface SourceRun {
  tensor: string;
  startElement: number;
  elementCount: number;
}

export interface MLXParam {
  name: "weight" | "bias";
  /** The shape mlx-lm's model gives it (PyTorch order). */
  shape: number[];
  runs: SourceRun[];
}

export interface MLXModule {
  /** The module path nn.quantize and config.json's per-module entries use. */
  path: string;
  kind: MLXModuleKind;
  /** In the module's attribute order (weight, then bias). */
  params: MLXParam[];
}

/** What a predicate may return for a module (mlx-lm's per-module quantization entry). */
export interface QuantParams {
  group_size: number;
  bits: number;
  mode?: string;
}

/** mlx-lm's quant_predicate signature: (path, module) -> bool | dict. */
export type QuantPredicate = (path: string, module: MLXModule) => boolean | QuantParams;

export interface MLXModelFile {
  /** mlx_lm/models/<file>.py this mirrors (the model_type, after MODEL_REMAPPING). */
  file: string;
  modules(config: HFConfig, sources: ReadonlyMap<string, SourceTensorInfo>): MLXModule[];
  /** The model's own `quant_predicate` property, when it has one. */
  quantPredicate?: QuantPredicate;
}

/** Linear, Embedding and SwitchLinear define to_quantized(); norms do not. */
export function isQuantizable(m: MLXModule): boolean {
  return m.kind !== "rms_norm";
}
