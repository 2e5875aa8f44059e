// SentencePiece vocabularies from tokenizer.model: llama.cpp conversion/base.py
// _create_vocab_sentencepiece / _set_vocab_sentencepiece, and Phi-3's variant of them
// (conversion/phi.py Phi3MiniModel.set_vocab).
import { join } from "node:path";
import { ConversionError } from "@llama-pajamas/artifact";
import { doesTokenLookSpecial } from "./bpe.js";
import {
  isObject,
  isPyInt,
  MAX_TOKENIZER_MODEL_BYTES,
  readFileLimited,
  readJsonObject,
  type JsonObject,
  type VocabContext,
} from "./hf-files.js";
import { KVList, TokenizerKey, TokenType, type BaseVocab } from "./kv-list.js";
import { parseSentencePieceModel, PieceType, type SentencePieceModel } from "./sentencepiece-proto.js";
import { SpecialVocab } from "./special-vocab.js";

/** Score the converter gives padding slots and added tokens. */
const ADDED_TOKEN_SCORE = -1000.0;
/** Score of slots no piece fills. */
const UNFILLED_SCORE = -10000.0;

export async function readSentencePieceModel(dir: string): Promise<SentencePieceModel> {
  const path = join(dir, "tokenizer.model");
  const buf = await readFileLimited(path, MAX_TOKENIZER_MODEL_BYTES);
  if (buf === undefined) {
    throw new ConversionError(`${path} not found; a SentencePiece vocabulary needs the checkpoint's tokenizer.model`);
  }
  return parseSentencePieceModel(buf, path);
}

/** SentencePieceProcessor's IsUnknown / IsControl / IsUnused / IsByte, in the converter's order. */
function pieceTokenType(type: PieceType): TokenType {
  if (type === PieceType.UNKNOWN) return TokenType.UNKNOWN;
  if (type === PieceType.CONTROL) return TokenType.CONTROL;
  if (type === PieceType.UNUSED) return TokenType.UNUSED;
  if (type === PieceType.BYTE) return TokenType.BYTE;
  return TokenType.NORMAL; // USER_DEFINED pieces too: the converter has no IsUserDefined branch
}

interface Slots extends Required<BaseVocab> {
  vocabSize: number;
}

function emptySlots(vocabSize: number): Slots {
  return {
    vocabSize,
    tokens: Array.from({ length: vocabSize }, (_, i) => `[PAD${i}]`),
    scores: new Float32Array(vocabSize).fill(UNFILLED_SCORE),
    toktypes: new Int32Array(vocabSize).fill(TokenType.UNUSED),
  };
}

async function readAddedTokensJson(dir: string): Promise<JsonObject | undefined> {
  return (await readJsonObject(join(dir, "added_tokens.json")))?.value;
}

function outOfRange(what: string, id: number, vocabSize: number): ConversionError {
  return new ConversionError(`${what} has token id ${id}, outside the vocabulary of ${vocabSize} entries`);
}

/** _create_vocab_sentencepiece: tokens, scores and types of `vocab_size` slots. */
export async function createVocabSentencepiece(ctx: VocabContext): Promise<Required<BaseVocab>> {
  const { files, config } = ctx;
  const sp = await readSentencePieceModel(files.dir);
  // find_hparam(["vocab_size_per_layer_input", "vocab_size"], optional=True) or tokenizer.vocab_size()
  const key = ["vocab_size_per_layer_input", "vocab_size"].find((k) => k in config);
  const fromConfig = key === undefined ? undefined : config[key];
  const vocabSize = isPyInt(fromConfig) && fromConfig !== 0 ? fromConfig : sp.pieces.length;
  const v = emptySlots(vocabSize);

  for (let id = 0; id < sp.pieces.length && id < vocabSize; id++) {
    const p = sp.pieces[id]!;
    v.tokens[id] = p.piece;
    v.scores[id] = p.score;
    v.toktypes[id] = pieceTokenType(p.type);
  }

  const addedJson = await readAddedTokensJson(files.dir);
  for (const [content, id] of Object.entries(addedJson ?? {})) {
    if (!isPyInt(id) || id >= vocabSize) continue; // upstream warns and skips
    v.tokens[id] = content;
    v.scores[id] = ADDED_TOKEN_SCORE;
    v.toktypes[id] = TokenType.USER_DEFINED;
  }

  const decoder = files.tokenizerConfig?.["added_tokens_decoder"];
  for (const [idText, data] of Object.entries(isObject(decoder) ? decoder : {})) {
    const id = Number.parseInt(idText, 10);
    if (!isObject(data) || typeof data["content"] !== "string" || !(id < vocabSize)) continue;
    let token = data["content"];
    if (data["special"] === true || doesTokenLookSpecial(token)) v.toktypes[id] = TokenType.CONTROL;
    else {
      token = token.replaceAll("\u2581", " "); // pre-normalize user-defined spaces
      v.toktypes[id] = TokenType.USER_DEFINED;
    }
    v.scores[id] = ADDED_TOKEN_SCORE;
    v.tokens[id] = token;
  }
  return v;
}

/** Phi3MiniModel.set_vocab's own copy of the above: no range checks, tokenizer.json added tokens too. */
export async function createVocabPhi3(ctx: VocabContext): Promise<Required<BaseVocab>> {
  const { files, config } = ctx;
  const sp = await readSentencePieceModel(files.dir);
  const vocabSize = "vocab_size" in config && isPyInt(config["vocab_size"]) ? config["vocab_size"] : sp.pieces.length;
  if (sp.pieces.length > vocabSize) throw outOfRange("tokenizer.model", sp.pieces.length - 1, vocabSize);
  const v = emptySlots(vocabSize);
  sp.pieces.forEach((p, id) => {
    v.tokens[id] = p.piece;
    v.scores[id] = p.score;
    v.toktypes[id] = pieceTokenType(p.type);
  });

  const addedJson = await readAddedTokensJson(files.dir);
  for (const [content, id] of Object.entries(addedJson ?? {})) {
    if (!isPyInt(id) || id >= vocabSize) continue;
    v.tokens[id] = content;
    v.scores[id] = ADDED_TOKEN_SCORE;
    v.toktypes[id] = TokenType.USER_DEFINED;
  }
  const setAdded = (what: string, id: number, content: string, special: boolean): void => {
    if (!(id >= 0 && id < vocabSize)) throw outOfRange(what, id, vocabSize);
    v.tokens[id] = content;
    v.scores[id] = ADDED_TOKEN_SCORE;
    v.toktypes[id] = special ? TokenType.CONTROL : TokenType.USER_DEFINED;
  };
  const decoder = files.tokenizerConfig?.["added_tokens_decoder"];
  for (const [idText, data] of Object.entries(isObject(decoder) ? decoder : {})) {
    if (!isObject(data) || typeof data["content"] !== "string") continue;
    setAdded("tokenizer_config.json", Number.parseInt(idText, 10), data["content"], data["special"] === true);
  }
  const added = files.tokenizerJson?.["added_tokens"];
  for (const data of Array.isArray(added) ? added : []) {
    if (!isObject(data) || typeof data["content"] !== "string" || !isPyInt(data["id"])) continue;
    setAdded("tokenizer.json", data["id"], data["content"], data["special"] === true);
  }
  return v;
}

/** Writes model "llama", pre "default", tokens, scores, types, then SpecialVocab(n_vocab). */
export async function writeLlamaVocab(kv: KVList, ctx: VocabContext, vocab: Required<BaseVocab>): Promise<void> {
  kv.addString(TokenizerKey.MODEL, "llama");
  kv.addString(TokenizerKey.PRE, "default");
  kv.addStringArray(TokenizerKey.LIST, vocab.tokens);
  kv.addFloat32Array(TokenizerKey.SCORES, vocab.scores);
  kv.addInt32Array(TokenizerKey.TOKEN_TYPE, vocab.toktypes);
  const special = await SpecialVocab.load({ files: ctx.files, config: ctx.config, nVocab: vocab.tokens.length });
  special.addTo(kv);
}

/** _set_vocab_sentencepiece */
export async function setVocabSentencepiece(kv: KVList, ctx: VocabContext): Promise<void> {
  await writeLlamaVocab(kv, ctx, await createVocabSentencepiece(ctx));
}
