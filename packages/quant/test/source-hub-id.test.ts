// Hub ids and the HF_* environment, read as huggingface_hub reads them.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseHubId } from "../src/source/hub-id.js";
import { hubSettingsFromEnv } from "../src/source/hub-settings.js";
import { resolveModel } from "../src/source/index.js";

describe("parseHubId", () => {
  it("reads org/name and org/name@revision", () => {
    expect(parseHubId("meta-llama/Llama-3.2-1B")).toEqual({ repo: "meta-llama/Llama-3.2-1B", revision: "main" });
    expect(parseHubId("Qwen/Qwen3-0.6B@v1.0")).toEqual({ repo: "Qwen/Qwen3-0.6B", revision: "v1.0" });
    expect(parseHubId("org/name@refs/pr/12")).toEqual({ repo: "org/name", revision: "refs/pr/12" });
    const commit = "0123456789abcdef0123456789abcdef01234567";
    expect(parseHubId(`org/name@${commit}`)).toEqual({ repo: "org/name", revision: commit });
  });

  it("leaves paths and malformed ids to the local reader", () => {
    for (const s of ["./org/name", "/abs/dir", "a/b/c", "gpt2", "org/", "/name", "org--x/name", "org/na..me", "-org/name", "org/name.git", "org/na me"]) {
      expect(parseHubId(s), s).toBeUndefined();
    }
  });

  it("refuses revisions that would escape refs/ or are empty", () => {
    for (const s of ["org/name@", "org/name@../../x", "org/name@a//b", "org/name@a b"]) {
      expect(() => parseHubId(s), s).toThrow(/invalid revision/);
    }
  });
});

describe("hubSettingsFromEnv", () => {
  it("defaults to ~/.cache/huggingface/hub and huggingface.co, online, no token", () => {
    const home = mkdtempSync(join(tmpdir(), "lp-hf-"));
    try {
      const s = hubSettingsFromEnv({ HF_HOME: home });
      expect(s.cacheDir).toBe(join(home, "hub"));
      expect(s.endpoint).toBe("https://huggingface.co");
      expect(s.offline).toBe(false);
      expect(s.token).toBeUndefined();
      expect(hubSettingsFromEnv({}).cacheDir).toBe(join(homedir(), ".cache", "huggingface", "hub"));
      expect(hubSettingsFromEnv({ XDG_CACHE_HOME: "/x" }).cacheDir).toBe("/x/huggingface/hub");
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("HF_HUB_CACHE beats HUGGINGFACE_HUB_CACHE beats HF_HOME; HF_ENDPOINT loses its trailing slash", () => {
    expect(hubSettingsFromEnv({ HF_HOME: "/h", HUGGINGFACE_HUB_CACHE: "/legacy", HF_HUB_CACHE: "/c" }).cacheDir).toBe("/c");
    expect(hubSettingsFromEnv({ HF_HOME: "/h", HUGGINGFACE_HUB_CACHE: "/legacy" }).cacheDir).toBe("/legacy");
    expect(hubSettingsFromEnv({ HF_HUB_CACHE: "~/hfc" }).cacheDir).toBe(join(homedir(), "hfc"));
    expect(hubSettingsFromEnv({ HF_ENDPOINT: "https://mirror.example/" }).endpoint).toBe("https://mirror.example");
  });

  it("HF_HUB_OFFLINE takes 1/ON/YES/TRUE in any case; TRANSFORMERS_OFFLINE too", () => {
    for (const v of ["1", "on", "YES", "true"]) expect(hubSettingsFromEnv({ HF_HUB_OFFLINE: v }).offline, v).toBe(true);
    for (const v of ["0", "", "no", "false"]) expect(hubSettingsFromEnv({ HF_HUB_OFFLINE: v }).offline, v).toBe(false);
    expect(hubSettingsFromEnv({ TRANSFORMERS_OFFLINE: "1" }).offline).toBe(true);
  });

  it("token: HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then HF_TOKEN_PATH or HF_HOME/token", () => {
    const home = mkdtempSync(join(tmpdir(), "lp-hf-"));
    try {
      writeFileSync(join(home, "token"), "hf_from_file\n");
      writeFileSync(join(home, "other"), "  hf_other  ");
      expect(hubSettingsFromEnv({ HF_HOME: home, HF_TOKEN: "hf_env" })).toMatchObject({ token: "hf_env", tokenSource: "HF_TOKEN" });
      expect(hubSettingsFromEnv({ HF_HOME: home, HUGGING_FACE_HUB_TOKEN: "hf_old" }).token).toBe("hf_old");
      expect(hubSettingsFromEnv({ HF_HOME: home })).toMatchObject({ token: "hf_from_file", tokenSource: `token file ${join(home, "token")}` });
      expect(hubSettingsFromEnv({ HF_HOME: home, HF_TOKEN_PATH: join(home, "other") }).token).toBe("hf_other");
      expect(hubSettingsFromEnv({ HF_HOME: home, HF_TOKEN: " " }).token).toBe("hf_from_file");
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("resolveModel", () => {
  it("an existing local path wins over the hub id it looks like; other paths stay local", async () => {
    // Tests run from the repo root, where packages/quant is a directory shaped like org/name.
    const r = await resolveModel("packages/quant", { env: { HF_ENDPOINT: "http://127.0.0.1:9", HF_HUB_OFFLINE: "1" } });
    expect(r.hub).toBeUndefined();
    expect(r.dir).toBe(join(process.cwd(), "packages/quant"));
    expect((await resolveModel("./no/such/dir")).hub).toBeUndefined();
  });
});
