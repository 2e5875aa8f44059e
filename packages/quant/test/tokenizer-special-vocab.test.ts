// SpecialVocab (gguf-py vocab.py) precedence and formats, on small crafted files; and the
// errors buildTokenizerKV raises.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConversionError } from "@llama-pajamas/artifact";
import { describe, expect, it } from "vitest";
import type { TokenizerFiles } from "@llama-pajamas/gguf/tokenizer/hf-files.js";
import { KVList } from "@llama-pajamas/gguf/tokenizer/kv-list.js";
import { parseMergesTxt } from "@llama-pajamas/gguf/tokenizer/merges.js";
import { SpecialVocab } from "@llama-pajamas/gguf/tokenizer/special-vocab.js";
import { buildTokenizerKV } from "@llama-pajamas/gguf/tokenizer/index.js";
import { withTempDir } from "./helpers.js";

function files(dir: string, tokenizerJson?: object, tokenizerConfig?: object): TokenizerFiles {
  return {
    dir,
    tokenizerJson: tokenizerJson as TokenizerFiles["tokenizerJson"],
    tokenizerJsonText: tokenizerJson ? JSON.stringify(tokenizerJson) : undefined,
    tokenizerConfig: tokenizerConfig as TokenizerFiles["tokenizerConfig"],
    hasTokenizerModel: false,
  };
}

async function kvsOf(sv: SpecialVocab): Promise<Record<string, unknown>> {
  const kv = new KVList();
  sv.addTo(kv);
  return Object.fromEntries(kv.toArray().map((e) => [e.key, e.value]));
}

const added = [
  { id: 0, content: "<s>", special: true },
  { id: 1, content: "</s>", special: true },
  { id: 5, content: "<|im_end|>", special: true },
];

describe("SpecialVocab", () => {
  it("tokenizer_config.json wins over config.json; list-valued and generation_config ids are ignored", async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: 1, pad_token_id: 0 }));
      const sv = await SpecialVocab.load({
        files: files(dir, { added_tokens: added }, { eos_token: { content: "<|im_end|>" }, add_bos_token: false }),
        config: { bos_token_id: 0, eos_token_id: [1, 5], pad_token_id: null },
      });
      expect([...sv.specialTokenIds]).toEqual([["eos", 5], ["bos", 0]]);
      expect(await kvsOf(sv)).toEqual({
        "tokenizer.ggml.eos_token_id": 5,
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.add_bos_token": false,
      });
    });
  });

  it("drops ids at or past n_vocab and refuses negative ids", async () => {
    await withTempDir(async (dir) => {
      const sv = await SpecialVocab.load({ files: files(dir), config: { bos_token_id: 7, eos_token_id: 2 }, nVocab: 5 });
      expect([...sv.specialTokenIds]).toEqual([["eos", 2]]);
      await expect(SpecialVocab.load({ files: files(dir), config: { bos_token_id: -1 } })).rejects.toThrow(ConversionError);
    });
  });

  it("reads add_bos/add_sep from a Llama TemplateProcessing and add_* from tokenizer_config", async () => {
    await withTempDir(async (dir) => {
      const single = [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }];
      const pair = [...single, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }];
      const tj = { added_tokens: added, post_processor: { type: "TemplateProcessing", single, pair } };
      const sv = await SpecialVocab.load({
        files: files(dir, tj, { bos_token: "<s>", eos_token: "</s>", add_bos_token: true, add_eos_token: false }),
        config: {},
      });
      expect([...sv.addSpecialToken]).toEqual([["bos", true], ["sep", false], ["eos", false]]);
    });
  });

  it("RobertaProcessing adds bos, eos and sep", async () => {
    await withTempDir(async (dir) => {
      const tj = { added_tokens: added, post_processor: { type: "RobertaProcessing", sep: ["</s>", 1], cls: ["<s>", 0] } };
      const sv = await SpecialVocab.load({ files: files(dir, tj, { bos_token: "<s>", eos_token: "</s>" }), config: {} });
      expect([...sv.addSpecialToken]).toEqual([["bos", true], ["eos", true], ["sep", true]]);
      expect(sv.specialTokenIds.get("sep")).toBe(1);
    });
  });

  it("takes chat_template.jinja when tokenizer_config.json has none, and none when it says null", async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, "chat_template.jinja"), "{{ messages }}");
      const fromJinja = await SpecialVocab.load({ files: files(dir, undefined, { add_bos_token: true }), config: {} });
      expect(fromJinja.chatTemplate).toBe("{{ messages }}");
      const nulled = await SpecialVocab.load({ files: files(dir, undefined, { chat_template: null }), config: {} });
      expect(nulled.chatTemplate).toBeNull();
      // Without a tokenizer_config.json the converter reads no template at all.
      const noConfig = await SpecialVocab.load({ files: files(dir), config: {} });
      expect(noConfig.chatTemplate).toBeNull();
    });
  });

  it("writes named chat templates, their list, then the default", async () => {
    await withTempDir(async (dir) => {
      const templates = [
        { name: "default", template: "D" },
        { name: "tool use", template: "T" },
      ];
      const sv = await SpecialVocab.load({ files: files(dir, undefined, { chat_template: templates }), config: {} });
      const kv = new KVList();
      sv.addTo(kv);
      expect(kv.toArray().map((e) => [e.key, e.value])).toEqual([
        ["tokenizer.chat_template.tool_use", "T"],
        ["tokenizer.chat_templates", ["tool_use"]],
        ["tokenizer.chat_template", "D"],
      ]);
    });
  });

  it("loads merges in both tokenizer.json forms and from merges.txt", async () => {
    await withTempDir(async (dir) => {
      const pairForm = { model: { type: "BPE", merges: [["a b", "c"], ["\u0120", "d"]] } };
      const sv = await SpecialVocab.load({ files: files(dir, pairForm), config: {}, loadMerges: true });
      expect(sv.merges).toEqual(["a\u0120b c", "\u0120 d"]);
      await writeFile(join(dir, "merges.txt"), "#version: 0.2\r\nh e\n\nhe llo\nbad\n");
      const fromTxt = await SpecialVocab.load({ files: files(dir, { model: { type: "BPE", merges: [] } }), config: {}, loadMerges: true });
      expect(fromTxt.merges).toEqual(["h e", "he llo"]);
      expect(parseMergesTxt("x y\n")).toEqual(["x y"]);
    });
  });
});

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards. */
function byteLevelAlphabet(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : next++));
}

describe("buildTokenizerKV errors", () => {
  it("names the supported model types for an unknown one", async () => {
    await expect(buildTokenizerKV({ dir: "/nonexistent", config: {}, ggufArch: "foo", modelType: "foo" })).rejects.toThrow(
      /no tokenizer conversion for model_type "foo".*supported: llama, mistral, mixtral, qwen2/,
    );
  });

  it("refuses a folder without tokenizer files", async () => {
    await withTempDir(async (dir) => {
      await expect(buildTokenizerKV({ dir, config: {}, ggufArch: "qwen3", modelType: "qwen3" })).rejects.toThrow(
        /neither tokenizer.json nor tokenizer.model/,
      );
    });
  });

  it("refuses a byte-level BPE whose pre-tokenizer llama.cpp does not know", async () => {
    await withTempDir(async (dir) => {
      await mkdir(dir, { recursive: true });
      const vocab = Object.fromEntries(byteLevelAlphabet().map((c, i) => [c, i]));
      const tj = {
        version: "1.0",
        added_tokens: [],
        normalizer: null,
        pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
        post_processor: null,
        decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
        model: { type: "BPE", dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
      };
      await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tj));
      const err = await buildTokenizerKV({ dir, config: { vocab_size: 256 }, ggufArch: "qwen3", modelType: "qwen3" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConversionError);
      expect((err as ConversionError).code).toBe("E_UNKNOWN_PRE_TOKENIZER");
      expect((err as Error).message).toMatch(/pre-tokenizer .* was not recognized \(chkhsh [0-9a-f]{64}\)/);
    });
  });
});
