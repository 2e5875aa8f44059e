// The cheap part: option checking and statistics, no native code.
import { UsageError } from "@llama-pajamas/artifact";
import { describe, expect, it } from "vitest";
import { meanStddev } from "../src/benchmark.js";
import { BACKEND_NAMES, parseBackend, resolveSampling } from "../src/config.js";

describe("resolveSampling", () => {
  it("fills llama.cpp's defaults", () => {
    expect(resolveSampling()).toEqual({
      maxTokens: 256,
      temperature: 0.8,
      topP: 0.95,
      topK: 40,
      minP: 0.05,
      repeatPenalty: 1,
      repeatLastN: 64,
      seed: undefined,
      stop: [],
    });
  });

  it.each([
    [{ maxTokens: 0 }, "maxTokens must be an integer >= 1, got 0"],
    [{ maxTokens: 2.5 }, "maxTokens must be an integer >= 1, got 2.5"],
    [{ temperature: -1 }, "temperature must be >= 0, got -1"],
    [{ topP: 0 }, "topP must be in (0, 1], got 0"],
    [{ topK: -1 }, "topK must be an integer >= 0, got -1"],
    [{ minP: 2 }, "minP must be in [0, 1], got 2"],
    [{ repeatPenalty: 0 }, "repeatPenalty must be > 0, got 0"],
    [{ seed: -3 }, "seed must be an integer >= 0, got -3"],
    [{ temperature: Number.NaN }, "temperature must be >= 0, got null"],
    [{ stop: [""] }, 'stop must be an array of non-empty strings, got [""]'],
  ])("refuses %j", (config, message) => {
    expect(() => resolveSampling(config)).toThrow(UsageError);
    expect(() => resolveSampling(config)).toThrow(message);
  });
});

describe("parseBackend", () => {
  it("accepts the documented names and lists them when refusing", () => {
    for (const b of BACKEND_NAMES) expect(parseBackend(b)).toBe(b);
    expect(() => parseBackend("rocm")).toThrow('unknown backend "rocm"; backends: auto, cpu, cuda, vulkan, metal, mlx');
  });
});

describe("meanStddev", () => {
  it("gives the mean and the sample standard deviation, as llama-bench's avg_ts and stdev_ts", () => {
    expect(meanStddev([])).toEqual({ mean: 0, stddev: 0 });
    expect(meanStddev([5])).toEqual({ mean: 5, stddev: 0 });
    const { mean, stddev } = meanStddev([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(mean).toBe(5);
    expect(stddev).toBeCloseTo(Math.sqrt(32 / 7), 12);
  });
});
