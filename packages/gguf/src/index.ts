// @llama-pajamas/gguf: what both the pipeline and the runtime need to write GGUF files.
// Deep imports (@llama-pajamas/gguf/formats/gguf-writer.js ...) reach every module; this index
// re-exports the main entry points.
export * from "./formats/gguf-types.js";
export * from "./formats/gguf-writer.js";
export * from "./formats/gguf-reader.js";
export * from "./formats/ggml-type-traits.js";
export * from "./formats/float.js";
export * from "./formats/safetensors.js";
export * from "./architectures/index.js";
export { buildTokenizerKV, type BuildTokenizerKVOptions, SUPPORTED_TOKENIZER_MODEL_TYPES } from "./tokenizer/index.js";
export * from "./float-policy.js";
export * from "./general-metadata.js";
export * from "./ggml.js";
