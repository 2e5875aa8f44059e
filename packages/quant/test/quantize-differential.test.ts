// Differential test of the GGUF quantization path against llama.cpp itself: an F16/BF16 GGUF
// of a fixture goes through libllama's llama_model_quantize for each method; for every tensor
// of the result, recipes.ts must pick the same type and native quantizeRows (on the same F32
// data: widening F16/BF16 is exact) must give the same bytes. Reports, per method, the
// tensors and blocks compared and any mismatching tensor with its mismatching block count and
// first mismatching block.
//
// The input GGUFs are built here with the shared GGUFWriter and a minimal tensor-name map
// (enough for llama_model_quantize, which loads hparams and tensors but no vocabulary).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from "@llama-pajamas/gguf/formats/float.js";
import { ggmlTypeName, ggmlTypeTraits } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { readGGUF, type GGUFFile } from "@llama-pajamas/gguf/formats/gguf-reader.js";
import { GGMLType, type GGUFKV, GGUFValueType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { GGUFWriter } from "@llama-pajamas/gguf/formats/gguf-writer.js";
import { openCheckpointTensors, readTensorF32 } from "@llama-pajamas/gguf/formats/safetensors.js";
import { imatrixForTensor, imatrixMetadata, readImatrix, type ImportanceMatrix } from "../src/quantize/imatrix.js";
import { METHODS } from "../src/quantize/methods.js";
import { llamaModelQuantize } from "../src/quantize/native.js";
import { quantizeSync } from "../src/quantize/pool.js";
import { planTensorTypes, type RecipeModel } from "../src/quantize/recipes.js";
import { randomMatrix, tensorBytes, writeSyntheticImatrix } from "./quantize-helpers.js";

const FIXTURES = join(import.meta.dirname, "..", "..", "..", "..", "shared", "fixtures", "models");
const THREADS = 2;

interface Tensor {
  name: string;
  ne: number[]; // ggml order
  data: Float32Array;
  type: GGMLType; // as stored in the input GGUF
}

interface Built {
  path: string;
  model: RecipeModel;
}

async function writeGGUF(path: string, kv: GGUFKV[], tensors: Tensor[]): Promise<void> {
  const w = new GGUFWriter();
  for (const e of kv) w.addKV(e);
  const bytes = tensors.map((t) => {
    const d = t.type === GGMLType.F16 ? f32ToF16(t.data) : t.type === GGMLType.BF16 ? f32ToBF16(t.data) : t.data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  });
  tensors.forEach((t, i) => w.addTensorInfo({ name: t.name, shape: [...t.ne].reverse(), type: t.type, byteLength: bytes[i]!.byteLength }));
  await w.open(path);
  await w.writeHeader();
  for (let i = 0; i < tensors.length; i++) await w.writeTensorData(tensors[i]!.name, bytes[i]!);
  await w.finish();
}

function llamaKV(h: { nLayer: number; nEmbd: number; nFf: number; nHead: number; nHeadKv: number; nExpert?: number; ftype: number }): GGUFKV[] {
  const u32 = (key: string, value: number): GGUFKV => ({ key, type: GGUFValueType.UINT32, value });
  const kv: GGUFKV[] = [
    { key: "general.architecture", type: GGUFValueType.STRING, value: "llama" },
    u32("llama.block_count", h.nLayer),
    u32("llama.context_length", 4096),
    u32("llama.embedding_length", h.nEmbd),
    u32("llama.feed_forward_length", h.nFf),
    u32("llama.attention.head_count", h.nHead),
    u32("llama.attention.head_count_kv", h.nHeadKv),
    { key: "llama.attention.layer_norm_rms_epsilon", type: GGUFValueType.FLOAT32, value: 1e-6 },
    u32("llama.rope.dimension_count", h.nEmbd / h.nHead),
    u32("general.file_type", h.ftype),
  ];
  if (h.nExpert) kv.push(u32("llama.expert_count", h.nExpert), u32("llama.expert_used_count", 2));
  return kv;
}

/** llama-tiny / mixtral-tiny safetensors -> GGUF (HF names mapped as conversion/llama.py does). */
async function buildFixture(fixture: "llama-tiny" | "mixtral-tiny", type: GGMLType.F16 | GGMLType.BF16, path: string): Promise<Built> {
  const src = await openCheckpointTensors(join(FIXTURES, fixture));
  const get = async (n: string) => readTensorF32(src.get(n)!);
  const cfg = { nLayer: fixture === "llama-tiny" ? 4 : 2, nEmbd: 256, nFf: fixture === "llama-tiny" ? 768 : 512, nHead: 4, nHeadKv: 2 };
  const nExpert = fixture === "mixtral-tiny" ? 8 : 0;
  const tensors: Tensor[] = [];
  const mat = (name: string, shape: number[], data: Float32Array) => tensors.push({ name, ne: [...shape].reverse(), data, type });
  const vec = (name: string, n: number, data: Float32Array) => tensors.push({ name, ne: [n], data, type: GGMLType.F32 });
  mat("token_embd.weight", [32000, 256], await get("model.embed_tokens.weight"));
  for (let b = 0; b < cfg.nLayer; b++) {
    const p = `model.layers.${b}.`;
    vec(`blk.${b}.attn_norm.weight`, 256, await get(p + "input_layernorm.weight"));
    mat(`blk.${b}.attn_q.weight`, [256, 256], await get(p + "self_attn.q_proj.weight"));
    mat(`blk.${b}.attn_k.weight`, [128, 256], await get(p + "self_attn.k_proj.weight"));
    mat(`blk.${b}.attn_v.weight`, [128, 256], await get(p + "self_attn.v_proj.weight"));
    mat(`blk.${b}.attn_output.weight`, [256, 256], await get(p + "self_attn.o_proj.weight"));
    vec(`blk.${b}.ffn_norm.weight`, 256, await get(p + "post_attention_layernorm.weight"));
    if (nExpert) {
      mat(`blk.${b}.ffn_gate_inp.weight`, [nExpert, 256], await get(p + "block_sparse_moe.gate.weight"));
      for (const [w, gguf, shape] of [["w1", "ffn_gate_exps", [512, 256]], ["w2", "ffn_down_exps", [256, 512]], ["w3", "ffn_up_exps", [512, 256]]] as const) {
        const per = await Promise.all([...Array(nExpert).keys()].map((e) => get(`${p}block_sparse_moe.experts.${e}.${w}.weight`)));
        const all = new Float32Array(per.reduce((s, a) => s + a.length, 0));
        per.forEach((a, e) => all.set(a, e * a.length));
        mat(`blk.${b}.${gguf}.weight`, [nExpert, ...shape], all);
      }
    } else {
      mat(`blk.${b}.ffn_gate.weight`, [768, 256], await get(p + "mlp.gate_proj.weight"));
      mat(`blk.${b}.ffn_up.weight`, [768, 256], await get(p + "mlp.up_proj.weight"));
      mat(`blk.${b}.ffn_down.weight`, [256, 768], await get(p + "mlp.down_proj.weight"));
    }
  }
  vec("output_norm.weight", 256, await get("model.norm.weight"));
  const ftype = type === GGMLType.F16 ? LlamaFtype.MOSTLY_F16 : LlamaFtype.MOSTLY_BF16;
  await writeGGUF(path, llamaKV({ ...cfg, nExpert, ftype }), tensors);
  return { path, model: { arch: "llama", blockCount: cfg.nLayer, headCount: 4, headCountKv: 2, expertCount: nExpert } };
}

/**
 * A synthetic llama-arch MoE with GQA 4 (8 heads, 2 KV heads), 4 experts, an untied output,
 * an expert FFN of 160 (ffn_down_exps rows not a multiple of 256: fallback types) and a
 * made-up [100, 64] tensor (rows not a multiple of 32: F16 fallback).
 */
async function buildSynthetic(path: string): Promise<Built> {
  const nLayer = 3, nEmbd = 256, nFf = 160, nExpert = 4, nVocab = 1000;
  const tensors: Tensor[] = [];
  let seed = 1;
  const mat = (name: string, ne: number[]) => tensors.push({ name, ne, data: randomMatrix(seed++, ne), type: GGMLType.F16 });
  const vec = (name: string, n: number) => tensors.push({ name, ne: [n], data: new Float32Array(n).fill(1), type: GGMLType.F32 });
  mat("token_embd.weight", [nEmbd, nVocab]);
  for (let b = 0; b < nLayer; b++) {
    vec(`blk.${b}.attn_norm.weight`, nEmbd);
    mat(`blk.${b}.attn_q.weight`, [nEmbd, nEmbd]);
    mat(`blk.${b}.attn_k.weight`, [nEmbd, 64]);
    mat(`blk.${b}.attn_v.weight`, [nEmbd, 64]);
    mat(`blk.${b}.attn_output.weight`, [nEmbd, nEmbd]);
    vec(`blk.${b}.ffn_norm.weight`, nEmbd);
    mat(`blk.${b}.ffn_gate_inp.weight`, [nEmbd, nExpert]);
    mat(`blk.${b}.ffn_gate_exps.weight`, [nEmbd, nFf, nExpert]);
    mat(`blk.${b}.ffn_up_exps.weight`, [nEmbd, nFf, nExpert]);
    mat(`blk.${b}.ffn_down_exps.weight`, [nFf, nEmbd, nExpert]);
  }
  mat("blk.0.odd_proj.weight", [100, 64]);
  vec("output_norm.weight", nEmbd);
  mat("output.weight", [nEmbd, nVocab]);
  await writeGGUF(path, llamaKV({ nLayer, nEmbd, nFf, nHead: 8, nHeadKv: 2, nExpert, ftype: LlamaFtype.MOSTLY_F16 }), tensors);
  return { path, model: { arch: "llama", blockCount: nLayer, headCount: 8, headCountKv: 2, expertCount: nExpert } };
}

function widen(type: GGMLType, bytes: Uint8Array): Float32Array {
  const u16 = () => new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  if (type === GGMLType.F16) return f16ToF32(u16());
  if (type === GGMLType.BF16) return bf16ToF32(u16());
  if (type === GGMLType.F32) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  throw new Error(`input type ${ggmlTypeName(type)} is not a float type`);
}

interface Mismatch {
  tensor: string;
  problem: string;
  blocks?: number;
  firstBlock?: number;
}

interface MethodReport {
  method: string;
  tensors: number;
  quantized: number;
  blocks: number;
  fallbacks: number;
  mismatches: Mismatch[];
}

/** Runs llama_model_quantize and compares every tensor of its output with ours. */
async function compareMethod(opts: { input: Built; inFile: GGUFFile; method: string; ftype: number; dir: string; imatrix?: ImportanceMatrix }): Promise<MethodReport> {
  const out = join(opts.dir, `out-${opts.method}.gguf`);
  const { log } = await llamaModelQuantize({ input: opts.input.path, output: out, ftype: opts.ftype, nThread: THREADS, imatrix: opts.imatrix });
  const outFile = await readGGUF(out);
  const plan = planTensorTypes({
    ftype: opts.ftype,
    tensors: opts.inFile.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type })),
    model: opts.input.model,
    haveImatrix: opts.imatrix !== undefined && opts.imatrix.size > 0,
  });
  const report: MethodReport = { method: opts.method, tensors: 0, quantized: 0, blocks: 0, fallbacks: plan.nFallback, mismatches: [] };
  // llama.cpp writes tensors in weights_map order, which plan.order reproduces
  const expectedOrder = plan.order.map((i) => opts.inFile.tensors[i]!.name);
  if (expectedOrder.join() !== outFile.tensors.map((t) => t.name).join()) {
    report.mismatches.push({ tensor: "*", problem: "tensor order differs from llama_model_quantize's" });
  }
  const fallbackLine = /(\d+) of (\d+) tensor\(s\) required fallback/.exec(log);
  if (Number(fallbackLine?.[1] ?? 0) !== plan.nFallback) {
    report.mismatches.push({ tensor: "*", problem: `n_fallback ${fallbackLine?.[1] ?? 0} upstream, ${plan.nFallback} ours` });
  }
  for (const ot of outFile.tensors) {
    const i = opts.inFile.tensors.findIndex((t) => t.name === ot.name);
    const it = opts.inFile.tensors[i]!;
    const decision = plan.tensors[i]!;
    report.tensors++;
    if (decision.type !== ot.type) {
      report.mismatches.push({ tensor: ot.name, problem: `type: llama.cpp ${ggmlTypeName(ot.type)}, recipe ${ggmlTypeName(decision.type)}` });
      continue;
    }
    const theirs = await tensorBytes(outFile, ot);
    const input = await tensorBytes(opts.inFile, it);
    let ours: Uint8Array;
    if (ot.type === it.type) {
      ours = input; // copied unchanged
    } else {
      report.quantized++;
      const nPerRow = it.ne[0]!;
      const data = widen(it.type, input);
      ours = quantizeSync({ type: ot.type, data, nRows: data.length / nPerRow, nPerRow, imatrix: imatrixForTensor(opts.imatrix, it.name, it.ne) });
    }
    const blockBytes = ggmlTypeTraits(ot.type).typeSize;
    const nBlocks = theirs.byteLength / blockBytes;
    report.blocks += nBlocks;
    if (ours.byteLength !== theirs.byteLength) {
      report.mismatches.push({ tensor: ot.name, problem: `size: llama.cpp ${theirs.byteLength} bytes, ours ${ours.byteLength}` });
      continue;
    }
    let bad = 0;
    let first = -1;
    for (let b = 0; b < nBlocks; b++) {
      for (let k = b * blockBytes; k < (b + 1) * blockBytes; k++) {
        if (ours[k] !== theirs[k]) {
          bad++;
          if (first < 0) first = b;
          break;
        }
      }
    }
    if (bad > 0) report.mismatches.push({ tensor: ot.name, problem: `${ggmlTypeName(ot.type)} data`, blocks: bad, firstBlock: first });
  }
  await rm(out);
  return report;
}

const NEEDS_IMATRIX = METHODS.filter((m) => m.requiresImatrix).map((m) => m.name);
const PLAIN = METHODS.filter((m) => !m.requiresImatrix);
const reports: { input: string; report: MethodReport }[] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-quantize-diff-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  const lines = reports.map(({ input, report: r }) =>
    `${input.padEnd(22)} ${r.method.padEnd(8)} tensors ${String(r.tensors).padStart(3)} quantized ${String(r.quantized).padStart(3)} ` +
      `blocks ${String(r.blocks).padStart(8)} fallbacks ${r.fallbacks} mismatches ${r.mismatches.length}` +
      r.mismatches.map((m) => `\n    ${m.tensor}: ${m.problem}${m.blocks ? ` (${m.blocks} blocks, first #${m.firstBlock})` : ""}`).join(""),
  );
  await writeFile(join(tmpdir(), "lp-quantize-differential.txt"), lines.join("\n") + "\n");
  console.log(`differential results (also in ${join(tmpdir(), "lp-quantize-differential.txt")}):\n${lines.join("\n")}`);
});

function check(input: string, r: MethodReport): void {
  reports.push({ input, report: r });
  expect(r.mismatches, `${input} ${r.method}`).toEqual([]);
  expect(r.tensors).toBeGreaterThan(0);
}

describe.each([
  { fixture: "llama-tiny" as const, type: GGMLType.F16 as const, label: "F16", methods: PLAIN },
  {
    fixture: "mixtral-tiny" as const,
    type: GGMLType.BF16 as const,
    label: "BF16",
    methods: PLAIN.filter((m) => ["Q4_0", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_M", "Q5_K_S", "Q6_K", "IQ4_XS", "IQ3_M", "BF16", "F16"].includes(m.name)),
  },
])("llama_model_quantize vs ours: $fixture ($label)", ({ fixture, type, methods }) => {
  let built: Built;
  let inFile: GGUFFile;
  beforeAll(async () => {
    built = await buildFixture(fixture, type, join(dir, `${fixture}.gguf`));
    inFile = await readGGUF(built.path);
  });
  it.each(methods.map((m) => [m.name, m.ftype] as const))("%s", async (method, ftype) => {
    check(`${fixture}-${ggmlTypeName(type).toLowerCase()}`, await compareMethod({ input: built, inFile, method, ftype, dir }));
  });
});

describe("llama_model_quantize vs ours: synthetic MoE, GQA 4, odd shapes", () => {
  let built: Built;
  let inFile: GGUFFile;
  let imatrix: ImportanceMatrix;
  beforeAll(async () => {
    built = await buildSynthetic(join(dir, "synthetic.gguf"));
    inFile = await readGGUF(built.path);
    await writeSyntheticImatrix(join(dir, "synthetic.imatrix.gguf"), inFile);
    imatrix = await readImatrix(join(dir, "synthetic.imatrix.gguf"));
  });
  it.each(PLAIN.map((m) => [m.name, m.ftype] as const))("%s", async (method, ftype) => {
    check("synthetic-f16", await compareMethod({ input: built, inFile, method, ftype, dir }));
  });
  // Synthetic importance values exercise the imatrix path (the params.imatrix array, the
  // per-expert slices, has_imatrix rules); they are not a real calibration.
  it("llama_model_quantize needs an imatrix for the same methods planTensorTypes flags", async () => {
    for (const m of METHODS.filter((m) => m.ftype !== LlamaFtype.ALL_F32)) {
      const plan = planTensorTypes({ ftype: m.ftype, tensors: inFile.tensors, model: built.model });
      const { log } = await llamaModelQuantize({ input: built.path, output: join(dir, "dry.gguf"), ftype: m.ftype, dryRun: true });
      expect(/will require an imatrix/.test(log), m.name).toBe(plan.requiresImatrix);
      expect(plan.requiresImatrix, m.name).toBe(m.requiresImatrix);
    }
    const refused = llamaModelQuantize({ input: built.path, output: join(dir, "refused.gguf"), ftype: LlamaFtype.MOSTLY_IQ2_XXS });
    await expect(refused).rejects.toThrow(/requires an imatrix/);
  });

  it("writes llama-quantize's quantize.imatrix.* metadata through KV overrides", async () => {
    const path = join(dir, "synthetic.imatrix.gguf");
    const expected = imatrixMetadata(path, imatrix);
    const out = join(dir, "with-kv.gguf");
    const kvOverrides = Object.fromEntries(expected.map((e) => [e.key, e.value as string | number]));
    await llamaModelQuantize({ input: built.path, output: out, ftype: LlamaFtype.MOSTLY_Q8_0, imatrix, kvOverrides });
    const kv = (await readGGUF(out)).kv;
    await rm(out);
    expect(expected.map((e) => e.key)).toEqual(["quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count"]);
    for (const e of expected) expect({ key: e.key, type: kv.get(e.key)?.type, value: kv.get(e.key)?.value }).toEqual({ key: e.key, type: e.type, value: e.value });
  });

  it.each(["Q4_0", "Q5_0", "Q4_K_M", "IQ4_NL", "IQ4_XS", "IQ3_S", ...NEEDS_IMATRIX].map((n) => [n, METHODS.find((m) => m.name === n)!.ftype] as const))(
    "%s with synthetic importance data",
    async (method, ftype) => {
      check("synthetic-f16+imatrix", await compareMethod({ input: built, inFile, method, ftype, dir, imatrix }));
    },
  );
});
