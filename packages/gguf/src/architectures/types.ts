import type { GGUFKV } from "../formats/gguf-types.js";

/** config.json as parsed; architecture files validate the fields they read. */
export type HFConfig = Record<string, unknown>;

/** A source tensor of the checkpoint, as the safetensors header describes it. */
export interface SourceTensorInfo {
  name: string;
  dtype: string; // safetensors dtype: "F32" | "F16" | "BF16" | ...
  shape: number[]; // row-major, as in PyTorch (outermost first)
}

/**
 * One GGUF tensor to produce. `shape` is in PyTorch order (outermost first), like the
 * converter's numpy arrays; the GGUF writer reverses it into ggml's ne[] order.
 * `build` receives the source tensors (as F32, in `sources` order, each in PyTorch order)
 * and returns the F32 data of the output tensor. Leave `build` out for a plain copy of a
 * single source.
 */
export interface TensorPlan {
  name: string; // GGUF name, e.g. "blk.0.attn_q.weight"
  sources: string[]; // HF tensor names read for it
  shape: number[];
  build?: (inputs: Float32Array[]) => Float32Array;
  /**
   * For tensors that do not come from the checkpoint (rope_freqs): the data, computed
   * from the config alone. `sources` is then empty.
   */
  generate?: () => Float32Array;
  /** Forces the float type the converter would keep (llama.cpp keeps some 2-D tensors F32). */
  keepF32?: boolean;
  /** Block index, for per-layer quantization rules; undefined for non-block tensors. */
  bid?: number;
}

export interface ArchitectureSummary {
  /** "dense_decoder" or "moe" */
  family: "dense_decoder" | "moe";
  blockCount: number;
  expertCount?: number;
  expertUsedCount?: number;
  headCount: number;
  headCountKv: number;
}

/**
 * One HF model_type. The file name equals model_type (llama.ts, qwen3_moe.ts ...).
 * Everything is a pure function of the config and the checkpoint's tensor list.
 */
export interface Architecture {
  /** model_type values it handles (the first one is its own; the rest are aliases). */
  modelTypes: string[];
  /** GGUF architecture name (general.architecture), e.g. "llama", "qwen3moe". */
  ggufArch: string;
  /** HF class names (config.json `architectures[0]`) it converts, as llama.cpp registers them. */
  hfArchitectures: string[];
  summary(config: HFConfig): ArchitectureSummary;
  /**
   * Architecture KV entries (`<arch>.*`), in the order llama.cpp's converter writes them, split
   * around the general.* keys the caller writes (see ArchitectureMetadata for the full order).
   * Tokenizer and general.* keys are written elsewhere.
   */
  metadata(config: HFConfig): ArchitectureMetadata;
  /**
   * The GGUF tensors to write, in the order llama.cpp's converter writes them. Throws a
   * ConversionError naming the missing tensor when the checkpoint lacks one.
   */
  tensors(config: HFConfig, source: ReadonlyMap<string, SourceTensorInfo>, options?: TensorOptions): TensorPlan[];
}

/**
 * The `<arch>.*` KVs in three runs. llama.cpp's converter writes a GGUF's KVs in this order
 * (conversion/base.py ModelBase.write -> prepare_tensors, prepare_metadata, set_vocab):
 *
 *   general.architecture
 *   afterArchitecture       KVs added while tensors are prepared (phi3 LongRoPE:
 *                           phi3.rope.scaling.attn_factor); usually empty
 *   general.type, general.sampling.*, general.name, general.size_label ...   (general-metadata.ts)
 *   beforeFileType          TextModel.set_gguf_parameters up to add_file_type
 *   general.file_type
 *   afterFileType           keys a model class adds after super().set_gguf_parameters()
 *                           (llama: vocab_size, rope.dimension_count; phi3: sliding_window ...)
 *   general.quantization_version
 *   tokenizer.*
 */
export interface ArchitectureMetadata {
  afterArchitecture: GGUFKV[];
  beforeFileType: GGUFKV[];
  afterFileType: GGUFKV[];
}

/** Facts outside config.json and the tensor list that change a plan. */
export interface TensorOptions {
  /**
   * gemma3 only: llama.cpp trims token_embd to the tokenizer's real vocabulary
   * (Gemma3Model.modify_tensors). With tokenizer.model that is config vocab_size (the default);
   * with only tokenizer.json pass len(model.vocab) + len(added_tokens).
   */
  tokenizerVocabCount?: number;
}
