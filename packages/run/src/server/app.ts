// The OpenAI-compatible HTTP app: web-standard Request in, Response out (so tests call
// app.fetch() in process, as with Hono's app.request, and http.ts adapts it to node:http).
// Routing, API keys, CORS, admission (slots plus a bounded queue), metrics and the error
// envelope live here; the routes are thin callers of the Runtime.
import { createHash, timingSafeEqual } from "node:crypto";
import { basename } from "node:path";
import type { LogLevel } from "../config.js";
import type { Runtime } from "../runtime.js";
import { Fields, readJsonObject } from "./body.js";
import { HttpError, mapError, type MappedError } from "./errors.js";
import { Metrics } from "./metrics.js";
import { chatCompletions } from "./routes/chat.js";
import { completions } from "./routes/completions.js";
import { embeddings } from "./routes/embeddings.js";
import { getModel, listModels } from "./routes/models.js";

export interface ServerOptions {
  /** The id /v1/models reports; default the manifest's model_id, else the GGUF file's name. */
  modelId?: string;
  /** Every /v1 route and /metrics then need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body; default 8 MiB. */
  maxBodyBytes?: number;
  /** Requests that may wait for a slot beyond --parallel; more get 503. Default 256. */
  maxQueue?: number;
  /** Access-Control-Allow-Origin to send ("*" or an origin); CORS is off without it. */
  corsOrigin?: string;
  /** Request lines and internal errors (the library never prints). */
  onLog?: (level: LogLevel, message: string) => void;
}

export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MAX_QUEUE = 256;

/** What a route gets for one request. */
export interface RouteContext {
  readonly runtime: Runtime;
  readonly modelId: string;
  readonly metrics: Metrics;
  /** Fires when the client goes away or the server stops. */
  readonly signal: AbortSignal;
  /** performance.now() when the request arrived. */
  readonly startMs: number;
  /** The JSON body (413, 400 as needed); a `model` naming another model is a 404. */
  body(): Promise<Fields>;
  /** The response outlives the handler (a stream): call the returned function when it ends. */
  keepOpen(): (status?: number) => void;
  /** A streamed response's client went away: stop its work now. */
  abort(): void;
  /** Maps an error to its envelope (for errors inside a stream) and logs internal ones. */
  errorBody(e: unknown): unknown;
}

type Handler = (ctx: RouteContext, request: Request, params: Record<string, string>) => Promise<Response>;

interface Route {
  method: "GET" | "POST";
  /** Exact path, or a prefix ending in "/" whose rest becomes params.id. */
  path: string;
  /** Needs the model (admission counts it; 503 while loading). */
  model: boolean;
  handler: Handler;
}

const ROUTES: Route[] = [
  { method: "POST", path: "/v1/chat/completions", model: true, handler: chatCompletions },
  { method: "POST", path: "/v1/completions", model: true, handler: completions },
  { method: "POST", path: "/v1/embeddings", model: true, handler: embeddings },
  { method: "GET", path: "/v1/models", model: false, handler: listModels },
  { method: "GET", path: "/v1/models/", model: false, handler: getModel },
];

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });

export class ServerApp {
  readonly metrics = new Metrics();
  private runtime: Runtime | undefined;
  private modelId = "";
  private draining = false;
  private readonly active = new Set<AbortController>();
  /** Requests that use the model and have not finished (running or waiting). */
  private modelRequests = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly apiKeyHash: Buffer | undefined;
  private readonly maxBodyBytes: number;
  private readonly maxQueue: number;

  constructor(private readonly options: ServerOptions = {}) {
    this.apiKeyHash = options.apiKey !== undefined && options.apiKey !== "" ? sha256(options.apiKey) : undefined;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  }

  /** The model is loaded: /health turns 200 and the /v1 routes answer. */
  attach(runtime: Runtime): void {
    this.runtime = runtime;
    this.modelId = this.options.modelId ?? runtime.source.manifest?.model_id ?? basename(runtime.modelFile);
  }

  get id(): string {
    return this.modelId;
  }

  /** Requests being answered now (streams included). */
  get inFlight(): number {
    return this.active.size;
  }

  /** New requests get 503 from now on (graceful shutdown). */
  drain(): void {
    this.draining = true;
  }

  /** Stops every request in flight (their generations end with what they have). */
  abortAll(): void {
    for (const c of this.active) c.abort();
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async fetch(request: Request): Promise<Response> {
    const startMs = performance.now();
    const url = new URL(request.url, "http://localhost");
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
    const cors = this.corsHeaders(request);
    if (request.method === "OPTIONS" && cors !== undefined) {
      return new Response(null, { status: 204, headers: { ...cors, "access-control-allow-methods": "GET, POST, OPTIONS", "access-control-allow-headers": "authorization, content-type", "access-control-max-age": "600" } });
    }
    const controller = new AbortController();
    let routeLabel = "other";
    let admitted = false;
    let open = false;
    let finished = false;
    let clientGone = false;
    const onClientGone = () => {
      // Counted once, and not for requests the server itself cancels (abortAll).
      if (!clientGone && !finished) this.metrics.disconnect();
      clientGone = true;
      controller.abort();
    };
    request.signal.addEventListener("abort", onClientGone, { once: true });
    this.active.add(controller);
    const finish = (status: number) => {
      if (finished) return;
      finished = true;
      request.signal.removeEventListener("abort", onClientGone);
      this.active.delete(controller);
      if (admitted) this.modelRequests--;
      this.metrics.request(routeLabel, status, (performance.now() - startMs) / 1000);
      if (this.active.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
    let response: Response;
    try {
      if (path === "/health" || path === "/v1/health") {
        routeLabel = "/health";
        response = this.health();
      } else {
        if (path.startsWith("/v1/") || path === "/metrics") this.authorize(request);
        if (path === "/metrics") {
          routeLabel = "/metrics";
          if (request.method !== "GET") throw methodNotAllowed(request.method, path, "GET");
          response = new Response(this.metrics.render(this.runtime?.occupancy), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
        } else {
          const { route, params } = this.match(request.method, path);
          routeLabel = route.path.endsWith("/") ? route.path + ":id" : route.path;
          const runtime = this.requireRuntime();
          if (route.model) {
            this.admit(runtime);
            admitted = true;
            this.modelRequests++;
          }
          const ctx: RouteContext = {
            runtime,
            modelId: this.modelId,
            metrics: this.metrics,
            signal: controller.signal,
            startMs,
            body: async () => {
              const body = new Fields(await readJsonObject(request, this.maxBodyBytes));
              const model = body.string("model");
              if (model !== undefined && !this.knowsModel(model)) throw modelNotFound(model, this.modelId);
              return body;
            },
            keepOpen: () => {
              open = true;
              return (status = 200) => finish(status);
            },
            abort: onClientGone,
            errorBody: (e) => this.errorResponseBody(e, request, path),
          };
          response = await route.handler(ctx, request, params);
        }
      }
    } catch (e) {
      const mapped = this.mapAndLog(e, request, path);
      open = false;
      response = json(mapped.status, mapped.body, mapped.headers);
    }
    if (cors !== undefined) for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
    if (!open) finish(response.status);
    return response;
  }

  private health(): Response {
    if (this.runtime === undefined) return json(503, { error: { message: "Loading model", type: "unavailable_error", param: null, code: "loading" } });
    return json(200, { status: "ok" });
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } {
    const candidates = ROUTES.filter((r) => (r.path.endsWith("/") ? path.startsWith(r.path) && path.length > r.path.length : path === r.path));
    const route = candidates.find((r) => r.method === method);
    if (route !== undefined) return { route, params: route.path.endsWith("/") ? { id: decodeURIComponent(path.slice(route.path.length)) } : {} };
    if (candidates.length > 0) throw methodNotAllowed(method, path, candidates.map((r) => r.method).join(", "));
    throw new HttpError(404, `Invalid URL (${method} ${path}); routes: ${ROUTES.map((r) => `${r.method} ${r.path.endsWith("/") ? r.path + "{model}" : r.path}`).join(", ")}, GET /health, GET /metrics`, {
      type: "not_found_error",
      code: "unknown_url",
    });
  }

  private authorize(request: Request): void {
    if (this.apiKeyHash === undefined) return;
    const header = request.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    const ok = m !== null && timingSafeEqual(sha256(m[1]!), this.apiKeyHash);
    if (!ok) {
      throw new HttpError(401, m === null ? "You didn't provide an API key. Send it as Authorization: Bearer <key>." : "Incorrect API key provided.", {
        type: "authentication_error",
        code: "invalid_api_key",
        headers: { "www-authenticate": 'Bearer realm="llama-pajamas"' },
      });
    }
  }

  private requireRuntime(): Runtime {
    if (this.draining) throw new HttpError(503, "the server is shutting down", { type: "unavailable_error", code: "unavailable" });
    if (this.runtime === undefined) throw new HttpError(503, "Loading model", { type: "unavailable_error", code: "loading" });
    return this.runtime;
  }

  /** Up to --parallel requests run; up to maxQueue more wait; beyond that, 503 and Retry-After. */
  private admit(runtime: Runtime): void {
    const limit = runtime.occupancy.parallel + this.maxQueue;
    if (this.modelRequests >= limit) {
      this.metrics.rejectedFull();
      throw new HttpError(503, `the server is busy: ${runtime.occupancy.parallel} requests are running and ${this.modelRequests - runtime.occupancy.parallel} are waiting (--parallel, --max-queue); retry later`, {
        type: "server_error",
        code: "server_busy",
        headers: { "retry-after": "1" },
      });
    }
  }

  private knowsModel(model: string): boolean {
    if (this.runtime === undefined) return false;
    return model === this.modelId || model === basename(this.runtime.modelFile) || model === this.runtime.name;
  }

  private corsHeaders(request: Request): Record<string, string> | undefined {
    const allowed = this.options.corsOrigin;
    if (allowed === undefined || allowed === "") return undefined;
    const origin = request.headers.get("origin");
    if (allowed !== "*" && origin !== allowed) return undefined;
    return { "access-control-allow-origin": allowed, vary: "Origin" };
  }

  private mapAndLog(e: unknown, request: Request, path: string): MappedError {
    const mapped = mapError(e);
    if (mapped.internal) this.options.onLog?.("error", `${request.method} ${path}: ${(e as Error)?.stack ?? String(e)}`);
    return mapped;
  }

  private errorResponseBody(e: unknown, request: Request, path: string): unknown {
    return this.mapAndLog(e, request, path).body;
  }
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function methodNotAllowed(method: string, path: string, allowed: string): HttpError {
  return new HttpError(405, `${method} is not allowed on ${path}; use ${allowed}`, { code: "method_not_allowed", headers: { allow: allowed } });
}

export function modelNotFound(model: string, served: string): HttpError {
  return new HttpError(404, `The model \`${model}\` does not exist; this server serves \`${served}\``, { type: "invalid_request_error", param: "model", code: "model_not_found" });
}
