// The pipeline's native seam: libllama's wrappers live in @llama-pajamas/gguf (llama.ts), shared
// with the runtime's cpu backend; ggml's kernels in its ggml.ts. Re-exported here so the
// pipeline imports one module.
export * from "@llama-pajamas/gguf/llama.js";
export {
  fp32ToBf16Row,
  fp32ToFp16Row,
  ggmlBlockSize,
  ggmlIsQuantized,
  ggmlRowSize,
  ggmlTypeSize,
  locateNativeLibraries,
  NATIVE_DIR_ENV,
  type NativeLibraryPaths,
  nativeLibraryPaths,
  quantizeInit,
  quantizeRequiresImatrix,
  quantizeRows,
  validateRowData,
} from "@llama-pajamas/gguf";
