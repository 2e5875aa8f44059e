// Server-sent events as OpenAI streams them: one `data: {json}` event per chunk, then
// `data: [DONE]`. An error after the headers went out becomes one `data: {"error": ...}` event.

export const SSE_HEADERS: Record<string, string> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  // Proxies such as nginx would otherwise buffer the stream.
  "x-accel-buffering": "no",
};

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");

export function sseEvent(data: unknown): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
}

/**
 * A streaming response that pulls `events` as the client reads: a client that stops reading
 * pauses its generation (its slot stays taken, as in llama-server, but no compute is spent on
 * text nobody reads). `onCancel` runs when the client goes away; `onError` turns a failure
 * into the error event's body.
 */
export function sseResponse(options: {
  events: AsyncGenerator<unknown, void, void>;
  onCancel: () => void;
  onError: (e: unknown) => unknown;
  headers?: Record<string, string>;
}): Response {
  const { events, onCancel, onError } = options;
  let finished = false;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (finished) return;
        try {
          const next = await events.next();
          if (finished) return;
          if (next.done === true) {
            finished = true;
            controller.enqueue(DONE);
            controller.close();
          } else {
            controller.enqueue(sseEvent(next.value));
          }
        } catch (e) {
          if (finished) return;
          finished = true;
          controller.enqueue(sseEvent(onError(e)));
          controller.close();
        }
      },
      async cancel() {
        finished = true;
        onCancel();
        await events.return(undefined).catch(() => undefined);
      },
    },
    // Pull only when the client has taken the previous event.
    { highWaterMark: 0 },
  );
  return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...options.headers } });
}
