// BPE merges as gguf-py SpecialVocab reads them: tokenizer.json model.merges (old "a b" strings
// or the pair form transformers >= 4.45 writes), else merges.txt.
import { ConversionError } from "@llama-pajamas/artifact";
import { isObject, type JsonObject } from "./hf-files.js";

/** Python str.isspace() characters: what str.split() / str.strip() treat as whitespace. */
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`, "u");
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");

/**
 * tokenizer.json merges as the strings llama.cpp stores; undefined when there are none.
 * In the pair form a space inside a part is written as U+0120 (chr(ord(" ") + 256)), as
 * gguf-py does, so that the "left right" string stays splittable.
 */
export function readTokenizerJsonMerges(tokenizer: JsonObject): string[] | undefined {
  const model = tokenizer["model"];
  const merges = isObject(model) ? model["merges"] : undefined;
  if (!Array.isArray(merges) || merges.length === 0) return undefined;
  const first: unknown = merges[0];
  if (typeof first === "string") {
    return merges.map((m, i) => {
      if (typeof m !== "string") throw badMerge(i, m);
      return m;
    });
  }
  if (Array.isArray(first) && first.length === 2 && typeof first[0] === "string") {
    return merges.map((pair, i) => {
      if (!Array.isArray(pair) || !pair.every((p) => typeof p === "string")) throw badMerge(i, pair);
      return (pair as string[]).map((part) => part.replaceAll(" ", "\u0120")).join(" ");
    });
  }
  throw new ConversionError(
    `unknown tokenizer merges format in tokenizer.json: model.merges[0] is ${JSON.stringify(first)}; ` +
      `expected "left right" strings or [left, right] pairs`,
  );
}

function badMerge(index: number, value: unknown): ConversionError {
  return new ConversionError(
    `tokenizer.json model.merges[${index}] is ${JSON.stringify(value)}; expected the same form as merges[0]`,
  );
}

/** gguf-py SpecialVocab._try_load_merges_txt: an optional "#" header, then "left right" lines. */
export function parseMergesTxt(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const start = (lines[0] ?? "").replace(PY_STRIP, "").startsWith("#") ? 1 : 0;
  const merges: string[] = [];
  for (const raw of lines.slice(start)) {
    const line = raw.replace(PY_STRIP, "");
    if (line === "") continue;
    const parts = line.split(PY_SPLIT);
    if (parts.length !== 2) continue; // upstream warns "Entry malformed, ignoring"
    merges.push(`${parts[0]} ${parts[1]}`);
  }
  return merges;
}
