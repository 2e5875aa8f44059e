// worker_threads entry of QuantizePool (pool.ts): quantizes one chunk of rows per message with
// its own copy of the native bindings and transfers the bytes back.

import { parentPort } from "node:worker_threads";
import { quantizeRows } from "./native.js";

/** pool.ts -> worker. `src` and `imatrix` arrive transferred (or as views of shared memory). */
export interface ChunkRequest {
  id: number;
  type: number;
  src: Float32Array;
  nRows: number;
  nPerRow: number;
  imatrix?: Float32Array;
}

/** worker -> pool.ts. */
export type ChunkReply =
  | { id: number; ok: true; bytes: Uint8Array }
  | { id: number; ok: false; error: { name: string; message: string; code?: string } };

if (parentPort) {
  const port = parentPort;
  port.on("message", (req: ChunkRequest) => {
    let reply: ChunkReply;
    try {
      const bytes = quantizeRows(req.type, req.src, req.nRows, req.nPerRow, req.imatrix);
      reply = { id: req.id, ok: true, bytes };
      port.postMessage(reply, [bytes.buffer as ArrayBuffer]);
    } catch (e) {
      const err = e as Error & { code?: string };
      reply = { id: req.id, ok: false, error: { name: err.name, message: err.message, code: err.code } };
      port.postMessage(reply);
    }
  });
}
