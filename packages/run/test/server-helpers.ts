// Shared by the server tests: requests to a ServerApp in process, and SSE parsing.
import type { ServerApp } from "../src/server/app.js";

export const BASE = "http://localhost";

export function request(app: ServerApp, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
  const body = init.body === undefined ? undefined : typeof init.body === "string" ? init.body : JSON.stringify(init.body);
  return app.fetch(
    new Request(BASE + path, {
      method: init.method ?? (body === undefined ? "GET" : "POST"),
      headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...init.headers },
      ...(body !== undefined ? { body } : {}),
      ...(init.signal ? { signal: init.signal } : {}),
    }),
  );
}

export async function json(response: Response): Promise<any> {
  return JSON.parse(await response.text());
}

/** The `data:` payloads of an SSE body as they arrive; "[DONE]" ends it. */
export async function* sseData(response: Response): AsyncGenerator<any, void, void> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (let i = buffer.indexOf("\n\n"); i >= 0; i = buffer.indexOf("\n\n")) {
        const event = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (!event.startsWith("data: ")) throw new Error(`not an SSE data event: ${JSON.stringify(event)}`);
        const data = event.slice("data: ".length);
        if (data === "[DONE]") {
          yield "[DONE]";
          continue;
        }
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** Every event of a finished SSE body, [DONE] included. */
export async function readSse(response: Response): Promise<any[]> {
  const events: any[] = [];
  for await (const e of sseData(response)) events.push(e);
  return events;
}

/** The text and finish reason a chat stream's chunks add up to. */
export function chatStreamText(events: any[]): { text: string; finish: string | null } {
  let text = "";
  let finish: string | null = null;
  for (const e of events) {
    if (e === "[DONE]") continue;
    for (const c of e.choices ?? []) {
      text += c.delta?.content ?? c.text ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  return { text, finish };
}
