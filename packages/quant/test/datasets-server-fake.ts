// A stand-in for the Hugging Face dataset viewer on 127.0.0.1, answering GET /rows as
// datasets-server does: ?dataset=&config=&split=&offset=&length= (length at most 100), a JSON
// body {features, rows: [{row_idx, row, truncated_cells}], num_rows_total, num_rows_per_page,
// partial}, and {"error": ...} with 404 for an unknown split, 422 for bad parameters. Faults:
// an HTTP status for the first N requests.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export type Row = Record<string, unknown>;

export interface FakeDatasetsServer {
  endpoint: string;
  /** Every request: its query parameters and Authorization header. */
  requests: { params: Record<string, string>; authorization?: string }[];
  faults: { status?: { status: number; times: number } };
  close(): Promise<void>;
}

/** `splits` maps "dataset|config|split" to its rows. */
export async function startFakeDatasetsServer(splits: Record<string, Row[]>): Promise<FakeDatasetsServer> {
  const requests: FakeDatasetsServer["requests"] = [];
  const faults: FakeDatasetsServer["faults"] = {};
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const params = Object.fromEntries(url.searchParams);
    requests.push({ params, authorization: req.headers.authorization });
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (faults.status && faults.status.times > 0) {
      faults.status.times--;
      return send(faults.status.status, { error: "The server is busier than usual and the response is not ready yet. Please retry later." });
    }
    if (url.pathname !== "/rows") return send(404, { error: "Not Found" });
    const rows = splits[`${params.dataset}|${params.config}|${params.split}`];
    if (!rows) {
      return send(404, {
        error: "The dataset does not exist, or is not accessible without authentication (private or gated). Please check the spelling of the dataset name or retry with authentication.",
      });
    }
    const offset = Number(params.offset ?? 0);
    const length = Number(params.length ?? 100);
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 1 || length > 100) {
      return send(422, { error: "Parameter 'length' must be between 1 and 100" });
    }
    const first = rows[0] ?? {};
    send(200, {
      features: Object.keys(first).map((name, i) => ({ feature_idx: i, name, type: { dtype: "string", _type: "Value" } })),
      rows: rows.slice(offset, offset + length).map((row, k) => ({ row_idx: offset + k, row, truncated_cells: [] })),
      num_rows_total: rows.length,
      num_rows_per_page: 100,
      partial: false,
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    faults,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** wikitext's rows from a text: one row per line with its "\n", blank lines as "" (the dataset's own layout). */
export function wikitextRows(text: string): Row[] {
  return text.split(/(?<=\n)/).map((line) => ({ text: line.trim() === "" ? "" : line }));
}
