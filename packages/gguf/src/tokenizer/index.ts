// The tokenizer.* KV entries of a GGUF file, as llama.cpp's convert_hf_to_gguf.py writes them
// for each architecture (its set_vocab methods), in the same order and with the same types and
// values. One deliberate difference: Llama/Mistral vocabularies that ship only tokenizer.json
// get merge-order scores instead of the placeholder -1000 (see llama-hf.ts).
//
// KV order per vocabulary kind (SpecialVocab entries only where the files define them):
//   gpt2 (byte-level BPE): model, pre, tokens, token_type, merges, <special ids>, add_<bos|eos|sep>_token,
//                          chat_template, normalizer.*
//   llama (SentencePiece): model, pre, tokens, scores, token_type, <special ids>, add_*_token, chat_template
//   Llama-family models put add_space_prefix first when tokenizer_config.json has add_prefix_space;
//   Gemma models append eot_token_id (Gemma 1) and add_space_prefix=false.
import { join } from "node:path";
import { ConversionError } from "@llama-pajamas/artifact";
import type { GGUFKV } from "../formats/gguf-types.js";
import { fileExists, loadTokenizerFiles, type JsonObject, type VocabContext } from "./hf-files.js";
import { KVList, TokenizerKey } from "./kv-list.js";
import { setVocabGpt2 } from "./bpe.js";
import { llamaHfApplies, setVocabLlamaHf } from "./llama-hf.js";
import { createVocabPhi3, setVocabSentencepiece, writeLlamaVocab } from "./sentencepiece.js";
import { SpecialVocab } from "./special-vocab.js";

export interface BuildTokenizerKVOptions {
  /** Checkpoint folder holding tokenizer.json / tokenizer.model / tokenizer_config.json. */
  dir: string;
  /** config.json, parsed. */
  config: Record<string, unknown>;
  /** general.architecture, e.g. "llama", "qwen3" (used in messages). */
  ggufArch: string;
  /** config.json model_type; selects the converter's set_vocab. */
  modelType: string;
}

type Recipe = (kv: KVList, ctx: VocabContext) => Promise<void>;

/** LlamaModel.set_vocab (conversion/llama.py): llama, mistral, mixtral. */
async function llamaRecipe(kv: KVList, ctx: VocabContext): Promise<void> {
  const { files, config } = ctx;
  if (!files.tokenizerJson && (await fileExists(join(files.dir, "tekken.json")))) {
    throw new ConversionError(`${files.dir} has a Mistral tekken.json tokenizer, which is not supported; use a checkpoint with tokenizer.json`);
  }
  const addPrefixSpace = files.tokenizerConfig?.["add_prefix_space"];
  if (typeof addPrefixSpace === "boolean") kv.addBool(TokenizerKey.ADD_PREFIX, addPrefixSpace);
  if (files.tokenizerConfig?.["tokenizer_class"] === "HybridDNATokenizer") {
    throw new ConversionError(`tokenizer_class HybridDNATokenizer in ${files.dir} is not supported`);
  }
  if (files.hasTokenizerModel) await setVocabSentencepiece(kv, ctx);
  else if (llamaHfApplies(files.tokenizerJson)) await setVocabLlamaHf(kv, ctx);
  else await setVocabGpt2(kv, ctx); // Llama 3

  const vocabSize = typeof config["vocab_size"] === "number" ? config["vocab_size"] : 32000;
  if (vocabSize === 32016) {
    // CodeLlama infill tokens: only eot has a GGUF key at this llama.cpp commit.
    const special = await SpecialVocab.load({ files, config, specialTokenTypes: ["prefix", "suffix", "middle", "eot"] });
    special.setSpecialToken("eot", 32010);
    special.addTo(kv);
  }
  if (vocabSize === 49152) kv.addBool("tokenizer.ggml.add_bos_token", false); // granite small models
}

/** Qwen2Model.set_vocab (conversion/qwen.py), inherited by Qwen3Model. */
async function qwenRecipe(kv: KVList, ctx: VocabContext): Promise<void> {
  if (ctx.files.hasTokenizerModel) await setVocabSentencepiece(kv, ctx);
  else await setVocabGpt2(kv, ctx);
}

/** GemmaModel.set_vocab (conversion/gemma.py). */
async function gemmaRecipe(kv: KVList, ctx: VocabContext): Promise<void> {
  await setVocabSentencepiece(kv, ctx);
  const special = await SpecialVocab.load({
    files: ctx.files,
    config: ctx.config,
    specialTokenTypes: ["prefix", "suffix", "middle", "fsep", "eot"],
  });
  // prefix/suffix/middle/fsep have no GGUF key at this commit; only eot is written.
  for (const [typ, id] of [["prefix", 67], ["suffix", 69], ["middle", 68], ["fsep", 70], ["eot", 107]] as const) {
    special.setSpecialToken(typ, id);
  }
  special.chatTemplate = null; // do not add it twice
  special.addTo(kv);
  kv.addBool(TokenizerKey.ADD_PREFIX, false);
}

/** Gemma2Model.set_vocab: tokenizer.model is required. */
async function gemma2Recipe(kv: KVList, ctx: VocabContext): Promise<void> {
  await setVocabSentencepiece(kv, ctx);
  kv.addBool(TokenizerKey.ADD_PREFIX, false);
}

/** Gemma3Model.set_vocab: SentencePiece when tokenizer.model exists, else byte-level BPE. */
async function gemma3Recipe(kv: KVList, ctx: VocabContext): Promise<void> {
  if (ctx.files.hasTokenizerModel) await gemma2Recipe(kv, ctx);
  else await setVocabGpt2(kv, ctx);
}

/** Phi3MiniModel.set_vocab (conversion/phi.py). */
async function phi3Recipe(kv: KVList, ctx: VocabContext): Promise<void> {
  if (ctx.files.tokenizerConfig?.["tokenizer_class"] === "GPT2Tokenizer") return setVocabGpt2(kv, ctx); // Phi-4
  if (!ctx.files.hasTokenizerModel) {
    throw new ConversionError(`${ctx.files.dir}/tokenizer.model is missing; Phi-3 vocabularies are built from it`);
  }
  await writeLlamaVocab(kv, ctx, await createVocabPhi3(ctx));
}

/** model_type -> the converter's set_vocab. */
const RECIPES: Readonly<Record<string, Recipe>> = {
  llama: llamaRecipe,
  mistral: llamaRecipe,
  mixtral: llamaRecipe,
  qwen2: qwenRecipe,
  qwen3: qwenRecipe,
  // Qwen2MoeModel has no set_vocab of its own: TextModel.set_vocab, byte-level BPE.
  qwen2_moe: setVocabGpt2,
  qwen3_moe: setVocabGpt2,
  gemma: gemmaRecipe,
  gemma2: gemma2Recipe,
  gemma3: gemma3Recipe,
  gemma3_text: gemma3Recipe,
  phi3: phi3Recipe,
  // PhiForCausalLM uses TextModel.set_vocab; its add_bos_token=false is written with the
  // architecture keys (set_gguf_parameters), not here.
  phi: setVocabGpt2,
};

export const SUPPORTED_TOKENIZER_MODEL_TYPES: readonly string[] = Object.keys(RECIPES);

/**
 * All tokenizer.* KV entries for a checkpoint, in llama.cpp's converter order. Throws
 * ConversionError for an unsupported model_type, missing tokenizer files or a BPE pre-tokenizer
 * llama.cpp does not know; InputError for unreadable or malformed files.
 */
export async function buildTokenizerKV(opts: BuildTokenizerKVOptions): Promise<GGUFKV[]> {
  const recipe = RECIPES[opts.modelType];
  if (recipe === undefined) {
    throw new ConversionError(
      `no tokenizer conversion for model_type "${opts.modelType}" (GGUF architecture "${opts.ggufArch}"); ` +
        `supported: ${SUPPORTED_TOKENIZER_MODEL_TYPES.join(", ")}`,
    );
  }
  const files = await loadTokenizerFiles(opts.dir);
  if (!files.tokenizerJson && !files.hasTokenizerModel) {
    throw new ConversionError(
      `${opts.dir} has neither tokenizer.json nor tokenizer.model; copy the checkpoint's tokenizer files next to config.json`,
    );
  }
  const kv = new KVList();
  await recipe(kv, { files, config: opts.config as JsonObject });
  return kv.toArray();
}

export { TokenType, TokenizerKey } from "./kv-list.js";
export { parseSentencePieceModel, PieceType, SentencePieceModelType } from "./sentencepiece-proto.js";
export type { SentencePiece, SentencePieceModel } from "./sentencepiece-proto.js";
export { mergeRankScores } from "./llama-hf.js";
export { hashTokenIds } from "./pre-tokenizer.js";
