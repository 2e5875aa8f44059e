// MLX export on tiny synthetic checkpoints: qwen3_moe (stacked experts, its 8-bit router
// predicate, transformers 5's fused experts), mlx-lm's mixed recipes, the group-size fallback,
// sharding, the dtype cast, and every bad input with its message.
import { access, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSafetensorsHeader, readTensorBytes } from "@llama-pajamas/gguf/formats/safetensors.js";
import { affineQuantize, castToDtype } from "@llama-pajamas/gguf/mlx/affine.js";
import { exportMLX, makeShards } from "../src/mlx/export.js";
import { parsePyJson, pyFloatRepr, pyJsonDumps, pyJsonString } from "../src/mlx/python-json.js";
import { LLAMA_96_CONFIG, QWEN3_MOE_CONFIG, llama96Tensors, qwen3MoeTensors, readShards, u16, u32, weights, writeCheckpoint } from "./mlx-helpers.js";

let tmp: string;
let n = 0;
const fresh = () => join(tmp, `out-${n++}`);
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "lp-mlx-models-"));
  await writeCheckpoint(join(tmp, "moe"), QWEN3_MOE_CONFIG, qwen3MoeTensors(false));
  await writeCheckpoint(join(tmp, "moe-fused"), QWEN3_MOE_CONFIG, qwen3MoeTensors(true));
  await writeCheckpoint(join(tmp, "llama96"), LLAMA_96_CONFIG, llama96Tensors());
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const readConfig = async (dir: string) => JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
const tensorsOf = async (dir: string) => new Map((await readSafetensorsHeader(join(dir, "model.safetensors"))).tensors.map((t) => [t.name, t]));

describe("qwen3_moe", () => {
  it("stacks experts into switch_mlp [experts, out, in], keeps the router at 8 bits/64, quantizes lm_head", async () => {
    const out = fresh();
    await exportMLX({ model: join(tmp, "moe"), output: out, method: "4bit", groupSize: 32 });
    const t = await tensorsOf(out);
    const config = await readConfig(out);
    // qwen3_moe.py's quant_predicate returns {"group_size": 64, "bits": 8} for mlp.gate (no mode).
    expect(config.quantization).toEqual({ group_size: 32, bits: 4, mode: "affine", "model.layers.0.mlp.gate": { group_size: 64, bits: 8 } });
    expect(t.get("model.layers.0.mlp.gate.weight")).toMatchObject({ dtype: "U32", shape: [4, 16] });
    expect(t.get("model.layers.0.mlp.gate.scales")).toMatchObject({ dtype: "BF16", shape: [4, 1] });
    expect(t.get("model.layers.0.mlp.switch_mlp.gate_proj.weight")).toMatchObject({ dtype: "U32", shape: [4, 64, 8] });
    expect(t.get("model.layers.0.mlp.switch_mlp.down_proj.scales")).toMatchObject({ dtype: "BF16", shape: [4, 64, 2] });
    expect(t.get("model.layers.1.mlp.gate_proj.weight")).toMatchObject({ dtype: "U32", shape: [128, 8] }); // dense layer 1
    expect(t.get("lm_head.weight")).toMatchObject({ dtype: "U32", shape: [128, 8] });
    expect([...t.keys()].some((k) => k.includes("experts"))).toBe(false);
    // Expert 2's rows of the stacked up_proj are the quantization of experts.2.up_proj alone.
    const up = await u32(t.get("model.layers.0.mlp.switch_mlp.up_proj.weight")!);
    const alone = affineQuantize({ data: castToDtype(weights(64 * 64, 202), "bfloat16"), cols: 64, groupSize: 32, bits: 4, dtype: "bfloat16" });
    expect(Array.from(up.subarray(2 * 64 * 8, 3 * 64 * 8))).toEqual(Array.from(alone.weight));
    const meta = JSON.parse(await readFile(join(out, "metadata.json"), "utf8"));
    expect(meta.quantization).toMatchObject({ body_bits: 4, embedding_bits: 4, lm_head_bits: 4, group_size: 32, modules_by_bits: { "4": 16, "8": 1 } });
  });

  it("transformers 5's fused experts (gate_up_proj, down_proj) give the same bytes", async () => {
    const a = fresh();
    const b = fresh();
    await exportMLX({ model: join(tmp, "moe"), output: a, method: "4bit" });
    await exportMLX({ model: join(tmp, "moe-fused"), output: b, method: "4bit" });
    expect((await readFile(join(a, "model.safetensors"))).equals(await readFile(join(b, "model.safetensors")))).toBe(true);
  });

  it("mlx-lm's recipes replace the model's predicate: mixed_3_6 puts the router at 3 bits too", async () => {
    const out = fresh();
    await exportMLX({ model: join(tmp, "moe"), output: out, method: "mixed_3_6" });
    const q = (await readConfig(out)).quantization as Record<string, { bits: number }>;
    // 2 layers: 2 // 8 = 0, 7 * 2 // 8 = 1: layer 1 is in the last eighth, layer 0 is not (and
    // (0 - 0) % 3 != 2). So layer 1's v_proj and down_proj get 6 bits, lm_head 6, the rest 3.
    expect(q["model.layers.0.mlp.gate"]).toEqual({ group_size: 64, bits: 3, mode: "affine" });
    expect(q["model.layers.0.self_attn.v_proj"]!.bits).toBe(3);
    expect(q["model.layers.0.mlp.switch_mlp.down_proj"]!.bits).toBe(3);
    expect(q["model.layers.1.self_attn.v_proj"]!.bits).toBe(6);
    expect(q["model.layers.1.mlp.down_proj"]!.bits).toBe(6);
    expect(q["model.layers.1.mlp.up_proj"]!.bits).toBe(3);
    expect(q["lm_head"]!.bits).toBe(6);
    expect(q["model.embed_tokens"]!.bits).toBe(3);
    // Every quantized module has its entry, in module order, after the three defaults.
    expect(Object.keys(q).slice(0, 5)).toEqual(["group_size", "bits", "mode", "model.embed_tokens", "model.layers.0.self_attn.q_proj"]);
    expect(Object.keys(q).at(-1)).toBe("lm_head");
  });
});

describe("qwen2 (q/k/v biases)", () => {
  it("keeps Linear biases in bf16 beside the quantized weight (QuantizedLinear's bias), head_dim = hidden // heads", async () => {
    const config = { ...LLAMA_96_CONFIG, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", intermediate_size: 128, num_key_value_heads: 1, head_dim: 999 };
    const t = llama96Tensors();
    for (const l of [0, 1]) {
      const p = `model.layers.${l}`;
      t[`${p}.self_attn.k_proj.weight`] = { shape: [32, 64] };
      t[`${p}.self_attn.v_proj.weight`] = { shape: [32, 64] };
      t[`${p}.self_attn.q_proj.bias`] = { shape: [64] };
      t[`${p}.self_attn.k_proj.bias`] = { shape: [32] };
      t[`${p}.self_attn.v_proj.bias`] = { shape: [32] };
      t[`${p}.mlp.gate_proj.weight`] = { shape: [128, 64] };
      t[`${p}.mlp.up_proj.weight`] = { shape: [128, 64] };
      t[`${p}.mlp.down_proj.weight`] = { shape: [64, 128] };
    }
    await writeCheckpoint(join(tmp, "qwen2"), config, t);
    const out = fresh();
    await exportMLX({ model: join(tmp, "qwen2"), output: out, method: "4bit" });
    const got = await tensorsOf(out);
    expect(got.get("model.layers.0.self_attn.k_proj.weight")).toMatchObject({ dtype: "U32", shape: [32, 8] });
    expect(got.get("model.layers.0.self_attn.k_proj.bias")).toMatchObject({ dtype: "BF16", shape: [32] });
    expect(got.has("model.layers.0.self_attn.o_proj.bias")).toBe(false);
    const src = (await readSafetensorsHeader(join(tmp, "qwen2", "model.safetensors"))).tensors.find((x) => x.name === "model.layers.1.self_attn.q_proj.bias")!;
    expect((await readTensorBytes(got.get("model.layers.1.self_attn.q_proj.bias")!)).equals(await readTensorBytes(src))).toBe(true);
  });
});

describe("mixed recipes' layer rule (mixed_quant_predicate_builder) on 32 layers", () => {
  it("favours layers < 4, >= 28 and every third from 4 + 2", async () => {
    const { mixedRecipePredicate } = await import("../src/mlx/recipes.js");
    const modules = [{ path: "model.layers.0.mlp.down_proj", kind: "linear" as const, params: [] }];
    const p = mixedRecipePredicate({ low: 4, high: 6, groupSize: 64, modules, numLayers: 32 });
    const hi = Array.from({ length: 32 }, (_, i) => i).filter((i) => (p(`model.layers.${i}.self_attn.v_proj`, modules[0]!) as { bits: number }).bits === 6);
    expect(hi).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    expect(p("model.layers.5.self_attn.q_proj", modules[0]!)).toEqual({ group_size: 64, bits: 4, mode: "affine" });
  });
});

describe("group size that does not divide a row", () => {
  it("leaves that module in float, as mlx-lm's quantize_model does, and says so in metadata.json", async () => {
    const out = fresh();
    const r = await exportMLX({ model: join(tmp, "llama96"), output: out, method: "4bit" });
    const t = await tensorsOf(out);
    expect(t.get("model.layers.0.mlp.down_proj.weight")).toMatchObject({ dtype: "BF16", shape: [64, 96] });
    expect(t.has("model.layers.0.mlp.down_proj.scales")).toBe(false);
    expect(t.get("model.layers.0.mlp.gate_proj.weight")).toMatchObject({ dtype: "U32", shape: [96, 8] });
    expect((await readConfig(out)).quantization).toEqual({ group_size: 64, bits: 4, mode: "affine" });
    expect(r.notDivisible).toEqual(["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]);
    const meta = JSON.parse(await readFile(join(out, "metadata.json"), "utf8"));
    expect(meta.quantization.not_divisible).toEqual(r.notDivisible);
    expect(meta.quantization.modules_by_bits).toEqual({ "4": 13, "16": 2 });
    // With group 32, 96 divides: everything is quantized.
    const out32 = fresh();
    expect((await exportMLX({ model: join(tmp, "llama96"), output: out32, method: "4bit", groupSize: 32 })).notDivisible).toEqual([]);
  });
});

describe("sharding (make_shards, model-0000i-of-0000N.safetensors)", () => {
  it("splits in model.parameters() order past the limit and indexes every tensor", async () => {
    const out = fresh();
    const r = await exportMLX({ model: join(tmp, "llama96"), output: out, method: "8bit", shardBytes: 40_000 });
    const shards = (await readdir(out)).filter((f) => f.endsWith(".safetensors")).sort();
    expect(shards.length).toBeGreaterThan(2);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, "0")}.safetensors`);
    const index = JSON.parse(await readFile(join(out, "model.safetensors.index.json"), "utf8"));
    const all = await readShards(out, shards);
    expect(Object.keys(index.weight_map)).toEqual([...all.keys()].sort());
    for (const [name, file] of Object.entries(index.weight_map)) expect(all.get(name)!.file).toBe(join(out, file as string));
    // The embedding (16 KiB of codes + scales) comes first; model.norm is in the last shard.
    expect(index.weight_map["model.embed_tokens.weight"]).toBe(shards[0]);
    expect(index.weight_map["model.norm.weight"]).toBe(shards.at(-1));
    for (const f of shards) expect((await readSafetensorsHeader(join(out, f))).tensors.reduce((s, t) => s + t.end - t.start, 0)).toBeLessThanOrEqual(40_000);
    expect(r.files.filter((f) => f.name.endsWith(".safetensors")).length).toBe(shards.length);
  });

  it("keeps mlx-lm's empty first shard when the first array alone is over the limit", () => {
    const t = [
      { name: "a", dtype: "U32" as const, shape: [100] },
      { name: "b", dtype: "U32" as const, shape: [10] },
    ];
    expect(makeShards(t, 200).map((s) => s.map((x) => x.name))).toEqual([[], ["a"], ["b"]]);
    expect(makeShards(t, 400).map((s) => s.map((x) => x.name))).toEqual([["a"], ["b"]]);
    expect(makeShards(t, 440).map((s) => s.map((x) => x.name))).toEqual([["a", "b"]]);
  });
});

describe("dtype (convert's cast to config torch_dtype)", () => {
  it("casts float32 weights to bfloat16 before quantizing, and keeps float32 when the config says so", async () => {
    const src = join(tmp, "llama96-f32");
    await writeCheckpoint(src, LLAMA_96_CONFIG, llama96Tensors("F32"));
    const out = fresh();
    await exportMLX({ model: src, output: out, method: "4bit", groupSize: 32 });
    const t = await tensorsOf(out);
    expect(t.get("model.norm.weight")!.dtype).toBe("BF16");
    expect(t.get("model.layers.0.self_attn.q_proj.scales")!.dtype).toBe("BF16");
    const bf = fresh();
    await exportMLX({ model: join(tmp, "llama96"), output: bf, method: "4bit", groupSize: 32 });
    // The f32 values round (to nearest even) to exactly the bf16 checkpoint's values: same bytes.
    expect((await readFile(join(out, "model.safetensors"))).equals(await readFile(join(bf, "model.safetensors")))).toBe(true);
    const src32 = join(tmp, "llama96-f32-keep");
    await writeCheckpoint(src32, { ...LLAMA_96_CONFIG, torch_dtype: "float32" }, llama96Tensors("F32"));
    const out32 = fresh();
    await exportMLX({ model: src32, output: out32, method: "bf16" });
    const t32 = await tensorsOf(out32);
    // "bf16" is mlx_lm.convert --dtype bfloat16 without -q: no quantization, everything bf16.
    expect(t32.get("model.layers.0.mlp.down_proj.weight")).toMatchObject({ dtype: "BF16", shape: [64, 96] });
    expect("quantization" in (await readConfig(out32))).toBe(false);
    const out32q = fresh();
    await exportMLX({ model: src32, output: out32q, method: "8bit", groupSize: 32 });
    expect((await tensorsOf(out32q)).get("model.layers.0.mlp.down_proj.scales")).toMatchObject({ dtype: "F32", shape: [64, 3] });
  });
});

describe("bad input", () => {
  const expectNothingLeft = async (dir: string) => expect(access(dir)).rejects.toThrow();

  it("unsupported bits, group sizes, modes and names, with what is supported", async () => {
    const model = join(tmp, "llama96");
    await expect(exportMLX({ model, output: fresh(), method: "7bit" })).rejects.toThrow(/7 bits is not supported.*2, 3, 4, 5, 6, 8 bits/);
    await expect(exportMLX({ model, output: fresh(), method: "q4_k_m" })).rejects.toThrow(/unknown MLX precision "q4_k_m"; choose one of 2bit, 3bit, 4bit/);
    await expect(exportMLX({ model, output: fresh(), method: "4bit", groupSize: 48 })).rejects.toMatchObject({ code: "E_PRECISION", message: expect.stringMatching(/group size 48 .*32, 64, 128/) });
    await expect(exportMLX({ model, output: fresh(), method: "4bit", mode: "nvfp4" })).rejects.toThrow(/"nvfp4" is an MLX mode this exporter does not write; supported: "affine"/);
    await expect(exportMLX({ model, output: fresh(), method: "4bit", mode: "int4" })).rejects.toThrow(/"int4" is not an MLX mode/);
  });

  it("a config that does not match the weights, a missing or an extra tensor", async () => {
    const wrong = join(tmp, "wrong-hidden");
    await writeCheckpoint(wrong, { ...LLAMA_96_CONFIG, intermediate_size: 128 }, llama96Tensors());
    const out = fresh();
    await expect(exportMLX({ model: wrong, output: out, method: "4bit" })).rejects.toMatchObject({
      code: "E_MISMATCH",
      message: expect.stringMatching(/"model.layers.0.mlp.gate_proj.weight" has shape \[96, 64\] but config.json implies \[128, 64\]/),
    });
    await expectNothingLeft(out);
    const missing = llama96Tensors();
    delete missing["model.layers.1.self_attn.v_proj.weight"];
    await writeCheckpoint(join(tmp, "missing"), LLAMA_96_CONFIG, missing);
    await expect(exportMLX({ model: join(tmp, "missing"), output: fresh(), method: "4bit" })).rejects.toThrow(/no tensor "model.layers.1.self_attn.v_proj.weight"/);
    await writeCheckpoint(join(tmp, "extra"), LLAMA_96_CONFIG, { ...llama96Tensors(), "model.layers.0.mlp.extra.weight": { shape: [4, 4] } });
    await expect(exportMLX({ model: join(tmp, "extra"), output: fresh(), method: "4bit" })).rejects.toMatchObject({
      code: "E_MISMATCH",
      message: expect.stringMatching(/1 tensor\(s\) mlx-lm's llama model has no place for: model.layers.0.mlp.extra.weight/),
    });
    // A tied lm_head.weight and rotary inv_freq are dropped, as sanitize does.
    await writeCheckpoint(join(tmp, "dropped"), LLAMA_96_CONFIG, { ...llama96Tensors(), "lm_head.weight": { shape: [256, 64] }, "model.layers.0.self_attn.rotary_emb.inv_freq": { shape: [16], dtype: "F32" } });
    const ok = fresh();
    await exportMLX({ model: join(tmp, "dropped"), output: ok, method: "4bit" });
    expect([...(await tensorsOf(ok)).keys()].some((k) => k.startsWith("lm_head") || k.includes("rotary"))).toBe(false);
  });

  it("an unknown architecture, an already quantized checkpoint, an existing output, a missing tokenizer", async () => {
    await writeCheckpoint(join(tmp, "gpt2"), { ...LLAMA_96_CONFIG, model_type: "gpt2" }, llama96Tensors());
    await expect(exportMLX({ model: join(tmp, "gpt2"), output: fresh(), method: "4bit" })).rejects.toMatchObject({
      code: "E_UNSUPPORTED_ARCH",
      message: expect.stringMatching(/model_type "gpt2"; supported: iquestcoder, llama, mistral, mixtral, qwen2, qwen3, qwen3_moe/),
    });
    await writeCheckpoint(join(tmp, "prequant"), { ...LLAMA_96_CONFIG, quantization_config: { quant_method: "fp8" } }, llama96Tensors());
    await expect(exportMLX({ model: join(tmp, "prequant"), output: fresh(), method: "4bit" })).rejects.toMatchObject({ code: "E_QUANTIZED" });
    const existing = fresh();
    await exportMLX({ model: join(tmp, "llama96"), output: existing, method: "4bit" });
    await expect(exportMLX({ model: join(tmp, "llama96"), output: existing, method: "4bit" })).rejects.toMatchObject({ code: "E_EXISTS" });
    await writeCheckpoint(join(tmp, "notok"), LLAMA_96_CONFIG, llama96Tensors());
    await rm(join(tmp, "notok", "tokenizer.json"));
    const out = fresh();
    await expect(exportMLX({ model: join(tmp, "notok"), output: out, method: "4bit" })).rejects.toMatchObject({ code: "E_TOKENIZER" });
    await expectNothingLeft(out);
  });

  it("refuses non-finite weights, naming the tensor, and leaves nothing", async () => {
    const t = llama96Tensors();
    const data = weights(96 * 64, 5);
    data[200] = Infinity;
    t["model.layers.1.mlp.up_proj.weight"] = { shape: [96, 64], data };
    await writeCheckpoint(join(tmp, "inf"), LLAMA_96_CONFIG, t);
    const out = fresh();
    await expect(exportMLX({ model: join(tmp, "inf"), output: out, method: "4bit" })).rejects.toThrow(/model.layers.1.mlp.up_proj.weight has a non-finite value \(Infinity\) at row 3, column 8/);
    await expectNothingLeft(out);
  });
});

describe("Python JSON (json.load + json.dump(indent=4))", () => {
  it("prints floats as repr() does", () => {
    const cases: [number, string][] = [
      [1e-6, "1e-06"],
      [1e-5, "1e-05"],
      [0.0001, "0.0001"],
      [500000, "500000.0"],
      [0.02, "0.02"],
      [1.5e-7, "1.5e-07"],
      [1e16, "1e+16"],
      [1e15, "1000000000000000.0"],
      [123456789.125, "123456789.125"],
      [-0, "-0.0"],
      [2.5e-5, "2.5e-05"],
      [1e22, "1e+22"],
      [0.1 + 0.2, "0.30000000000000004"],
    ];
    for (const [x, want] of cases) expect(pyFloatRepr(x), String(x)).toBe(want);
  });

  it("keeps key order, int vs float and big ints; escapes non-ASCII", () => {
    const text = '{"b": 1.0, "a": {"2": 1, "1": 2}, "big": 12345678901234567890, "e": 1E-6, "s": "é\\u2028\\n", "l": [], "d": {}}';
    expect(pyJsonDumps(parsePyJson(text))).toBe(
      '{\n    "b": 1.0,\n    "a": {\n        "2": 1,\n        "1": 2\n    },\n    "big": 12345678901234567890,\n    "e": 1e-06,\n' +
        '    "s": "\\u00e9\\u2028\\n",\n    "l": [],\n    "d": {}\n}',
    );
    expect(pyJsonString("😀")).toBe('"\\ud83d\\ude00"');
  });
});

describe("safetensors as mx.save_safetensors writes it", () => {
  it("compact header with sorted keys, __metadata__ first, no padding, data in header order", async () => {
    const out = fresh();
    await exportMLX({ model: join(tmp, "llama96"), output: out, method: "4bit", groupSize: 32 });
    const bytes = await readFile(join(out, "model.safetensors"));
    const len = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + len).toString("utf8");
    expect(header).toMatch(/^\{"__metadata__":\{"format":"mlx"\},"model\.embed_tokens\.biases":\{"data_offsets":\[0,\d+\],"dtype":"BF16","shape":\[256,2\]\},/);
    const keys = Object.keys(JSON.parse(header));
    expect(keys).toEqual([...keys].sort());
    const tensors = (await readSafetensorsHeader(join(out, "model.safetensors"))).tensors;
    expect(tensors[0]!.start).toBe(8 + len);
    const n = await readTensorBytes(tensors.find((t) => t.name === "model.norm.weight")!);
    expect(n.length).toBe(128);
    expect((await u16(tensors.find((t) => t.name === "model.embed_tokens.scales")!)).length).toBe(512);
  });
});
