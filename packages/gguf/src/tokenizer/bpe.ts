// Byte-level BPE ("gpt2") vocabularies: llama.cpp conversion/base.py TextModel.get_vocab_base
// and _set_vocab_gpt2.
import { ConversionError } from "@llama-pajamas/artifact";
import { isObject, isPyInt, type JsonObject, type VocabContext } from "./hf-files.js";
import { KVList, TokenizerKey, TokenType, type BaseVocab } from "./kv-list.js";
import { chkhsh, createHfTokenizer, preTokenizerForHash } from "./pre-tokenizer.js";
import { SpecialVocab } from "./special-vocab.js";

export interface AddedTokenInfo {
  id: number;
  content: string;
  special: boolean;
  normalized: boolean;
}

/** tokenizer.json added_tokens, by id. */
export function readAddedTokens(tokenizerJson: JsonObject | undefined): Map<number, AddedTokenInfo> {
  const out = new Map<number, AddedTokenInfo>();
  const list = tokenizerJson?.["added_tokens"];
  for (const t of Array.isArray(list) ? list : []) {
    if (!isObject(t) || !isPyInt(t["id"]) || typeof t["content"] !== "string") continue;
    const special = t["special"] === true;
    // tokenizers' AddedToken: `normalized` defaults to !special.
    const normalized = typeof t["normalized"] === "boolean" ? t["normalized"] : !special;
    out.set(t["id"], { id: t["id"], content: t["content"], special, normalized });
  }
  return out;
}

/** transformers' tokenizer.vocab (get_vocab()): the model vocabulary plus the added tokens. */
export function readFullVocab(tokenizerJson: JsonObject, added: ReadonlyMap<number, AddedTokenInfo>): Map<string, number> {
  const vocab = new Map<string, number>();
  const model = tokenizerJson["model"];
  const raw = isObject(model) ? model["vocab"] : undefined;
  if (Array.isArray(raw)) {
    // Unigram: [[piece, score], ...], the id is the index.
    raw.forEach((entry, id) => {
      if (Array.isArray(entry) && typeof entry[0] === "string") vocab.set(entry[0], id);
    });
  } else if (isObject(raw)) {
    for (const [tok, id] of Object.entries(raw)) if (isPyInt(id)) vocab.set(tok, id);
  } else {
    throw new ConversionError(`tokenizer.json has no model.vocab; cannot build the token list`);
  }
  for (const t of added.values()) vocab.set(t.content, t.id);
  return vocab;
}

/** base.py does_token_look_special: added tokens that ought to be CONTROL even if not "special". */
export function doesTokenLookSpecial(token: string): boolean {
  return (
    token === "<pad>" ||
    token === "<mask>" ||
    token === "<2mass>" ||
    token === "[@BOS@]" ||
    (token.startsWith("<|") && token.endsWith("|>")) ||
    (token.startsWith("<\uff5c") && token.endsWith("\uff5c>")) || // deepseek-coder's fullwidth bars
    (token.startsWith("<unused") && token.endsWith(">"))
  );
}

/** get_vocab_base: tokens, token types and the pre-tokenizer name. */
export function getVocabBase(ctx: VocabContext): BaseVocab & { pre: string } {
  const { files, config } = ctx;
  const tokenizer = createHfTokenizer(files);
  const tokenizerJson = files.tokenizerJson as JsonObject; // createHfTokenizer checked it exists
  const added = readAddedTokens(tokenizerJson);
  const vocab = readFullVocab(tokenizerJson, added);
  const vocabSize = isPyInt(config["vocab_size"]) ? config["vocab_size"] : vocab.size;
  let maxId = -1;
  for (const id of vocab.values()) maxId = Math.max(maxId, id);
  if (maxId >= vocabSize) {
    throw new ConversionError(
      `tokenizer of ${files.dir} has token id ${maxId} but config.json vocab_size is ${vocabSize}; ` +
        `the vocabulary must fit the embedding (llama.cpp asserts the same)`,
    );
  }
  const pre = preTokenizerForHash(chkhsh(tokenizer), files.dir);

  const reverse = new Map<number, string>();
  for (const [tok, id] of vocab) reverse.set(id, tok);
  const addedContents = new Set([...added.values()].map((t) => t.content));
  const cleanUp = files.tokenizerConfig?.["clean_up_tokenization_spaces"] === true;

  const tokens: string[] = new Array<string>(vocabSize);
  const toktypes = new Int32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    const found = reverse.get(i);
    if (found === undefined) {
      tokens[i] = `[PAD${i}]`;
      toktypes[i] = TokenType.UNUSED;
      continue;
    }
    let token: string = found;
    if (addedContents.has(token)) {
      const info = added.get(i);
      if (info === undefined) {
        throw new ConversionError(`added token ${JSON.stringify(token)} has no entry for id ${i} in tokenizer.json`);
      }
      // llama.cpp assumes CONTROL and USER_DEFINED tokens are pre-normalized: round-trip the
      // ones the tokenizer would not normalize, as the converter does.
      if (!info.normalized) {
        const ids = tokenizer.encode(token, { add_special_tokens: false }).ids;
        token = tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: cleanUp });
      }
      if (info.special || doesTokenLookSpecial(token)) {
        toktypes[i] = TokenType.CONTROL;
      } else {
        token = token.replaceAll("\u2581", " "); // pre-normalize user-defined spaces (Gemma)
        toktypes[i] = TokenType.USER_DEFINED;
      }
    } else {
      toktypes[i] = TokenType.NORMAL;
    }
    tokens[i] = token;
  }
  return { tokens, toktypes, pre };
}

/** _set_vocab_gpt2: model, pre, tokens, token types, then SpecialVocab with merges. */
export async function setVocabGpt2(kv: KVList, ctx: VocabContext): Promise<void> {
  const { tokens, toktypes, pre } = getVocabBase(ctx);
  kv.addString(TokenizerKey.MODEL, "gpt2");
  kv.addString(TokenizerKey.PRE, pre);
  kv.addStringArray(TokenizerKey.LIST, tokens);
  kv.addInt32Array(TokenizerKey.TOKEN_TYPE, toktypes);
  const special = await SpecialVocab.load({ files: ctx.files, config: ctx.config, loadMerges: true });
  special.addTo(kv);
}
