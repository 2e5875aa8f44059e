import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Quantizer } from "../src/index.js";
import { FIXTURES, withTempDir } from "./helpers.js";

describe("Quantizer API", () => {
  it("converts llama-tiny to Q4_K_M at llama.cpp's size, with paths and compression", async () => {
    await withTempDir(async (dir) => {
      const q = new Quantizer({ precisions: ["Q4_K_M"], threads: 2 });
      const result = await q.convert({ model: join(FIXTURES, "llama-tiny"), outputDir: join(dir, "a") });
      expect(result.ggufPath).toBe(join(dir, "a", "gguf", "llama-tiny-q4_k_m.gguf"));
      // llama.cpp's own Q4_K_M of this checkpoint is 9,337,344 bytes (fixtures README).
      expect((await stat(result.ggufPath)).size).toBe(9_337_344);
      expect(result.sourceBytes).toBe(16_384_136 + 3_936_712 + 2_363_360);
      expect(result.compressionRatio).toBeCloseTo(result.sourceBytes / 9_337_344, 6);
      expect(result.architecture).toMatchObject({ type: "llama", family: "dense_decoder", paramsTotal: 11_340_032 });
      expect(result.files[0]?.tensorTypes).toEqual({ F32: 10, Q4_K: 24, Q6_K: 5 });
    });
  });
});
