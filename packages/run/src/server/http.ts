// node:http in front of ServerApp: IncomingMessage to a web Request (with an AbortSignal that
// fires when the client goes away), the Response back out with backpressure, and a graceful
// close: stop accepting, let in-flight requests finish for a while, then cancel the rest.
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { ServerApp } from "./app.js";
import { mapError } from "./errors.js";

/** How long in-flight requests get to finish on close before they are cancelled. */
export const DEFAULT_GRACE_MS = 10_000;
/** After cancelling, how long to wait for generations to wind down before closing sockets. */
const CANCEL_SETTLE_MS = 2_000;

export interface RunningServer {
  readonly server: Server;
  /** http://host:port, with the port actually bound (for port 0). */
  readonly url: string;
  readonly port: number;
  /** Graceful shutdown; resolves once every connection is closed. */
  close(options?: { graceMs?: number }): Promise<void>;
}

export async function listen(app: ServerApp, options: { host: string; port: number }): Promise<RunningServer> {
  const server = createServer({ noDelay: true }, (req, res) => void handle(app, req, res));
  server.listen(options.port, options.host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${host}:${port}`,
    port,
    close: (o = {}) => (closing ??= shutdown(app, server, o.graceMs ?? DEFAULT_GRACE_MS)),
  };
}

async function shutdown(app: ServerApp, server: Server, graceMs: number): Promise<void> {
  app.drain();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  if (!(await within(app.idle(), graceMs))) {
    app.abortAll();
    await within(app.idle(), CANCEL_SETTLE_MS);
  }
  server.closeAllConnections();
  await closed;
}

/** Whether `p` settled within `ms`. */
async function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function handle(app: ServerApp, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const gone = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  let response: Response;
  try {
    response = await app.fetch(toRequest(req, gone.signal));
  } catch (e) {
    // app.fetch answers every error itself; this is a malformed request line or a bug here.
    const mapped = mapError(e);
    response = Response.json(mapped.body, { status: mapped.status });
  }
  await send(res, response, gone.signal);
}

function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD" && method !== "OPTIONS";
  return new Request(new URL(req.url ?? "/", "http://localhost"), {
    method,
    headers,
    signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
  } as RequestInit);
}

async function send(res: ServerResponse, response: Response, gone: AbortSignal): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => (headers[k] = v));
  const streaming = (headers["content-type"] ?? "").startsWith("text/event-stream");
  if (response.body === null || !streaming) {
    const body = response.body === null ? Buffer.alloc(0) : Buffer.from(await response.arrayBuffer());
    if (res.destroyed) return;
    res.writeHead(response.status, { ...headers, "content-length": String(body.length) });
    res.end(body);
    return;
  }
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  gone.addEventListener("abort", cancel, { once: true });
  try {
    res.writeHead(response.status, headers);
    res.flushHeaders();
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) await Promise.race([once(res, "drain"), once(res, "close")]);
    }
    if (!res.destroyed) res.end();
  } catch {
    res.destroy();
  } finally {
    gone.removeEventListener("abort", cancel);
    if (res.destroyed) cancel();
  }
}
