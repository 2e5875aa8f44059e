/**
 * Typed errors shared by the pipeline and the runtime. Every error has a stable `code`
 * (for programs) and a message that says what failed, the value seen, what was expected and
 * what to do next (for people). CLIs print `message` alone, without a stack trace.
 */
export class PajamasError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A flag or argument combination the user gave is wrong (CLI exit code 2). */
export class UsageError extends PajamasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_USAGE", message, options);
  }
}

/** An input file or directory is missing, unreadable, malformed or unsupported. */
export class InputError extends PajamasError {
  readonly path: string | undefined;
  constructor(message: string, options?: { path?: string; cause?: unknown; code?: string }) {
    super(options?.code ?? "E_INPUT", message, options);
    this.path = options?.path;
  }
}

/** The checkpoint is readable but cannot be converted (unknown architecture, missing tensor). */
export class ConversionError extends PajamasError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? "E_CONVERSION", message, options);
  }
}

/** An output cannot be written (exists without --force, disk full, interrupted). */
export class OutputError extends PajamasError {
  readonly path: string | undefined;
  constructor(message: string, options?: { path?: string; cause?: unknown; code?: string }) {
    super(options?.code ?? "E_OUTPUT", message, options);
    this.path = options?.path;
  }
}

/** manifest.json or metadata.json does not follow the artifact contract. */
export class ManifestError extends PajamasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_MANIFEST", message, options);
  }
}

/** An artifact needs a runtime or format version this one is not. */
export class VersionMismatchError extends PajamasError {
  readonly required: string;
  readonly actual: string;
  constructor(message: string, options: { required: string; actual: string }) {
    super("E_VERSION", message);
    this.required = options.required;
    this.actual = options.actual;
  }
}
