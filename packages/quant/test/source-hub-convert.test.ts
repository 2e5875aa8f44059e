// End to end: convert() and inspectModel() from a hub id, served by the local stand-in hub,
// give what they give from the same checkpoint as a local directory.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectModel } from "../src/info.js";
import { convert } from "../src/pipeline.js";
import type { HubEvent } from "../src/source/hub.js";
import { FIXTURES, withTempDir } from "./helpers.js";
import { type FakeHub, readDirFiles, startFakeHub } from "./source-hub-server.js";

let hub: FakeHub;
beforeAll(async () => {
  hub = await startFakeHub({ "test-org/llama-tiny": { files: readDirFiles(join(FIXTURES, "llama-tiny")) } });
});
afterAll(() => hub.close());

describe("a hub id converts like the local directory", () => {
  it("convert() from org/name through the hub writes the same GGUF bytes; info describes it", async () => {
    await withTempDir(async (dir) => {
      const env = { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(dir, "hub"), HF_HOME: join(dir, "home") };
      const events: HubEvent[] = [];
      const common = { precisions: ["Q8_0"], threads: 1 };
      const fromHub = await convert({
        ...common,
        model: "test-org/llama-tiny",
        output: join(dir, "hub-out"),
        hub: { env, onEvent: (e) => events.push(e) },
      });
      const fromDir = await convert({ ...common, model: join(FIXTURES, "llama-tiny"), output: join(dir, "dir-out") });
      expect(fromHub.files.map((f) => f.path.split("/").at(-1))).toEqual(["llama-tiny-q8_0.gguf"]);
      expect(fromHub.files[0]!.sha256).toBe(fromDir.files[0]!.sha256);
      expect(fromHub.sourceBytes).toBe(fromDir.sourceBytes);
      expect(events.some((e) => e.type === "plan")).toBe(true);
      expect(events.at(-1)).toMatchObject({ type: "done", downloadedFiles: 8 });

      const info = await inspectModel("test-org/llama-tiny@main", { hub: { env: { ...env, HF_HUB_OFFLINE: "1" } } });
      const local = await inspectModel(join(FIXTURES, "llama-tiny"));
      expect(info.hub).toEqual({ repo: "test-org/llama-tiny", revision: "main", commit: hub.repo("test-org/llama-tiny").commit });
      expect({ ...info, path: "", hub: undefined }).toEqual({ ...local, path: "", hub: undefined });
    });
  });
});
