// worker_threads entry of QuantizePool (pool.ts): encodes one chunk of rows per message
// (rows.ts: widen, round through the intermediate type, quantize or convert) with its own copy
// of the native bindings, and transfers the bytes back.

import { parentPort } from "node:worker_threads";
import { encodeRows, type RowsRequest } from "./rows.js";

/** pool.ts -> worker. `src` and `imatrix` arrive transferred, or as views of shared memory. */
export interface ChunkRequest extends RowsRequest {
  id: number;
}

/** worker -> pool.ts. */
export type ChunkReply =
  | { id: number; ok: true; bytes: Uint8Array }
  | { id: number; ok: false; error: { name: string; message: string; code?: string } };

if (parentPort) {
  const port = parentPort;
  // The widened values of one chunk; reused, so a chunk allocates only its output.
  let scratch = new Float32Array(0);
  port.on("message", (req: ChunkRequest) => {
    let reply: ChunkReply;
    try {
      const n = req.nRows * req.nPerRow;
      if (scratch.length < n) scratch = new Float32Array(n);
      const bytes = encodeRows(req, scratch);
      reply = { id: req.id, ok: true, bytes };
      port.postMessage(reply, [bytes.buffer as ArrayBuffer]);
    } catch (e) {
      const err = e as Error & { code?: string };
      reply = { id: req.id, ok: false, error: { name: err.name, message: err.message, code: err.code } };
      port.postMessage(reply);
    }
  });
}
