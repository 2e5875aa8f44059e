import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "@llama-pajamas/artifact";

/** Largest tokenizer JSON file we read (Gemma-3's tokenizer.json is ~33 MB). */
export const MAX_TOKENIZER_JSON_BYTES = 256 * 1024 * 1024;
/** Largest tokenizer.model we read (SentencePiece models are a few MB). */
export const MAX_TOKENIZER_MODEL_BYTES = 64 * 1024 * 1024;

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Python's truthiness of a JSON value (`if x:`), which the converter's logic leans on. */
export function pyTruthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false) return false;
  if (typeof value === "number") return value !== 0;
  if (typeof value === "string" || Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value).length > 0;
  return true;
}

/** Python's isinstance(x, int) for a parsed JSON number (JSON 1.0 parses as an int here, a float there). */
export function isPyInt(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value);
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Reads a file of at most `limitBytes`; undefined when it does not exist. */
export async function readFileLimited(path: string, limitBytes: number): Promise<Buffer | undefined> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) return undefined;
    size = info.size;
  } catch {
    return undefined;
  }
  if (size > limitBytes) {
    throw new InputError(`${path} is ${size} bytes; the limit for tokenizer files is ${limitBytes} bytes`, {
      path,
    });
  }
  try {
    return await readFile(path);
  } catch (cause) {
    throw new InputError(`cannot read ${path}: ${(cause as Error).message}`, { path, cause });
  }
}

/** Parses a JSON object file; undefined when the file does not exist. */
export async function readJsonObject(path: string): Promise<{ value: JsonObject; text: string } | undefined> {
  const buf = await readFileLimited(path, MAX_TOKENIZER_JSON_BYTES);
  if (buf === undefined) return undefined;
  const text = buf.toString("utf8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new InputError(`${path} is not valid JSON: ${(cause as Error).message}; re-download the file`, {
      path,
      cause,
    });
  }
  if (!isObject(value)) {
    throw new InputError(`${path} must hold a JSON object, found ${Array.isArray(value) ? "an array" : typeof value}`, {
      path,
    });
  }
  return { value, text };
}

/** The Hugging Face tokenizer files of one checkpoint folder, each read once. */
export interface TokenizerFiles {
  dir: string;
  /** tokenizer.json, parsed. */
  tokenizerJson: JsonObject | undefined;
  /** tokenizer.json as text: the tokenizer library gets its own parse (it may mutate it). */
  tokenizerJsonText: string | undefined;
  /** tokenizer_config.json, parsed (treat as read-only; SpecialVocab works on a copy). */
  tokenizerConfig: JsonObject | undefined;
  /** Whether a SentencePiece tokenizer.model is present. */
  hasTokenizerModel: boolean;
}

export async function loadTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const [tokenizer, config, hasTokenizerModel] = await Promise.all([
    readJsonObject(join(dir, "tokenizer.json")),
    readJsonObject(join(dir, "tokenizer_config.json")),
    fileExists(join(dir, "tokenizer.model")),
  ]);
  return {
    dir,
    tokenizerJson: tokenizer?.value,
    tokenizerJsonText: tokenizer?.text,
    tokenizerConfig: config?.value,
    hasTokenizerModel,
  };
}

/** What every vocabulary builder reads: the tokenizer files and config.json. */
export interface VocabContext {
  files: TokenizerFiles;
  /** config.json as parsed (hparams: vocab_size, *_token_id). */
  config: JsonObject;
}
