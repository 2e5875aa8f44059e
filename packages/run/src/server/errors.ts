// The one place where errors become HTTP responses: OpenAI's envelope
// {error: {message, type, param, code}} with the status OpenAI (or llama-server) would send.
import { InputError, PajamasError, UsageError } from "@llama-pajamas/artifact";
import { ContextOverflowError, ModelStateError } from "../errors.js";

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "server_error" | "unavailable_error";

export interface ErrorEnvelope {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

/** An error the server answers with `status` and the message as it is (nothing internal in it). */
export class HttpError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly code: string | null;
  /** Extra response headers (Retry-After, Allow, WWW-Authenticate). */
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, options: { type?: ErrorType; param?: string; code?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.type = options.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }
}

/** 400 for a request field: `param` is its JSON path as OpenAI writes it ("messages[0].content"). */
export function invalidField(param: string, message: string, code = "invalid_value"): HttpError {
  return new HttpError(400, message, { param, code });
}

export interface MappedError {
  status: number;
  body: ErrorEnvelope;
  headers: Record<string, string>;
  /** True when the error was not expected (a bug or an engine failure): log it with its stack. */
  internal: boolean;
}

const INTERNAL_MESSAGE = "The server had an error while processing your request. Check the server log for details.";

export function mapError(e: unknown): MappedError {
  const out = (status: number, message: string, o: { type?: ErrorType; param?: string | null; code?: string | null; headers?: Record<string, string>; internal?: boolean } = {}): MappedError => ({
    status,
    body: { error: { message, type: o.type ?? (status >= 500 ? "server_error" : "invalid_request_error"), param: o.param ?? null, code: o.code ?? null } },
    headers: o.headers ?? {},
    internal: o.internal ?? false,
  });
  if (e instanceof HttpError) return out(e.status, e.message, e);
  if (e instanceof ContextOverflowError) return out(400, e.message, { code: "context_length_exceeded" });
  if (e instanceof ModelStateError) {
    if (e.code === "E_UNLOADED") return out(503, "the server is shutting down", { type: "unavailable_error", code: "unavailable" });
    return out(400, e.message, { code: e.code === "E_NO_CHAT_TEMPLATE" ? "no_chat_template" : e.code === "E_TEMPLATE" ? "template_error" : "model_error" });
  }
  // Field checks the runtime makes (sampling ranges, grammars, prompts) are the caller's mistakes.
  if (e instanceof UsageError || e instanceof InputError) return out(400, e.message, { code: (e as PajamasError).code === "E_GRAMMAR" ? "invalid_grammar" : "invalid_value" });
  return out(500, INTERNAL_MESSAGE, { internal: true });
}
