// tokenizer.ggml.pre for byte-level BPE vocabularies, chosen as llama.cpp's converter chooses it
// (conversion/base.py get_vocab_base_pre): tokenize CHKTXT with the Hugging Face tokenizer
// (special tokens added, as tokenizer.encode does), hash Python's str() of the id list, and look
// the hash up. @huggingface/tokenizers stands in for transformers' fast tokenizer; it gives the
// same ids on the fixtures (qwen3: hash e636dc30..., the Qwen1.5 entry, "qwen2").
import { createHash } from "node:crypto";
import { Tokenizer } from "@huggingface/tokenizers";
import { ConversionError, InputError } from "@llama-pajamas/artifact";
import type { TokenizerFiles } from "./hf-files.js";
import { CHKTXT, PRE_TOKENIZER_HASHES } from "./pre-tokenizer-table.js";

const PRE_BY_HASH: ReadonlyMap<string, string> = new Map(PRE_TOKENIZER_HASHES);

/** The library tokenizer for tokenizer.json (+ tokenizer_config.json), from its own parse. */
export function createHfTokenizer(files: TokenizerFiles): Tokenizer {
  if (files.tokenizerJsonText === undefined) {
    throw new ConversionError(
      `${files.dir} has no tokenizer.json; a byte-level BPE vocabulary is built from it. ` +
        `Add the checkpoint's tokenizer.json`,
    );
  }
  try {
    return new Tokenizer(JSON.parse(files.tokenizerJsonText) as object, (files.tokenizerConfig ?? {}) as object);
  } catch (cause) {
    throw new InputError(
      `cannot load ${files.dir}/tokenizer.json as a Hugging Face tokenizer: ${(cause as Error).message}`,
      { path: `${files.dir}/tokenizer.json`, cause },
    );
  }
}

/** sha256 of Python's str(list_of_ids), e.g. "[1, 22, 333]". */
export function hashTokenIds(ids: readonly number[]): string {
  return createHash("sha256").update(`[${ids.join(", ")}]`).digest("hex");
}

export function chkhsh(tokenizer: Tokenizer): string {
  return hashTokenIds(tokenizer.encode(CHKTXT).ids);
}

/** The tokenizer.ggml.pre name for a fingerprint; throws like the converter when unknown. */
export function preTokenizerForHash(hash: string, dir: string): string {
  const pre = PRE_BY_HASH.get(hash);
  if (pre === undefined) {
    throw new ConversionError(
      `the BPE pre-tokenizer of ${dir} was not recognized (chkhsh ${hash}); llama.cpp's converter ` +
        `refuses it too. Its tokenizer is not in get_vocab_base_pre's table: use a checkpoint whose ` +
        `tokenizer llama.cpp knows, or add the model to convert_hf_to_gguf_update.py upstream`,
      { code: "E_UNKNOWN_PRE_TOKENIZER" },
    );
  }
  return pre;
}
