// End to end: the pipeline's quantized GGUFs (convert(), which uses recipes.ts, the pool and
// native quantizeRows) against llama_model_quantize run on the pipeline's own BF16 GGUF of
// the same checkpoint (the intermediate the pipeline quantizes through). Every tensor must
// have the same type and the same bytes.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ggmlTypeName, ggmlTypeTraits } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { readGGUF, type GGUFFile } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { convert } from "../src/pipeline.js";
import { readImatrix } from "../src/quantize/imatrix.js";
import { parseMethod } from "../src/quantize/methods.js";
import { llamaModelQuantize } from "../src/quantize/native.js";
import { tensorBytes, writeSyntheticImatrix } from "./quantize-helpers.js";

const FIXTURES = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "models");

/** Differences between two GGUFs' tensors, matched by name; returns [problems, blocks compared]. */
async function diffTensors(ours: GGUFFile, theirs: GGUFFile): Promise<[string[], number]> {
  const problems: string[] = [];
  let blocks = 0;
  const byName = new Map(ours.tensors.map((t) => [t.name, t]));
  if (ours.tensors.length !== theirs.tensors.length) problems.push(`tensor count ${ours.tensors.length} vs ${theirs.tensors.length}`);
  for (const t of theirs.tensors) {
    const o = byName.get(t.name);
    if (!o) {
      problems.push(`${t.name}: missing from ours`);
      continue;
    }
    if (o.type !== t.type) {
      problems.push(`${t.name}: ours ${ggmlTypeName(o.type)}, llama.cpp ${ggmlTypeName(t.type)}`);
      continue;
    }
    const a = await tensorBytes(ours, o);
    const b = await tensorBytes(theirs, t);
    const bs = ggmlTypeTraits(t.type).typeSize;
    blocks += b.byteLength / bs;
    let bad = 0;
    let first = -1;
    for (let k = 0; k < b.byteLength; k += bs) {
      if (!Buffer.from(a.buffer, a.byteOffset + k, bs).equals(Buffer.from(b.buffer, b.byteOffset + k, bs))) {
        bad++;
        if (first < 0) first = k / bs;
      }
    }
    if (bad > 0 || a.byteLength !== b.byteLength) problems.push(`${t.name} (${ggmlTypeName(t.type)}): ${bad} blocks differ, first #${first}`);
  }
  return [problems, blocks];
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-quantize-pipeline-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// quantize-differential.test.ts covers every method; here a spread of them checks the wiring
// (intermediate type, tensor plan, pool, imatrix routing) on all three fixtures.
describe.each([
  { fixture: "llama-tiny", methods: ["Q4_0", "Q5_1", "Q2_K", "Q3_K_M", "IQ3_M", "IQ4_XS", "Q4_K_M", "Q5_K_S", "Q6_K", "Q8_0"] },
  { fixture: "mixtral-tiny", methods: ["Q3_K_M", "Q4_K_M", "IQ4_NL"] },
  { fixture: "qwen3-tiny", methods: ["Q4_K_M", "Q6_K"] },
])("convert() vs llama_model_quantize: $fixture", ({ fixture, methods }) => {
  let bf16: string;
  const outputs = new Map<string, string>();
  beforeAll(async () => {
    const r = await convert({ model: join(FIXTURES, fixture), output: join(dir, fixture), precisions: ["bf16", ...methods], threads: 2, force: true });
    for (const f of r.files) outputs.set(f.method, f.path);
    bf16 = outputs.get("BF16")!;
  }, 300_000);

  it.each(methods)("%s", async (method) => {
    const ref = join(dir, `${fixture}-${method}-ref.gguf`);
    await llamaModelQuantize({ input: bf16, output: ref, ftype: parseMethod(method).ftype, nThread: 2 });
    const [problems, blocks] = await diffTensors(await readGGUF(outputs.get(method)!), await readGGUF(ref));
    await rm(ref);
    expect(problems).toEqual([]);
    expect(blocks).toBeGreaterThan(0);
  });
});

describe("convert() with an importance matrix vs llama_model_quantize (synthetic importance values)", () => {
  it.each(["IQ2_XS", "Q4_K_M"])("llama-tiny %s", async (method) => {
    const base = await convert({ model: join(FIXTURES, "llama-tiny"), output: join(dir, `im-base-${method}`), precisions: ["bf16"], threads: 2, force: true });
    const bf16 = base.files[0]!.path;
    const imPath = join(dir, `im-${method}.gguf`);
    await writeSyntheticImatrix(imPath, await readGGUF(bf16));
    const r = await convert({ model: join(FIXTURES, "llama-tiny"), output: join(dir, `im-${method}`), precisions: [method], imatrixPath: imPath, threads: 2, force: true });
    const ref = join(dir, `im-${method}-ref.gguf`);
    await llamaModelQuantize({ input: bf16, output: ref, ftype: parseMethod(method).ftype, nThread: 2, imatrix: await readImatrix(imPath) });
    const [problems] = await diffTensors(await readGGUF(r.files[0]!.path), await readGGUF(ref));
    expect(problems).toEqual([]);
  });
});

// Real importance matrices, made by llama.cpp's own tool on our F16 GGUFs (kept in
// test/reference; see its README):
//   llama-imatrix -m MODEL-f16.gguf -f shared/fixtures/text/calib.txt -c 512 --chunks 32 -o MODEL.imatrix.gguf -t 2
const REFERENCE = join(import.meta.dirname, "reference");
describe.each([
  { fixture: "llama-tiny", methods: ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "Q4_K_M"] },
  { fixture: "mixtral-tiny", methods: ["IQ2_XXS", "IQ3_XXS"] },
])("convert() --imatrix (llama-imatrix output) vs llama_model_quantize: $fixture", ({ fixture, methods }) => {
  const imPath = join(REFERENCE, `${fixture}.imatrix.gguf`);
  let bf16: string;
  const outputs = new Map<string, string>();
  beforeAll(async () => {
    const r = await convert({
      model: join(FIXTURES, fixture),
      output: join(dir, `imat-${fixture}`),
      precisions: ["bf16", ...methods],
      imatrixPath: imPath,
      threads: 2,
      force: true,
    });
    for (const f of r.files) outputs.set(f.method, f.path);
    bf16 = outputs.get("BF16")!;
  }, 300_000);

  it.each(methods)("%s", async (method) => {
    const imatrix = await readImatrix(imPath);
    // Every expert of every MoE layer was routed to during calibration: no all-zero slice.
    for (const [name, v] of imatrix) {
      if (!name.includes("_exps.")) continue;
      const nPerExpert = name.includes("ffn_down") ? 512 : 256;
      for (let e = 0; e < v.length / nPerExpert; e++) {
        expect(v.subarray(e * nPerExpert, (e + 1) * nPerExpert).some((x) => x > 0), `${name} expert ${e}`).toBe(true);
      }
    }
    const ref = join(dir, `imat-${fixture}-${method}-ref.gguf`);
    await llamaModelQuantize({ input: bf16, output: ref, ftype: parseMethod(method).ftype, nThread: 2, imatrix });
    const [problems, blocks] = await diffTensors(await readGGUF(outputs.get(method)!), await readGGUF(ref));
    await rm(ref);
    expect(problems).toEqual([]);
    expect(blocks).toBeGreaterThan(0);
  });
});
