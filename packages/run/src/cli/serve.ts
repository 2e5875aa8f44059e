import { InputError, UsageError } from "@llama-pajamas/artifact";
import { Runtime } from "../runtime.js";
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, ServerApp } from "../server/app.js";
import { DEFAULT_GRACE_MS, listen, type RunningServer } from "../server/http.js";
import { optionalInt, optionalString, type Command } from "./args.js";
import { MODEL_OPTIONS, MODEL_USAGE, readTextFile, runtimeOptions, transcodeSummary } from "./common.js";

/** Where the API key may come from instead of --api-key (which other users can see in `ps`). */
const API_KEY_ENV = "LLAMA_PAJAMAS_API_KEY";
const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "127.0.0.1";

const usage = `Usage: llama-pajamas-run serve --model PATH [--port 8080] [--host 127.0.0.1] [options]

Serves the model over HTTP with OpenAI's API, so the official clients work unchanged:
POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models, /health,
/metrics (Prometheus). SIGTERM or Ctrl-C stops accepting, lets running requests finish
(--shutdown-timeout), cancels the rest and exits 0.

Server options:
  --host HOST                  address to bind (default ${DEFAULT_HOST}; 0.0.0.0 for every interface)
  --port N                     port (default ${DEFAULT_PORT}; 0 picks a free one)
  --api-key KEY                require Authorization: Bearer KEY on /v1 routes and /metrics
                               (or set ${API_KEY_ENV})
  --parallel N                 requests generating at once, batched together (default 1); each
                               gets its own --ctx-size tokens of KV cache
  --max-queue N                requests that may wait for a slot; more get 503 (default ${DEFAULT_MAX_QUEUE})
  --max-body-bytes N           largest request body; more gets 413 (default ${DEFAULT_MAX_BODY_BYTES})
  --cors ORIGIN                send Access-Control-Allow-Origin for ORIGIN (* for any); off by default
  --alias NAME                 the model id clients use (default: the manifest's model_id, else the file name)
  --chat-template-file FILE    a Jinja chat template instead of the model's own
  --shutdown-timeout SECONDS   how long running requests may finish on shutdown (default ${DEFAULT_GRACE_MS / 1000})

--ctx-size is per slot (each request's prompt plus max_tokens must fit in it); llama-server's -c
is the total over its slots.

${MODEL_USAGE}`;

export const serveCommand: Command = {
  name: "serve",
  summary: "OpenAI-compatible HTTP server (chat, completions, embeddings)",
  usage,
  options: {
    ...MODEL_OPTIONS,
    host: { type: "string" },
    port: { type: "string" },
    "api-key": { type: "string" },
    parallel: { type: "string" },
    "max-queue": { type: "string" },
    "max-body-bytes": { type: "string" },
    cors: { type: "string" },
    alias: { type: "string" },
    "chat-template-file": { type: "string" },
    "shutdown-timeout": { type: "string" },
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}\n\n${usage}`);
    const host = optionalString(values, "host") ?? DEFAULT_HOST;
    const port = optionalInt(values, "port", 0) ?? DEFAULT_PORT;
    if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
    const parallel = optionalInt(values, "parallel") ?? 1;
    const graceMs = 1000 * (optionalInt(values, "shutdown-timeout", 0) ?? DEFAULT_GRACE_MS / 1000);
    const apiKey = optionalString(values, "api-key") ?? process.env[API_KEY_ENV];
    const templateFile = optionalString(values, "chat-template-file");
    const chatTemplate = templateFile === undefined ? undefined : await readTextFile(templateFile, "chat template");
    const verbose = values.verbose === true;
    const log = (level: string, message: string) => process.stderr.write(`${level}: ${message}\n`);
    const stop = new AbortController();
    const options = runtimeOptions(values, usage, { parallel, signal: stop.signal, ...(chatTemplate !== undefined ? { chatTemplate } : {}) });
    const corsOrigin = optionalString(values, "cors");
    const alias = optionalString(values, "alias");
    const app = new ServerApp({
      ...(apiKey !== undefined && apiKey !== "" ? { apiKey } : {}),
      maxQueue: optionalInt(values, "max-queue", 0) ?? DEFAULT_MAX_QUEUE,
      maxBodyBytes: optionalInt(values, "max-body-bytes") ?? DEFAULT_MAX_BODY_BYTES,
      ...(corsOrigin !== undefined ? { corsOrigin } : {}),
      ...(alias !== undefined ? { modelId: alias } : {}),
      onLog: (level, message) => {
        if (level === "error" || verbose) log(level, message);
      },
    });

    // Listen first: /health answers 503 while the model loads, as llama-server's does.
    let server: RunningServer;
    try {
      server = await listen(app, { host, port });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === "EADDRINUSE" ? "the address is in use; pick another --port" : err.code === "EACCES" ? "permission denied (ports below 1024 need privileges)" : err.message;
      throw new InputError(`cannot listen on ${host}:${port}: ${why}`, { cause: e, code: "E_LISTEN" });
    }
    process.stderr.write(`listening on ${server.url}\n`);
    // A first SIGTERM/SIGINT drains; a second cancels what is still running. The listeners stay
    // until the end (with process.once, Node 20 here still died of the first SIGTERM).
    let shutdownRequested = false;
    let onSignal!: (signal: NodeJS.Signals) => void;
    const stopped = new Promise<void>((resolve) => {
      onSignal = (signal) => {
        if (shutdownRequested) {
          process.stderr.write(`${signal} again: cancelling the running requests\n`);
          app.abortAll();
          return;
        }
        shutdownRequested = true;
        process.stderr.write(`${signal}: shutting down (running requests get ${graceMs / 1000} s)\n`);
        stop.abort();
        resolve();
      };
    });
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    const removeSignalHandlers = () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    };

    let runtime: Runtime | undefined;
    try {
      runtime = await Runtime.load(options);
      transcodeSummary(runtime, values);
    } catch (e) {
      await server.close({ graceMs: 0 });
      removeSignalHandlers();
      if (shutdownRequested) return 0;
      throw e;
    }
    try {
      app.attach(runtime);
      const { contextSize } = runtime.info;
      process.stderr.write(`model ${app.id} loaded on ${runtime.backend} in ${runtime.loadSeconds.toFixed(1)} s: ${parallel} slot(s) of ${contextSize} tokens${apiKey ? ", API key required" : ""}\n`);
      await stopped;
      await server.close({ graceMs });
      return 0;
    } finally {
      await runtime.unload();
      removeSignalHandlers();
    }
  },
};
