import { PajamasError } from "@llama-pajamas/artifact";

/**
 * Runtime-only errors. The shared ones (InputError, ManifestError, VersionMismatchError,
 * UsageError) come from @llama-pajamas/artifact; these exist only on the runtime side.
 */

/** The requested backend cannot run here (no driver, no binary, not on this platform). */
export class BackendUnavailableError extends PajamasError {
  readonly requested: string;
  readonly available: readonly string[];
  constructor(message: string, options: { requested: string; available: readonly string[]; cause?: unknown }) {
    super("E_BACKEND", message, { cause: options.cause });
    this.requested = options.requested;
    this.available = options.available;
  }
}

/** A prompt (or chat history) does not fit in the context window. */
export class ContextOverflowError extends PajamasError {
  readonly promptTokens: number;
  readonly contextSize: number;
  constructor(message: string, options: { promptTokens: number; contextSize: number }) {
    super("E_CONTEXT", message);
    this.promptTokens = options.promptTokens;
    this.contextSize = options.contextSize;
  }
}

/** The model cannot do what was asked (no chat template, no embeddings), or the runtime is unloaded. */
export class ModelStateError extends PajamasError {
  constructor(code: "E_NO_CHAT_TEMPLATE" | "E_TEMPLATE" | "E_UNLOADED" | "E_EMBEDDINGS", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
