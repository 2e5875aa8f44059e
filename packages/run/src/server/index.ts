// The OpenAI-compatible server: ServerApp answers web Requests (use it in process, or behind
// any HTTP stack); listen() serves it over node:http. `llama-pajamas-run serve` wires both.
export { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, ServerApp, type RouteContext, type ServerOptions } from "./app.js";
export { DEFAULT_GRACE_MS, listen, type RunningServer } from "./http.js";
export { HttpError, mapError, type ErrorEnvelope } from "./errors.js";
