// Port of gguf-py/gguf/vocab.py SpecialVocab: merges, special token ids, add_*_token flags,
// chat template and normalizer flags, with the same sources and the same precedence:
// tokenizer.json (merges, post_processor) and tokenizer_config.json first, then config.json
// (`<typ>_token_id`, only for types still unset). generation_config.json is not consulted, and a
// list-valued `eos_token_id` is ignored (only ints count), exactly as in gguf-py.
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { ConversionError } from "@llama-pajamas/artifact";
import { fileExists, isObject, isPyInt, pyTruthy, readJsonObject, type JsonObject, type TokenizerFiles } from "./hf-files.js";
import { parseMergesTxt, readTokenizerJsonMerges } from "./merges.js";
import { TokenizerKey, type KVList } from "./kv-list.js";
import { readPostProcessor } from "./special-vocab-post.js";

export const DEFAULT_SPECIAL_TOKEN_TYPES: readonly string[] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/** GGUFWriter.add_<typ>_token_id handlers; types without one (cls, prefix ...) are skipped. */
const ID_KEYS: Readonly<Record<string, string>> = {
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  sep: "tokenizer.ggml.seperator_token_id", // sic, upstream spelling
  pad: "tokenizer.ggml.padding_token_id",
  mask: "tokenizer.ggml.mask_token_id",
  eot: "tokenizer.ggml.eot_token_id",
  eom: "tokenizer.ggml.eom_token_id",
};

/** GGUFWriter.add_add_<typ>_token handlers. */
const ADD_KEYS: Readonly<Record<string, string>> = {
  bos: "tokenizer.ggml.add_bos_token",
  eos: "tokenizer.ggml.add_eos_token",
  sep: "tokenizer.ggml.add_sep_token",
};

export type ChatTemplate = string | unknown[];

export interface SpecialVocabOptions {
  files: TokenizerFiles;
  /** config.json, parsed. */
  config: JsonObject;
  loadMerges?: boolean;
  specialTokenTypes?: readonly string[];
  /** Ids at or above this are skipped (gguf-py n_vocab); undefined: no check. */
  nVocab?: number;
}

export class SpecialVocab {
  merges: string[] = [];
  readonly addSpecialToken = new Map<string, boolean>();
  readonly specialTokenIds = new Map<string, number>();
  chatTemplate: ChatTemplate | null = null;
  normalizerLowercase: boolean | undefined;
  normalizerStripAccents: boolean | undefined;
  specialTokenTypes: string[];
  private readonly nVocab: number | undefined;

  private constructor(opts: SpecialVocabOptions) {
    this.specialTokenTypes = [...(opts.specialTokenTypes ?? DEFAULT_SPECIAL_TOKEN_TYPES)];
    this.nVocab = opts.nVocab;
  }

  static async load(opts: SpecialVocabOptions): Promise<SpecialVocab> {
    const sv = new SpecialVocab(opts);
    await sv.loadFromTokenizerJson(opts.files, opts.loadMerges ?? false);
    sv.loadFromConfig(opts.config);
    if (opts.loadMerges && sv.merges.length === 0) {
      const text = await readMergesTxt(opts.files.dir);
      if (text !== undefined) sv.merges = parseMergesTxt(text);
    }
    return sv;
  }

  /** gguf-py _set_special_token: first setter wins; non-ints are ignored. */
  setSpecialToken(typ: string, tid: unknown): void {
    if (!isPyInt(tid)) return;
    if (tid < 0) throw new ConversionError(`invalid value for special token type ${typ}: ${tid}; ids must be >= 0`);
    if (this.nVocab !== undefined && tid >= this.nVocab) return; // upstream warns and skips
    if (!this.specialTokenIds.has(typ)) this.specialTokenIds.set(typ, tid);
  }

  /** gguf-py SpecialVocab.add_to_gguf. */
  addTo(kv: KVList): void {
    kv.addStringArray(TokenizerKey.MERGES, this.merges);
    for (const [typ, id] of this.specialTokenIds) {
      const key = ID_KEYS[typ];
      if (key !== undefined) kv.addUint32(key, id);
    }
    for (const [typ, value] of this.addSpecialToken) {
      const key = ADD_KEYS[typ];
      if (key !== undefined) kv.addBool(key, value);
    }
    if (this.chatTemplate !== null) addChatTemplate(kv, this.chatTemplate);
    if (this.normalizerLowercase !== undefined) kv.addBool(TokenizerKey.NORMALIZER_LOWERCASE, this.normalizerLowercase);
    if (this.normalizerStripAccents !== undefined) {
      kv.addBool(TokenizerKey.NORMALIZER_STRIP_ACCENTS, this.normalizerStripAccents);
    }
  }

  private parseNormalizer(normalizer: JsonObject): void {
    const type = normalizer["type"];
    if (type === "Lowercase") this.normalizerLowercase = true;
    else if (type === "StripAccents") this.normalizerStripAccents = true;
    else if (type === "BertNormalizer") {
      if ("lowercase" in normalizer) this.normalizerLowercase = normalizer["lowercase"] as boolean;
      if ("strip_accents" in normalizer) this.normalizerStripAccents = normalizer["strip_accents"] as boolean;
    } else if (type === "Sequence") {
      const list = normalizer["normalizers"];
      for (const n of Array.isArray(list) ? list : []) if (isObject(n)) this.parseNormalizer(n);
    }
  }

  private async loadFromTokenizerJson(files: TokenizerFiles, loadMerges: boolean): Promise<void> {
    const tokenizer = files.tokenizerJson;
    let addedTokens: unknown[] = [];
    if (tokenizer !== undefined) {
      if (loadMerges) this.merges = readTokenizerJsonMerges(tokenizer) ?? [];
      const normalizer = tokenizer["normalizer"];
      if (pyTruthy(normalizer) && isObject(normalizer)) this.parseNormalizer(normalizer);
      const list = tokenizer["added_tokens"];
      addedTokens = Array.isArray(list) ? list : [];
    }
    // The upstream code writes derived entries back into its tokenizer_config dict: do it on a copy.
    const tokenizerConfig = files.tokenizerConfig === undefined ? undefined : structuredClone(files.tokenizerConfig);
    if (pyTruthy(tokenizer) && tokenizer !== undefined) {
      const post = readPostProcessor(tokenizer, tokenizerConfig, this.specialTokenTypes);
      for (const [typ, value] of post.addSpecialToken) this.addSpecialToken.set(typ, value);
      this.specialTokenTypes = post.specialTokenTypes;
    }
    if (!pyTruthy(tokenizerConfig) || tokenizerConfig === undefined) return;

    const alt = await readChatTemplateAlt(files.dir);
    const chatTemplate = "chat_template" in tokenizerConfig ? tokenizerConfig["chat_template"] : alt;
    if (chatTemplate === null || chatTemplate === undefined) this.chatTemplate = null;
    else if (typeof chatTemplate === "string" || Array.isArray(chatTemplate)) this.chatTemplate = chatTemplate;
    // else: upstream warns "Bad type for chat_template" and ignores it.

    for (const typ of this.specialTokenTypes) {
      const addEntry = tokenizerConfig[`add_${typ}_token`];
      if (typeof addEntry === "boolean") this.addSpecialToken.set(typ, addEntry);
      const entry = tokenizerConfig[`${typ}_token`];
      let content: string;
      if (typeof entry === "string") content = entry;
      else if (isObject(entry) && typeof entry["content"] === "string") content = entry["content"];
      else continue;
      // Only the first added token with that content counts.
      const match = addedTokens.find((t) => isObject(t) && t["content"] === content);
      this.setSpecialToken(typ, isObject(match) ? match["id"] : undefined);
    }
  }

  private loadFromConfig(config: JsonObject): void {
    const textConfig = config["text_config"];
    for (const typ of this.specialTokenTypes) {
      let tokenId = config[`${typ}_token_id`];
      // Multimodal configs (Kimi-VL ...) keep the ids in text_config.
      if ((tokenId === undefined || tokenId === null) && isObject(textConfig)) tokenId = textConfig[`${typ}_token_id`];
      this.setSpecialToken(typ, tokenId);
    }
  }
}

async function readMergesTxt(dir: string): Promise<string | undefined> {
  const path = join(dir, "merges.txt");
  if (!(await fileExists(path))) return undefined;
  return readFile(path, "utf8");
}

/** chat_template.jinja (plus additional_chat_templates/*.jinja), else chat_template.json. */
async function readChatTemplateAlt(dir: string): Promise<unknown> {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (await fileExists(jinjaPath)) {
    const main = await readFile(jinjaPath, "utf8");
    const extraDir = join(dir, "additional_chat_templates");
    let extra: string[] = [];
    try {
      extra = (await readdir(extraDir)).filter((f) => f.endsWith(".jinja")).sort();
    } catch {
      extra = [];
    }
    if (extra.length === 0) return main;
    const list: unknown[] = [{ name: "default", template: main }];
    for (const f of extra) list.push({ name: basename(f, ".jinja"), template: await readFile(join(extraDir, f), "utf8") });
    return list;
  }
  const json = await readJsonObject(join(dir, "chat_template.json"));
  return json === undefined ? undefined : json.value["chat_template"];
}

/** GGUFWriter.add_chat_template: named templates first, then their list, then the default. */
function addChatTemplate(kv: KVList, value: ChatTemplate): void {
  if (typeof value === "string") {
    kv.addString(TokenizerKey.CHAT_TEMPLATE, value);
    return;
  }
  let templateDefault: string | undefined;
  // Upstream collects the names in a Python set (arbitrary order); we keep first-seen order.
  const names = new Set<string>();
  for (const choice of value) {
    if (!isObject(choice)) continue;
    const rawName = typeof choice["name"] === "string" ? choice["name"] : "";
    const template = choice["template"];
    const name = rawName.replace(/[^A-Za-z0-9]/gu, "_");
    if (name === "" || typeof template !== "string") continue;
    if (name === "default") templateDefault = template;
    else {
      names.add(name);
      kv.addString(`${TokenizerKey.CHAT_TEMPLATE}.${name}`, template);
    }
  }
  if (names.size > 0) kv.addStringArray(TokenizerKey.CHAT_TEMPLATES, [...names]);
  if (templateDefault !== undefined) kv.addString(TokenizerKey.CHAT_TEMPLATE, templateDefault);
}
