// Public API of llama-pajamas-quant (the seed's Quantizer / QuantConfig, in TypeScript idiom).
import { convert, type ConvertOptions, type ConvertResult, type QuantConfig } from "./pipeline.js";

export { convert } from "./pipeline.js";
export type { ConvertOptions, ConvertResult, ConvertedFile, ProgressEvent, QuantConfig } from "./pipeline.js";
export { inspectModel, type ModelInfo } from "./info.js";
export { METHODS, parseMethod, type QuantMethod } from "./quantize/methods.js";
export { SUPPORTED_MODEL_TYPES } from "@llama-pajamas/gguf/architectures/index.js";
export { PIPELINE_VERSION } from "./version.js";
export { resolveHubModel, type HubEvent, type HubOptions } from "./source/index.js";

/**
 * `new Quantizer(config).convert({ model, outputDir })`: the seed's object form of convert(),
 * for callers that reuse one configuration over several checkpoints.
 */
export class Quantizer {
  constructor(readonly config: QuantConfig) {}

  convert(opts: { model: string; outputDir: string } & Partial<Pick<ConvertOptions, "modelId" | "onProgress" | "signal">>): Promise<ConvertResult> {
    return convert({ ...this.config, ...opts, output: opts.outputDir });
  }
}
export * from "./validation/index.js";
export * from "./calibration/index.js";
