// Llama/Mistral SentencePiece-style vocabularies shipped only as tokenizer.json (BPE with
// byte_fallback and "▁"): gguf-py vocab.py LlamaHfVocab, as conversion/base.py
// _set_vocab_llama_hf writes it, with one deliberate difference: the scores.
//
// LlamaHfVocab writes the placeholder score -1000 for every token. llama.cpp's SentencePiece
// tokenizer (llm_tokenizer_spm) merges the adjacent pair whose joined text is the token with the
// highest score, so with all scores equal it segments differently from the Hugging Face BPE
// tokenizer (+2.7% tokens on the fixtures' eval.txt). We write merge-order scores instead:
//
//   score(token) = -(rank of the first merge in tokenizer.json that produces the token)
//
// so llama.cpp applies merges in the order Hugging Face does. Tokens no merge produces get the
// scores a SentencePiece BPE model gives them: 0 for control, byte and user-defined tokens, and
// the lowest score (-merge count) for the remaining normal tokens (single characters, which are
// never the result of a merge). On eval.txt this reproduces the Hugging Face token count
// exactly (178,613 without BOS); the "-(id - 259)" form is 0.035% off because it puts runs of
// "▁", which Hugging Face merges last, first.
import { ConversionError } from "@llama-pajamas/artifact";
import { isObject, type JsonObject, type VocabContext } from "./hf-files.js";
import { KVList, TokenType, type BaseVocab } from "./kv-list.js";
import { readAddedTokens, readFullVocab } from "./bpe.js";
import { readTokenizerJsonMerges } from "./merges.js";
import { writeLlamaVocab } from "./sentencepiece.js";

/**
 * Which path llama.cpp's LlamaModel.set_vocab takes for a tokenizer.json: "llama-hf" for a
 * byte-fallback BPE with a Sequence decoder, "gpt2" otherwise (LlamaHfVocab raises
 * TypeError for Llama 3 and FileNotFoundError for anything else that is not Llama-2-like; both
 * send the converter to _set_vocab_gpt2).
 */
export function llamaHfApplies(tokenizerJson: JsonObject | undefined): boolean {
  if (tokenizerJson === undefined) return false;
  const model = tokenizerJson["model"];
  if (!isObject(model)) return false;
  const isLlama3 = model["type"] === "BPE" && model["ignore_merges"] === true && model["byte_fallback"] === false;
  if (isLlama3) return false;
  const decoder = tokenizerJson["decoder"];
  return model["type"] === "BPE" && model["byte_fallback"] === true && isObject(decoder) && decoder["type"] === "Sequence";
}

function contentOf(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value["content"] === "string") return value["content"];
  return undefined;
}

/**
 * transformers' all_special_tokens: the special-token attributes of tokenizer_config.json
 * plus additional_special_tokens (and v5's extra_special_tokens).
 */
export function allSpecialTokens(tokenizerConfig: JsonObject | undefined): Set<string> {
  const out = new Set<string>();
  if (tokenizerConfig === undefined) return out;
  for (const attr of ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]) {
    const c = contentOf(tokenizerConfig[`${attr}_token`]);
    if (c !== undefined) out.add(c);
  }
  for (const listKey of ["additional_special_tokens", "extra_special_tokens"]) {
    const list = tokenizerConfig[listKey];
    const values = Array.isArray(list) ? list : isObject(list) ? Object.values(list) : [];
    for (const v of values) {
      const c = contentOf(v);
      if (c !== undefined) out.add(c);
    }
  }
  return out;
}

/** The merge-order scores described at the top of this file. */
export function mergeRankScores(opts: {
  tokens: readonly string[];
  toktypes: Int32Array;
  merges: readonly string[];
}): Float32Array {
  const idOf = new Map<string, number>();
  opts.tokens.forEach((t, id) => {
    if (!idOf.has(t)) idOf.set(t, id);
  });
  const rank = new Map<number, number>();
  opts.merges.forEach((m, r) => {
    const space = m.indexOf(" ");
    const id = idOf.get(m.slice(0, space) + m.slice(space + 1));
    if (id !== undefined && !rank.has(id)) rank.set(id, r);
  });
  const lowest = -opts.merges.length;
  const scores = new Float32Array(opts.tokens.length);
  for (let id = 0; id < scores.length; id++) {
    const r = rank.get(id);
    if (r !== undefined) scores[id] = 0 - r; // 0 - 0 is +0, as -0.0 would differ in bytes
    else scores[id] = opts.toktypes[id] === TokenType.NORMAL ? lowest : 0;
  }
  return scores;
}

/** LlamaHfVocab.all_tokens: base vocabulary in id order, then the added tokens past it. */
export function createVocabLlamaHf(ctx: VocabContext): Required<BaseVocab> {
  const { files } = ctx;
  const tj = files.tokenizerJson as JsonObject;
  const added = readAddedTokens(tj);
  const vocab = readFullVocab(tj, added);
  const model = tj["model"] as JsonObject;
  const baseSize = Object.keys(model["vocab"] as JsonObject).length;

  const reverse = new Map<number, string>();
  for (const [tok, id] of vocab) reverse.set(id, tok);
  const specialIds = new Set<number>();
  for (const tok of allSpecialTokens(files.tokenizerConfig)) {
    const id = vocab.get(tok);
    if (id !== undefined) specialIds.add(id);
  }
  const addedPast = [...added.values()].filter((t) => t.id >= baseSize).sort((a, b) => a.id - b.id);

  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < baseSize; id++) {
    const text = reverse.get(id);
    if (text === undefined) throw new ConversionError(`tokenizer.json model.vocab has no token with id ${id}; ids must be contiguous`);
    tokens.push(text);
    if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) types.push(TokenType.BYTE);
    else types.push(specialIds.has(id) ? TokenType.CONTROL : TokenType.NORMAL);
  }
  for (const t of addedPast) {
    tokens.push(t.content);
    types.push(specialIds.has(t.id) ? TokenType.CONTROL : TokenType.USER_DEFINED);
  }
  const toktypes = Int32Array.from(types);
  const merges = readTokenizerJsonMerges(tj) ?? [];
  return { tokens, toktypes, scores: mergeRankScores({ tokens, toktypes, merges }) };
}

/** _set_vocab_llama_hf, with merge-order scores. */
export async function setVocabLlamaHf(kv: KVList, ctx: VocabContext): Promise<void> {
  await writeLlamaVocab(kv, ctx, createVocabLlamaHf(ctx));
}
