// Refusals: what fails, with the value seen and what to do.
import { join } from "node:path";
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import { describe, expect, it } from "vitest";
import { getArchitecture } from "@llama-pajamas/gguf/architectures/index.js";
import type { SourceTensorInfo } from "@llama-pajamas/gguf/architectures/types.js";
import { FIXTURES, loadConfig, readSourceMap } from "./arch-helpers.js";

const llamaDir = join(FIXTURES, "llama-tiny");
const mixtralDir = join(FIXTURES, "mixtral-tiny");

function without(source: Map<string, SourceTensorInfo>, name: string): Map<string, SourceTensorInfo> {
  const out = new Map(source);
  expect(out.delete(name)).toBe(true);
  return out;
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
}

describe("getArchitecture", () => {
  it("refuses an unknown model_type, listing what is supported", () => {
    const e = thrown(() => getArchitecture({ model_type: "foo", architectures: ["FooForCausalLM"] }));
    expect(e).toBeInstanceOf(ConversionError);
    expect(e.message).toBe(
      'unsupported architecture "FooForCausalLM" (model_type "foo"); supported: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, phi3, gemma3, gemma3_text',
    );
  });

  it("refuses a known model_type with a head llama.cpp converts differently", () => {
    const e = thrown(() => getArchitecture({ model_type: "qwen3", architectures: ["Qwen3ForSequenceClassification"] }));
    expect(e).toBeInstanceOf(ConversionError);
    expect(e.message).toContain('"Qwen3ForSequenceClassification"');
    expect(e.message).toContain("Qwen3ForCausalLM");
  });

  it("resolves aliases, text-only Gemma 3 and a missing model_type", () => {
    expect(getArchitecture({ model_type: "mistral", architectures: ["MistralForCausalLM"] }).ggufArch).toBe("llama");
    expect(getArchitecture({ model_type: "gemma3_text", architectures: ["Gemma3ForCausalLM"] }).ggufArch).toBe("gemma3");
    expect(getArchitecture({ architectures: ["Qwen3MoeForCausalLM"] }).ggufArch).toBe("qwen3moe");
  });
});

describe("config.json fields", () => {
  it("names a missing required field and config.json", () => {
    const config = loadConfig(llamaDir);
    delete config["num_hidden_layers"];
    const e = thrown(() => getArchitecture(config).metadata(config));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain('config.json has no "num_hidden_layers"');
    expect(e.message).toContain("llama");
  });

  it("names a field of the wrong type with the value seen", () => {
    const config = { ...loadConfig(llamaDir), vocab_size: "32000" };
    const e = thrown(() => getArchitecture(config).metadata(config));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain('"vocab_size" is "32000"; expected a non-negative integer');
  });

  it("fills what transformers' config class would (the converter reads AutoConfig.to_dict())", () => {
    const config = loadConfig(mixtralDir);
    delete config["num_local_experts"];
    delete config["num_experts_per_tok"];
    const m = getArchitecture(config).metadata(config).beforeFileType;
    expect(m.find((k) => k.key === "llama.expert_count")?.value).toBe(8);
    expect(m.find((k) => k.key === "llama.expert_used_count")?.value).toBe(2);
  });

  it("refuses shape fields it cannot guess even where transformers has a default", () => {
    const config = loadConfig(mixtralDir);
    delete config["hidden_size"];
    expect(() => getArchitecture(config).metadata(config)).toThrow(/config.json has no "hidden_size"/);
  });
});

describe("checkpoint tensors", () => {
  it("names a missing layer tensor by its GGUF and HF names", () => {
    const config = loadConfig(llamaDir);
    const source = without(readSourceMap(llamaDir), "model.layers.2.self_attn.k_proj.weight");
    const e = thrown(() => getArchitecture(config).tensors(config, source));
    expect(e).toBeInstanceOf(ConversionError);
    expect(e.message).toContain("blk.2.attn_k.weight");
    expect(e.message).toContain("model.layers.2.self_attn.k_proj.weight");
  });

  it("names the missing expert tensors of a layer", () => {
    const config = loadConfig(mixtralDir);
    const source = without(readSourceMap(mixtralDir), "model.layers.1.block_sparse_moe.experts.5.w2.weight");
    const e = thrown(() => getArchitecture(config).tensors(config, source));
    expect(e).toBeInstanceOf(ConversionError);
    expect(e.message).toContain("layer 1");
    expect(e.message).toContain("23 of 24");
    expect(e.message).toContain("model.layers.1.block_sparse_moe.experts.5.w2.weight");
  });

  it("refuses a tensor it cannot map, as the converter does", () => {
    const config = loadConfig(llamaDir);
    const source = new Map<string, SourceTensorInfo>(readSourceMap(llamaDir));
    source.set("model.layers.0.self_attn.q_proj.lora_A.weight", { name: "x", dtype: "BF16", shape: [8, 256] });
    expect(() => getArchitecture(config).tensors(config, source)).toThrow(/cannot map checkpoint tensor "model.layers.0.self_attn.q_proj.lora_A.weight"/);
  });

  it("refuses a block index past num_hidden_layers", () => {
    const config = { ...loadConfig(llamaDir), num_hidden_layers: 3 };
    expect(() => getArchitecture(config).tensors(config, readSourceMap(llamaDir))).toThrow(/model\.layers\.3\./);
  });

  it("drops the rotary inv_freq buffers and multimodal towers like the converter", () => {
    const config = loadConfig(llamaDir);
    const base = readSourceMap(llamaDir);
    const source = new Map<string, SourceTensorInfo>(base);
    source.set("model.layers.0.self_attn.rotary_emb.inv_freq", { name: "", dtype: "F32", shape: [32] });
    source.set("vision_tower.encoder.weight", { name: "", dtype: "F32", shape: [4, 4] });
    const arch = getArchitecture(config);
    expect(arch.tensors(config, source).map((p) => p.name)).toEqual(arch.tensors(config, base).map((p) => p.name));
  });
});
