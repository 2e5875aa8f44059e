import { describe, expect, it } from "vitest";
import {
  checkRequirement,
  formatParamCount,
  ManifestError,
  parseManifest,
  satisfies,
  VersionMismatchError,
} from "../src/index.js";

const good = {
  schema_version: 1,
  model_id: "Qwen/Qwen3-8B",
  quantized_at: "2025-01-15T10:30:00Z",
  pipeline_version: "0.1.0",
  architecture: { family: "dense_decoder", type: "qwen3", params_total: "8.2B", params_non_embedding: "6.95B" },
  formats: [{ type: "gguf", path: "gguf/qwen3-8b-q4_k_m.gguf", method: "Q4_K_M", size_mb: 1847, compression: "8.9x" }],
  runtime_requirements: { "llama-pajamas-run": ">=0.1.0,<1.0.0" },
  format_versions: { gguf: "3" },
};

describe("manifest", () => {
  it("parses the seed's example", () => {
    const m = parseManifest(good);
    expect(m.formats[0]?.path).toBe("gguf/qwen3-8b-q4_k_m.gguf");
    expect(m.architecture.family).toBe("dense_decoder");
    expect(m.runtime_requirements["llama-pajamas-run"]).toBe(">=0.1.0,<1.0.0");
  });

  it.each([
    ["../outside.gguf"],
    ["/etc/passwd"],
    ["gguf/../../x.gguf"],
    ["C:/models/x.gguf"],
  ])("refuses a format path outside the artifact dir: %s", (path) => {
    const bad = { ...good, formats: [{ ...good.formats[0], path }] };
    expect(() => parseManifest(bad)).toThrow(/outside the artifact directory/);
  });

  it("names the field that is wrong", () => {
    const bad = { ...good, architecture: { ...good.architecture, family: "rnn" } };
    expect(() => parseManifest(bad)).toThrow(ManifestError);
    expect(() => parseManifest(bad)).toThrow(/architecture\.family.*"rnn"/);
    expect(() => parseManifest({ ...good, formats: [] })).toThrow(/formats.*non-empty array/);
    expect(() => parseManifest({ ...good, schema_version: 99 })).toThrow(/newer than this reader/);
  });
});

describe("version ranges", () => {
  it("accepts Python-style comma ranges", () => {
    expect(satisfies("0.1.0", ">=0.1.0,<1.0.0")).toBe(true);
    expect(satisfies("1.0.0", ">=0.1.0,<1.0.0")).toBe(false);
    expect(satisfies("0.0.9", ">=0.1.0")).toBe(false);
  });

  it("says both versions when they do not match", () => {
    expect(() => checkRequirement("llama-pajamas-run", "0.1.0", ">=0.2.0")).toThrow(VersionMismatchError);
    expect(() => checkRequirement("llama-pajamas-run", "0.1.0", ">=0.2.0")).toThrow(
      /needs llama-pajamas-run >=0.2.0, but llama-pajamas-run is 0.1.0/,
    );
    expect(() => checkRequirement("x", "0.1.0", "not a range")).toThrow(/not a valid version range/);
  });
});

describe("param counts", () => {
  it("formats like llama.cpp's size labels", () => {
    expect(formatParamCount(42_044_160)).toBe("42M");
    expect(formatParamCount(8_190_735_360)).toBe("8.2B");
    expect(formatParamCount(11_340_032)).toBe("11M");
    expect(formatParamCount(950)).toBe("950");
  });
});
