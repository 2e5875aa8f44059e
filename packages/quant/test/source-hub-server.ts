// A stand-in for the Hugging Face hub on 127.0.0.1, speaking the URL scheme and headers that
// huggingface_hub and this pipeline use: the file list (/api/models/{repo}/revision/{rev}
// ?blobs=true), resolve/{rev}/{file} (regular files served directly with their git blob id as
// ETag; LFS files as a 302 to a CDN on another origin with X-Linked-Etag/X-Linked-Size), HTTP
// Range, and the hub's error headers. Faults can be injected: a connection cut after N bytes,
// corrupted bytes, a server that ignores Range.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export const GOOD_TOKEN = "hf_test_good_token";

export interface FakeRepoSpec {
  files: Record<string, Buffer>;
  /** Files stored in LFS (default: *.safetensors, *.bin, and anything over 1 MiB). */
  lfs?: (name: string, bytes: Buffer) => boolean;
  /** Gated: resolve answers 401 (no token) or 403 (a token without access) with X-Error-Code GatedRepo. */
  gated?: boolean;
  /** Private: everything answers 401 RepoNotFound without GOOD_TOKEN. */
  private?: boolean;
  /** Extra branches or tags -> their commit (main is the repo's commit). */
  refs?: Record<string, string>;
}

export interface FakeFile {
  bytes: Buffer;
  sha256: string;
  gitSha1: string;
  lfs: boolean;
}

interface FakeRepo {
  commit: string;
  files: Map<string, FakeFile>;
  spec: FakeRepoSpec;
}

export interface RequestRecord {
  server: "hub" | "cdn";
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

export interface Faults {
  /** Cut the connection after this many body bytes of `file`, the first `times` requests for it. */
  cut?: { file: string; afterBytes: number; times: number };
  /** Flip one byte of every response for `file`. */
  corrupt?: { file: string };
  /** Answer Range requests with the whole file (200). */
  ignoreRange?: boolean;
  /** Answer requests for `file` with this HTTP status, the first `times` times. */
  status?: { file: string; status: number; times: number };
  /** Send `file` in chunks of `chunkBytes`, `delayMs` apart. */
  slow?: { file: string; chunkBytes: number; delayMs: number };
  /** Rewrites the file list before it is sent. */
  listing?: (json: Record<string, unknown>) => Record<string, unknown>;
}

export interface FakeHub {
  endpoint: string;
  cdnOrigin: string;
  requests: RequestRecord[];
  faults: Faults;
  repo(name: string): { commit: string; files: Map<string, FakeFile> };
  /** Requests for file bytes (resolve on the hub or the CDN), excluding the file list. */
  downloads(): RequestRecord[];
  close(): Promise<void>;
}

export function gitBlobSha1(bytes: Buffer): string {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

export function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function readDirFiles(dir: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const name of readdirSync(dir)) files[name] = readFileSync(join(dir, name));
  return files;
}

const defaultLfs = (name: string, bytes: Buffer) => /\.(safetensors|bin)$/.test(name) || bytes.length > 1024 * 1024;

function lfsPointer(f: FakeFile): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.bytes.length}\n`);
}

/**
 * `cdnHost` names the CDN's host in redirects: 127.0.0.1 by default (another port, so another
 * origin); "localhost" makes it another host too, as huggingface_hub needs to stop at the 302.
 */
export async function startFakeHub(specs: Record<string, FakeRepoSpec>, opts: { cdnHost?: string } = {}): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>();
  const byBlob = new Map<string, { name: string; file: FakeFile }>();
  for (const [name, spec] of Object.entries(specs)) {
    const files = new Map<string, FakeFile>();
    for (const [fname, bytes] of Object.entries(spec.files)) {
      const f = { bytes, sha256: sha256(bytes), gitSha1: gitBlobSha1(bytes), lfs: (spec.lfs ?? defaultLfs)(fname, bytes) };
      files.set(fname, f);
      byBlob.set(f.sha256, { name: fname, file: f });
    }
    repos.set(name, { commit: createHash("sha1").update(`commit of ${name}`).digest("hex"), files, spec });
  }
  const requests: RequestRecord[] = [];
  const faults: Faults = {};
  const cutsDone = new Map<string, number>();
  let cdnOrigin = "";

  const record = (server: "hub" | "cdn", req: IncomingMessage) =>
    requests.push({
      server,
      method: req.method ?? "GET",
      path: req.url ?? "",
      range: req.headers.range,
      authorization: req.headers.authorization,
    });

  const fail = (res: ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, { "x-error-code": code, "x-error-message": message, "content-type": "application/json" });
    res.end(JSON.stringify({ error: message }));
  };

  /** The repo, if the caller may see it; otherwise the error has been sent. */
  const access = (req: IncomingMessage, res: ServerResponse, name: string): FakeRepo | undefined => {
    const repo = repos.get(name);
    const auth = req.headers.authorization;
    if (auth?.startsWith("Bearer hf_invalid")) {
      fail(res, 401, "", "Invalid credentials in Authorization header");
      return undefined;
    }
    if (!repo || (repo.spec.private && auth !== `Bearer ${GOOD_TOKEN}`)) {
      fail(res, auth ? 404 : 401, "RepoNotFound", "Repository not found");
      return undefined;
    }
    return repo;
  };

  const commitOf = (repo: FakeRepo, rev: string) =>
    rev === "main" || rev === repo.commit ? repo.commit : repo.spec.refs?.[rev];

  const hub = createServer((req, res) => {
    record("hub", req);
    const url = new URL(req.url ?? "/", "http://x");
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api) {
      const repo = access(req, res, api[1]!);
      if (!repo) return;
      const commit = commitOf(repo, decodeURIComponent(api[2]!));
      if (!commit) return fail(res, 404, "RevisionNotFound", `Invalid rev id: ${decodeURIComponent(api[2]!)}`);
      const blobs = url.searchParams.get("blobs")?.toLowerCase() === "true";
      let json: Record<string, unknown> = {
        id: api[1],
        modelId: api[1],
        sha: commit,
        private: repo.spec.private === true,
        gated: repo.spec.gated ? "manual" : false,
        siblings: [...repo.files].map(([rfilename, f]) =>
          !blobs
            ? { rfilename }
            : f.lfs
              ? { rfilename, size: f.bytes.length, blobId: gitBlobSha1(lfsPointer(f)), lfs: { sha256: f.sha256, size: f.bytes.length, pointerSize: lfsPointer(f).length } }
              : { rfilename, size: f.bytes.length, blobId: f.gitSha1 },
        ),
      };
      if (faults.listing) json = faults.listing(json);
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(json));
    }
    // huggingface_hub >= 1.x snapshot_download lists files with the tree API (one page here).
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (tree) {
      const repo = access(req, res, tree[1]!);
      if (!repo) return;
      if (!commitOf(repo, decodeURIComponent(tree[2]!))) return fail(res, 404, "RevisionNotFound", "Invalid rev id");
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(
        JSON.stringify(
          [...repo.files].map(([path, f]) =>
            f.lfs
              ? { type: "file", path, size: f.bytes.length, oid: gitBlobSha1(lfsPointer(f)), lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: lfsPointer(f).length } }
              : { type: "file", path, size: f.bytes.length, oid: f.gitSha1 },
          ),
        ),
      );
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!resolve) return fail(res, 404, "", "Not found");
    const repo = access(req, res, resolve[1]!);
    if (!repo) return;
    if (repo.spec.gated && req.headers.authorization !== `Bearer ${GOOD_TOKEN}`) {
      return req.headers.authorization
        ? fail(res, 403, "GatedRepo", `Access to model ${resolve[1]} is restricted and you are not in the authorized list.`)
        : fail(res, 401, "GatedRepo", `Access to model ${resolve[1]} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
    }
    const commit = commitOf(repo, decodeURIComponent(resolve[2]!));
    if (!commit) return fail(res, 404, "RevisionNotFound", "Invalid rev id");
    const name = decodeURIComponent(resolve[3]!);
    const f = repo.files.get(name);
    if (!f) return fail(res, 404, "EntryNotFound", `${name} does not exist on "main"`);
    const status = faults.status;
    if (status?.file === name && status.times > 0) {
      status.times--;
      res.writeHead(status.status, { "content-type": "text/html" });
      return res.end("<html><body>Service Unavailable</body></html>");
    }
    if (f.lfs) {
      res.writeHead(302, {
        location: `${cdnOrigin}/blobs/${f.sha256}?filename=${encodeURIComponent(name)}`,
        "x-repo-commit": commit,
        "x-linked-etag": `"${f.sha256}"`,
        "x-linked-size": String(f.bytes.length),
        etag: `"${gitBlobSha1(lfsPointer(f))}"`,
      });
      return res.end();
    }
    serveBytes(req, res, name, f, { "x-repo-commit": commit, etag: `"${f.gitSha1}"` });
  });

  const cdn = createServer((req, res) => {
    record("cdn", req);
    const m = /^\/blobs\/([0-9a-f]{64})/.exec(req.url ?? "");
    const hit = m ? byBlob.get(m[1]!) : undefined;
    if (!hit) {
      res.writeHead(404);
      return res.end();
    }
    serveBytes(req, res, hit.name, hit.file, { etag: `"${hit.file.sha256}"` });
  });

  function serveBytes(req: IncomingMessage, res: ServerResponse, name: string, f: FakeFile, headers: Record<string, string>) {
    const size = f.bytes.length;
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range && !faults.ignoreRange) {
      start = Number(range[1]);
      if (start >= size) {
        res.writeHead(416, { "content-range": `bytes */${size}` });
        return res.end();
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    }
    let body = f.bytes.subarray(start);
    if (faults.corrupt?.file === name) {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)] ^= 0xff;
    }
    res.writeHead(status, { ...headers, "content-length": String(body.length), "accept-ranges": "bytes" });
    const cut = faults.cut;
    if (cut?.file === name && (cutsDone.get(name) ?? 0) < cut.times) {
      cutsDone.set(name, (cutsDone.get(name) ?? 0) + 1);
      res.write(body.subarray(0, cut.afterBytes), () => res.socket?.destroy());
      return;
    }
    const slow = faults.slow;
    if (slow?.file === name) {
      let at = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        res.write(body.subarray(at, at + slow.chunkBytes));
        at += slow.chunkBytes;
        if (at >= body.length) {
          clearInterval(timer);
          res.end();
        }
      }, slow.delayMs);
      res.on("close", () => clearInterval(timer));
      return;
    }
    res.end(body);
  }

  const listen = (s: Server) =>
    new Promise<string>((ok) => s.listen(0, "127.0.0.1", () => ok(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  const endpoint = await listen(hub);
  cdnOrigin = (await listen(cdn)).replace("127.0.0.1", opts.cdnHost ?? "127.0.0.1");
  return {
    endpoint,
    cdnOrigin,
    requests,
    faults,
    repo: (name) => repos.get(name)!,
    downloads: () => requests.filter((r) => r.server === "cdn" || r.path.includes("/resolve/")),
    close: async () => {
      for (const s of [hub, cdn]) {
        s.closeAllConnections();
        await new Promise((ok) => s.close(ok));
      }
    },
  };
}
