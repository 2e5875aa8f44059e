import { GGUFValueType, type GGUFKV } from "../formats/gguf-types.js";

/** gguf-py constants.py TokenType (also SentencePiece's piece types, same numbers). */
export enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** gguf-py constants.py Keys.Tokenizer: the keys this module writes. */
export const TokenizerKey = {
  MODEL: "tokenizer.ggml.model",
  PRE: "tokenizer.ggml.pre",
  LIST: "tokenizer.ggml.tokens",
  TOKEN_TYPE: "tokenizer.ggml.token_type",
  SCORES: "tokenizer.ggml.scores",
  MERGES: "tokenizer.ggml.merges",
  ADD_PREFIX: "tokenizer.ggml.add_space_prefix",
  CHAT_TEMPLATE: "tokenizer.chat_template",
  CHAT_TEMPLATES: "tokenizer.chat_templates",
  NORMALIZER_LOWERCASE: "tokenizer.ggml.normalizer.lowercase",
  NORMALIZER_STRIP_ACCENTS: "tokenizer.ggml.normalizer.strip_accents",
} as const;

/**
 * The KV entries of one conversion, with the semantics of GGUFWriter.kv_data (a Python dict):
 * setting a key again overwrites its value but keeps its first position; removing a key drops
 * it. The converter relies on both (SpecialVocab may re-set add_bos_token, a null chat template
 * removes the key), so the order only comes out right if we do the same.
 */
export class KVList {
  private readonly entries = new Map<string, GGUFKV>();

  set(kv: GGUFKV): void {
    this.entries.set(kv.key, kv);
  }

  remove(key: string): void {
    this.entries.delete(key);
  }

  toArray(): GGUFKV[] {
    return [...this.entries.values()];
  }

  addString(key: string, value: string): void {
    this.set({ key, type: GGUFValueType.STRING, value });
  }

  addUint32(key: string, value: number): void {
    this.set({ key, type: GGUFValueType.UINT32, value });
  }

  addBool(key: string, value: boolean): void {
    this.set({ key, type: GGUFValueType.BOOL, value });
  }

  // GGUFWriter.add_array skips empty arrays; so do these.
  addStringArray(key: string, value: readonly string[]): void {
    if (value.length === 0) return;
    this.set({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value });
  }

  addFloat32Array(key: string, value: Float32Array): void {
    if (value.length === 0) return;
    this.set({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.FLOAT32, value });
  }

  /** Token types: Python ints (IntEnum) become INT32 items (GGUFValueType.get_type). */
  addInt32Array(key: string, value: Int32Array): void {
    if (value.length === 0) return;
    this.set({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32, value });
  }
}

/** What every vocabulary builder produces before the special tokens are added. */
export interface BaseVocab {
  tokens: string[];
  toktypes: Int32Array;
  /** Only SentencePiece-style vocabularies carry scores. */
  scores?: Float32Array;
}
