// Public API of llama-pajamas-run: load a GGUF file, an artifact directory or an MLX directory
// on a backend, then generate, chat, embed and benchmark. See README.md (## llama-pajamas-run).
export { Runtime, GenerationStream } from "./runtime.js";
export type { GenerationResult, FinishReason } from "./generation.js";
export type { ChatMessage, RenderedChat } from "./chat-template.js";
export {
  BACKEND_NAMES,
  DEFAULT_MAX_TOKENS,
  parseBackend,
  resolveSampling,
  type BackendName,
  type BackendRequest,
  type ChatConfig,
  type InferenceConfig,
  type LogLevel,
  type ResolvedSampling,
  type RuntimeOptions,
} from "./config.js";
export type { ModelInfo } from "./backends/types.js";
export { availableBackends } from "./backends/select.js";
export { type BenchmarkOptions, type BenchmarkResult, type SpeedStats, meanStddev } from "./benchmark.js";
export { openModelSource, type ModelSource } from "./model-source.js";
export { BackendUnavailableError, ContextOverflowError, ModelStateError } from "./errors.js";
export { RUNTIME_NAME, RUNTIME_VERSION } from "./version.js";
export type { GrammarSpec, TokenLogprob } from "./backends/types.js";
export { ServerApp, listen, type RunningServer, type ServerOptions } from "./server/index.js";
export { ensureTranscoded, userCacheDir, CACHE_DIR_ENV, type TranscodedModel, type EnsureTranscodedOptions } from "./mlx/cache.js";
export { transcodeMLX, TRANSCODER_VERSION, type TranscodeOptions, type TranscodeProgress, type TranscodeReport, type TranscodeTypeReport } from "./mlx/transcode.js";
