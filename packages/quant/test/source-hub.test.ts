// Hub downloads against a local stand-in hub (source-hub-server.ts) on 127.0.0.1: the cache
// layout huggingface_hub writes, no second download, resume after a cut, verification,
// gated/private/missing repos, offline mode and an unreachable hub.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PajamasError } from "@llama-pajamas/artifact";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type HubEvent, type HubOptions, resolveHubModel } from "../src/source/hub.js";
import { parseHubId } from "../src/source/hub-id.js";
import { FIXTURES } from "./helpers.js";
import { type FakeHub, GOOD_TOKEN, readDirFiles, sha256, startFakeHub } from "./source-hub-server.js";

const MiB = 1024 * 1024;
const LLAMA = "test-org/llama-tiny";
const SMALL = "test-org/small";
const llamaFiles = readDirFiles(join(FIXTURES, "llama-tiny"));
const config = llamaFiles["config.json"]!;
const smallFiles = {
  "config.json": config,
  "tokenizer.json": Buffer.from('{"model":{"type":"BPE","vocab":{}}}\n'),
  "tokenizer_config.json": Buffer.from("{}\n"),
  "model.safetensors": randomBytes(3 * MiB),
  "README.md": Buffer.from("# small\n"),
};

let hub: FakeHub;
let cache: string;
let events: HubEvent[];

beforeAll(async () => {
  hub = await startFakeHub({
    [LLAMA]: {
      files: {
        ...llamaFiles,
        // Files a conversion does not read: never downloaded.
        "README.md": Buffer.from("# llama-tiny\n"),
        "pytorch_model.bin": randomBytes(1024),
        "consolidated.safetensors": randomBytes(1024),
      },
    },
    [SMALL]: { files: smallFiles, refs: { v1: "" } },
    "test-org/gated": { files: smallFiles, gated: true },
    "test-org/private": { files: smallFiles, private: true },
    "test-org/bin-only": { files: { "config.json": config, "pytorch_model.bin": randomBytes(1024) } },
  });
});
afterAll(() => hub.close());

beforeEach(async () => {
  cache = await mkdtemp(join(tmpdir(), "lp-hub-"));
  hub.requests.length = 0;
  for (const k of Object.keys(hub.faults)) delete hub.faults[k as keyof typeof hub.faults];
  events = [];
});
afterEach(() => rm(cache, { recursive: true, force: true }));

function options(env: Record<string, string> = {}): HubOptions {
  return {
    env: { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(cache, "hub"), HF_HOME: join(cache, "home"), ...env },
    onEvent: (e) => events.push(e),
    retryDelayMs: 5,
  };
}

const fetchModel = (spec: string, env?: Record<string, string>) => resolveHubModel(parseHubId(spec)!, options(env));

async function failure(p: Promise<unknown>): Promise<PajamasError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PajamasError);
  return e as PajamasError;
}

const repoRoot = (repo: string) => join(cache, "hub", `models--${repo.replace("/", "--")}`);
const blobsIn = (repo: string) => readdirSync(join(repoRoot(repo), "blobs")).sort();

describe("hub download into the huggingface_hub cache layout", () => {
  it("a fresh download writes blobs named by hash, relative snapshot links and refs/main, needed files only", async () => {
    const snap = await fetchModel(LLAMA);
    const { commit, files } = hub.repo(LLAMA);
    const root = repoRoot(LLAMA);
    expect(snap.commit).toBe(commit);
    expect(snap.dir).toBe(join(root, "snapshots", commit));
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(commit);
    expect(existsSync(join(cache, "hub", "CACHEDIR.TAG"))).toBe(true);

    const wanted = Object.keys(llamaFiles).sort();
    expect(readdirSync(snap.dir).sort()).toEqual(wanted); // no README.md, pytorch_model.bin, consolidated.safetensors
    const etags: string[] = [];
    for (const name of wanted) {
      const f = files.get(name)!;
      const etag = f.lfs ? f.sha256 : f.gitSha1;
      etags.push(etag);
      const link = join(snap.dir, name);
      expect(lstatSync(link).isSymbolicLink(), name).toBe(true);
      expect(readlinkSync(link), name).toBe(`../../blobs/${etag}`);
      expect(sha256(readFileSync(link)), name).toBe(sha256(llamaFiles[name]!));
    }
    expect(blobsIn(LLAMA)).toEqual([...new Set(etags)].sort()); // no .incomplete left
    // LFS blobs are named by the content's sha256; regular files by git's blob id, as `git hash-object` computes it.
    const shard = files.get("model-00001-of-00003.safetensors")!;
    expect(shard.lfs).toBe(true);
    expect(sha256(readFileSync(join(root, "blobs", shard.sha256)))).toBe(shard.sha256);
    const gitId = spawnSync("git", ["hash-object", join(FIXTURES, "llama-tiny", "config.json")], { encoding: "utf8" }).stdout.trim();
    expect(blobsIn(LLAMA)).toContain(gitId);

    // One file list, then one request per file (LFS: the hub's 302, then the CDN).
    const lfsCount = wanted.filter((n) => files.get(n)!.lfs).length;
    expect(hub.requests.filter((r) => r.path.startsWith("/api/"))).toHaveLength(1);
    expect(hub.downloads()).toHaveLength(wanted.length + lfsCount);
    const plan = events.find((e) => e.type === "plan");
    expect(plan).toMatchObject({ files: wanted.length, cachedFiles: 0 });
    if (plan?.type === "plan") expect(plan.downloads.map((d) => d.file).sort()).toEqual(wanted);
    const last = events.filter((e) => e.type === "progress").at(-1);
    expect(last).toMatchObject({ filesDone: wanted.length, filesTotal: wanted.length });
    if (last?.type === "progress") expect(last.bytesDone).toBe(last.bytesTotal);
    const total = wanted.reduce((sum, n) => sum + llamaFiles[n]!.length, 0);
    expect(events.at(-1)).toMatchObject({ type: "done", downloadedFiles: wanted.length, downloadedBytes: total });
    expect(snap.downloadedFiles.sort()).toEqual(wanted);

    // Second run: the file list only, no file downloaded.
    hub.requests.length = 0;
    events = [];
    const again = await fetchModel(LLAMA);
    expect(again.dir).toBe(snap.dir);
    expect(hub.requests.map((r) => r.path)).toEqual([`/api/models/${LLAMA}/revision/main?blobs=true`]);
    expect(events.find((e) => e.type === "plan")).toMatchObject({ cachedFiles: wanted.length, downloads: [] });

    // By commit hash: same snapshot, no refs/<commit> written.
    const byCommit = await fetchModel(`${LLAMA}@${commit}`);
    expect(byCommit.dir).toBe(snap.dir);
    expect(readdirSync(join(root, "refs"))).toEqual(["main"]);
    expect(hub.downloads()).toHaveLength(0);
  });

  it("a connection cut mid-file resumes with Range in the same run", async () => {
    hub.faults.cut = { file: "model.safetensors", afterBytes: MiB, times: 1 };
    const snap = await fetchModel(SMALL);
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    expect(cdn).toHaveLength(2);
    expect(cdn[0]!.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1]!.range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(MiB);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
    expect(blobsIn(SMALL)).toContain(f.sha256);
    expect(blobsIn(SMALL).filter((b) => b.endsWith(".incomplete"))).toEqual([]);
    expect(events.find((e) => e.type === "retry")).toMatchObject({ file: "model.safetensors", attempt: 2 });
  });

  it("a partial file left by an earlier run is resumed, not downloaded again", async () => {
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    mkdirSync(join(repoRoot(SMALL), "blobs"), { recursive: true });
    writeFileSync(join(repoRoot(SMALL), "blobs", `${f.sha256}.incomplete`), f.bytes.subarray(0, 2 * MiB));
    const snap = await fetchModel(SMALL);
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    expect(cdn.map((r) => r.range)).toEqual([`bytes=${2 * MiB}-`]);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
    expect(events.find((e) => e.type === "plan")).toMatchObject({ bytesDone: 2 * MiB, resumedBytes: 2 * MiB });
  });

  it("an interrupted download (abort signal) keeps its partial file, and the next run resumes it", async () => {
    hub.faults.slow = { file: "model.safetensors", chunkBytes: 128 * 1024, delayMs: 20 };
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    const abort = new AbortController();
    const opts = options();
    const interrupted = resolveHubModel(parseHubId(SMALL)!, {
      ...opts,
      signal: abort.signal,
      onEvent: (e) => {
        if (e.type === "progress" && e.bytesDone >= MiB) abort.abort();
      },
    });
    const e = await failure(interrupted);
    expect(e.code).toBe("E_INTERRUPTED");
    expect(e.message).toMatch(/^download interrupted; partial files stay in .* and resume on the next run$/);
    const partial = join(repoRoot(SMALL), "blobs", `${f.sha256}.incomplete`);
    const kept = lstatSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(f.bytes.length);

    delete hub.faults.slow;
    hub.requests.length = 0;
    const snap = await fetchModel(SMALL);
    expect(hub.requests.filter((r) => r.server === "cdn").map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
  });

  it("a server that ignores Range sends the whole file again, and that is fine", async () => {
    hub.faults.ignoreRange = true;
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    mkdirSync(join(repoRoot(SMALL), "blobs"), { recursive: true });
    writeFileSync(join(repoRoot(SMALL), "blobs", `${f.sha256}.incomplete`), f.bytes.subarray(0, MiB));
    const snap = await fetchModel(SMALL);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
  });

  it("a partial file that is not a prefix of the blob is thrown away and fetched whole", async () => {
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    mkdirSync(join(repoRoot(SMALL), "blobs"), { recursive: true });
    writeFileSync(join(repoRoot(SMALL), "blobs", `${f.sha256}.incomplete`), randomBytes(MiB));
    const snap = await fetchModel(SMALL);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
    expect(hub.requests.filter((r) => r.server === "cdn").map((r) => r.range)).toEqual([`bytes=${MiB}-`, undefined]);
  });

  it("gives up after 5 tries without progress, keeping what it has for the next run", async () => {
    hub.faults.cut = { file: "model.safetensors", afterBytes: 0, times: 100 };
    const e = await failure(fetchModel(SMALL));
    expect(e.code).toBe("E_NETWORK");
    expect(e.message).toMatch(/model\.safetensors of test-org\/small failed 5 times in a row .* the next run resumes/);
    expect(hub.requests.filter((r) => r.server === "cdn")).toHaveLength(5);
  });

  it("corrupted bytes are rejected: no blob, no partial file, no snapshot link", async () => {
    hub.faults.corrupt = { file: "model.safetensors" };
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    const e = await failure(fetchModel(SMALL));
    expect(e.code).toBe("E_HUB_CHECKSUM");
    expect(e.message).toContain(`model.safetensors of ${SMALL}@`);
    expect(e.message).toContain(`expected ${f.sha256}`);
    expect(e.message).toContain("nothing entered the cache");
    expect(blobsIn(SMALL).filter((b) => b.startsWith(f.sha256))).toEqual([]);
    expect(existsSync(join(repoRoot(SMALL), "snapshots", hub.repo(SMALL).commit, "model.safetensors"))).toBe(false);

    // A regular file is checked too, by its git blob id.
    rmSync(join(cache, "hub"), { recursive: true });
    hub.faults.corrupt = { file: "tokenizer.json" };
    const e2 = await failure(fetchModel(SMALL));
    expect(e2.code).toBe("E_HUB_CHECKSUM");
    expect(e2.message).toContain(`expected ${hub.repo(SMALL).files.get("tokenizer.json")!.gitSha1}`);
  });

  it("a good blob in the cache is never replaced: a corrupting server is not even asked", async () => {
    const snap = await fetchModel(SMALL);
    const f = hub.repo(SMALL).files.get("model.safetensors")!;
    hub.faults.corrupt = { file: "model.safetensors" };
    rmSync(join(snap.dir, "model.safetensors")); // the link is gone, the blob is not
    hub.requests.length = 0;
    await fetchModel(SMALL);
    expect(hub.downloads()).toHaveLength(0);
    expect(sha256(readFileSync(join(snap.dir, "model.safetensors")))).toBe(f.sha256);
  });

  it("refuses before downloading what the disk cannot hold", async () => {
    hub.faults.listing = (json) => {
      for (const s of json.siblings as { rfilename: string; size: number; lfs?: { size: number } }[]) {
        if (s.rfilename === "model.safetensors") s.size = s.lfs!.size = 2 ** 52;
      }
      return json;
    };
    const e = await failure(fetchModel(SMALL));
    expect(e.code).toBe("E_DISK_FULL");
    expect(e.message).toMatch(/^not enough disk space to download test-org\/small: .* MiB needed, .* MiB free in .*; free space or set HF_HUB_CACHE/);
    expect(hub.downloads()).toHaveLength(0);
  });
});

describe("hub errors say what failed and what to do", () => {
  it("gated: 401 without a token, 403 with a token that has no access; a token with access works", async () => {
    const e = await failure(fetchModel("test-org/gated"));
    expect(e.code).toBe("E_HUB_GATED");
    expect(e.message).toMatch(/^test-org\/gated is a gated model and no Hugging Face token was found \(HTTP 401 for /);
    expect(e.message).toContain(`log in at ${hub.endpoint}/test-org/gated and accept its conditions`);
    expect(e.message).toContain(`${hub.endpoint}/settings/tokens, then set HF_TOKEN`);

    const e2 = await failure(fetchModel("test-org/gated", { HF_TOKEN: "hf_no_access" }));
    expect(e2.code).toBe("E_HUB_GATED");
    expect(e2.message).toMatch(/^test-org\/gated is a gated model and the token from HF_TOKEN has no access to it \(HTTP 403 /);

    // The token file huggingface_hub writes (HF_HOME/token) is read too.
    mkdirSync(join(cache, "home"), { recursive: true });
    writeFileSync(join(cache, "home", "token"), `${GOOD_TOKEN}\n`);
    hub.requests.length = 0;
    const snap = await fetchModel("test-org/gated");
    expect(readdirSync(snap.dir).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    // The token goes to the hub, never to the CDN an LFS file redirects to.
    expect(hub.requests.filter((r) => r.server === "hub").every((r) => r.authorization === `Bearer ${GOOD_TOKEN}`)).toBe(true);
    expect(hub.requests.filter((r) => r.server === "cdn").length).toBeGreaterThan(0);
    expect(hub.requests.filter((r) => r.server === "cdn").every((r) => r.authorization === undefined)).toBe(true);
  });

  it("private or missing repo, missing revision", async () => {
    const e = await failure(fetchModel("test-org/private"));
    expect(e.code).toBe("E_HUB_NOT_FOUND");
    expect(e.message).toMatch(/^model repository test-org\/private not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\): check the spelling .*if it is private or gated, set HF_TOKEN/);
    expect((await fetchModel("test-org/private", { HF_TOKEN: GOOD_TOKEN })).commit).toBe(hub.repo("test-org/private").commit);

    const e2 = await failure(fetchModel("test-org/nope", { HF_TOKEN: GOOD_TOKEN }));
    expect(e2.code).toBe("E_HUB_NOT_FOUND");
    expect(e2.message).toMatch(/not found on .* \(HTTP 404\).*the token from HF_TOKEN was sent and cannot see it/);

    const e3 = await failure(fetchModel(`${SMALL}@no-such-branch`));
    expect(e3.code).toBe("E_HUB_REVISION_NOT_FOUND");
    expect(e3.message).toMatch(/^revision "no-such-branch" not found in test-org\/small \(HTTP 404\): use an existing branch, tag or full commit hash/);
  });

  it("a token the hub rejects says so", async () => {
    const e = await failure(fetchModel(SMALL, { HF_TOKEN: "hf_invalid_or_expired" }));
    expect(e.code).toBe("E_HUB_AUTH");
    expect(e.message).toMatch(/^the Hugging Face token from HF_TOKEN was rejected by .* \(HTTP 401 for the file list of test-org\/small@main\): it may be mistyped, expired or revoked; create a new one at .*\/settings\/tokens/);
  });

  it("a 503 is retried; a cache path that is a file is an output error", async () => {
    hub.faults.status = { file: "config.json", status: 503, times: 1 };
    await fetchModel(SMALL);
    expect(events.find((e) => e.type === "retry")).toMatchObject({ file: "config.json", reason: expect.stringMatching(/HTTP 503/) });

    writeFileSync(join(cache, "a-file"), "");
    const e = await failure(fetchModel(SMALL, { HF_HUB_CACHE: join(cache, "a-file") }));
    expect(e.code).toBe("E_OUTPUT");
    expect(e.message).toMatch(/^cannot write to the Hugging Face cache .*a-file \(ENOTDIR.*\); check the disk/);
  });

  it("a repo without safetensors weights is refused before any download", async () => {
    const e = await failure(fetchModel("test-org/bin-only"));
    expect(e.code).toBe("E_NOT_A_MODEL");
    expect(e.message).toBe("test-org/bin-only@main has no *.safetensors weights (it has pytorch_model.bin; only safetensors checkpoints are supported)");
    expect(hub.downloads()).toHaveLength(0);
  });
});

describe("offline and unreachable", () => {
  it("HF_HUB_OFFLINE=1 uses the cache without a request, and says what is missing", async () => {
    const online = await fetchModel(LLAMA);
    hub.requests.length = 0;
    const offline = await fetchModel(LLAMA, { HF_HUB_OFFLINE: "1" });
    expect(offline).toMatchObject({ dir: online.dir, commit: online.commit, source: "cache" });
    expect(hub.requests).toHaveLength(0);
    expect(events.at(-1)).toMatchObject({ type: "cached", why: "offline" });

    rmSync(join(online.dir, "model-00002-of-00003.safetensors"));
    const e = await failure(fetchModel(LLAMA, { HF_HUB_OFFLINE: "1" }));
    expect(e.code).toBe("E_OFFLINE_MISSING");
    expect(e.message).toMatch(/^HF_HUB_OFFLINE is set and the cached snapshot [0-9a-f]{12} of test-org\/llama-tiny@main \(.*\) lacks model-00002-of-00003\.safetensors; run once without HF_HUB_OFFLINE/);

    const e2 = await failure(fetchModel(`${LLAMA}@v2`, { HF_HUB_OFFLINE: "1" }));
    expect(e2.message).toContain(`has ${LLAMA} but no refs/v2`);
    expect(e2.message).toContain(`cached snapshots: ${online.commit}; pass ${LLAMA}@<commit> to use one`);

    const e3 = await failure(fetchModel(SMALL, { HF_HUB_OFFLINE: "1" }));
    expect(e3.message).toBe(
      `HF_HUB_OFFLINE is set and the cache ${join(cache, "hub")} has no copy of ${SMALL}; run once without HF_HUB_OFFLINE ` +
        `to download it, or set HF_HUB_CACHE to a cache that has it`,
    );
    expect(hub.requests).toHaveLength(0);
  });

  it("offline, the file list huggingface_hub >= 2 saves (trees/<commit>.json) says exactly what is missing", async () => {
    const online = await fetchModel(SMALL);
    const { commit, files } = hub.repo(SMALL);
    const entry = (name: string) => {
      const f = files.get(name)!;
      return f.lfs
        ? { size: f.bytes.length, blob_id: "0".repeat(40), lfs_sha256: f.sha256, lfs_size: f.bytes.length }
        : { size: f.bytes.length, blob_id: f.gitSha1 };
    };
    // As Python writes it: every file of the commit, including one this snapshot lacks.
    const tree = Object.fromEntries([...files.keys()].map((n) => [n, entry(n)]));
    tree["special_tokens_map.json"] = { size: 2, blob_id: "1".repeat(40) };
    mkdirSync(join(repoRoot(SMALL), "trees"));
    writeFileSync(join(repoRoot(SMALL), "trees", `${commit}.json`), JSON.stringify({ format_version: 1, files: tree }, null, 1));
    const e = await failure(fetchModel(SMALL, { HF_HUB_OFFLINE: "1" }));
    expect(e.message).toMatch(/lacks special_tokens_map\.json; run once without HF_HUB_OFFLINE/);
    delete tree["special_tokens_map.json"];
    writeFileSync(join(repoRoot(SMALL), "trees", `${commit}.json`), JSON.stringify({ format_version: 1, files: tree }, null, 1));
    expect((await fetchModel(SMALL, { HF_HUB_OFFLINE: "1" })).dir).toBe(online.dir);
  });

  it("an unreachable hub falls back to a complete cached snapshot, and otherwise says it cannot reach it", async () => {
    const port = await closedPort();
    const down = { HF_ENDPOINT: `http://127.0.0.1:${port}` };
    const e = await failure(fetchModel(SMALL, down));
    expect(e.code).toBe("E_NETWORK");
    expect(e.message).toMatch(/^cannot reach http:\/\/127\.0\.0\.1:\d+ for test-org\/small@main \(.*ECONNREFUSED.*\), and the cache .* has no copy of test-org\/small; check the network or proxy/);

    const online = await fetchModel(SMALL);
    events = [];
    const fallback = await fetchModel(SMALL, down);
    expect(fallback).toMatchObject({ dir: online.dir, source: "cache" });
    expect(events.at(-1)).toMatchObject({ type: "cached", why: "unreachable" });
  });
});

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
}
