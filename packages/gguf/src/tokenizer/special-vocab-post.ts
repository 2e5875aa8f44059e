// The post_processor part of gguf-py vocab.py SpecialVocab._try_load_from_tokenizer_json:
// whether BOS/EOS/SEP are added, read from RobertaProcessing or (crudely, as upstream says)
// from a TemplateProcessing's single/pair templates. It also fills in bos/cls/eos/sep/eot/eom
// entries of tokenizer_config, which the caller then resolves to ids: `tokenizerConfig` is
// mutated, so pass a copy. Python truthiness and `in (a, b)` comparisons are kept as they are.
import { isObject, pyTruthy, type JsonObject } from "./hf-files.js";

export interface PostProcessorResult {
  addSpecialToken: Map<string, boolean>;
  /** The special token types, possibly extended with "eot" / "eom". */
  specialTokenTypes: string[];
}

/** Python `==` on JSON values (None == None; a dict never equals a string). */
function pyEq(a: unknown, b: unknown): boolean {
  const na = a === undefined ? null : a;
  const nb = b === undefined ? null : b;
  if (na === nb) return true;
  return isObject(na) && isObject(nb) && JSON.stringify(na) === JSON.stringify(nb);
}

function pyIn(value: unknown, choices: unknown[]): boolean {
  return choices.some((c) => pyEq(value, c));
}

/** item.get('SpecialToken', {}).get('id') */
function specialId(item: unknown): unknown {
  const st = isObject(item) ? item["SpecialToken"] : undefined;
  return isObject(st) ? st["id"] : undefined;
}

/** item.get('Sequence', {}).get('id') */
function sequenceId(item: unknown): unknown {
  const seq = isObject(item) ? item["Sequence"] : undefined;
  return isObject(seq) ? seq["id"] : undefined;
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function readPostProcessor(
  tokenizer: JsonObject,
  tokenizerConfig: JsonObject | undefined,
  specialTokenTypes: readonly string[],
): PostProcessorResult {
  const add = new Map<string, boolean>();
  let types = [...specialTokenTypes];
  const tc = tokenizerConfig;
  const tcTruthy = (): boolean => pyTruthy(tc);
  let specialBos = tc?.["bos_token"];
  let specialCls = tc?.["cls_token"];
  let specialEos = tc?.["eos_token"];
  let specialSep = tc?.["sep_token"];
  if (!pyTruthy(specialBos) && pyTruthy(specialCls) && tc && tcTruthy()) tc["bos_token"] = specialBos = specialCls;
  if (!pyTruthy(specialEos) && pyTruthy(specialSep) && tc && tcTruthy()) tc["eos_token"] = specialEos = specialSep;

  const postProcessor = tokenizer["post_processor"];
  if (!pyTruthy(postProcessor) || !isObject(postProcessor)) return { addSpecialToken: add, specialTokenTypes: types };
  const processors = "processors" in postProcessor ? asList(postProcessor["processors"]) : [postProcessor];

  for (const processor of processors) {
    if (!isObject(processor)) continue;
    if (processor["type"] === "RobertaProcessing") {
      add.set("bos", true);
      add.set("eos", true);
      add.set("sep", true);
      if (!pyTruthy(specialCls) && tc && tcTruthy()) {
        specialCls = "cls" in processor ? asList(processor["cls"])[0] : specialBos;
        tc["cls_token"] = specialCls;
      }
      if (!pyTruthy(specialSep) && tc && tcTruthy()) {
        specialSep = "sep" in processor ? asList(processor["sep"])[0] : specialEos;
        tc["sep_token"] = specialSep;
      }
      continue;
    }
    if (processor["type"] !== "TemplateProcessing") continue;

    const single = asList(processor["single"]);
    let pair = asList(processor["pair"]);
    let specialFirst: unknown = undefined;
    let specialLast: unknown = undefined;
    if (single.length > 1) {
      specialFirst = specialId(single[0]);
      if (pyTruthy(specialFirst)) {
        if (!tc || !tcTruthy()) specialBos = specialFirst;
        else if (!pyIn(specialFirst, [specialBos, specialCls])) {
          if (!pyTruthy(specialBos)) tc["bos_token"] = specialBos = specialFirst;
          if (!pyTruthy(specialCls)) tc["cls_token"] = specialCls = specialFirst;
        }
        add.set("bos", pyIn(specialFirst, [specialBos, specialCls]));
      }
      specialLast = specialId(single[single.length - 1]);
      if (pyTruthy(specialLast)) {
        if (!tc || !tcTruthy()) specialEos = specialLast;
        else if (!pyEq(specialLast, specialEos)) {
          if (!types.includes("eot")) {
            types = [...types, "eot"];
            tc["eot_token"] = specialEos;
          } else if (!types.includes("eom")) {
            types = [...types, "eom"];
            tc["eom_token"] = specialEos;
          } // else upstream warns: EOS overridden without EOT/EOM fallback
          tc["eos_token"] = specialEos = specialLast;
        }
        add.set("eos", pyEq(specialLast, specialEos));
      }
    }
    if (pair.length > 0) {
      const seqStart = pyTruthy(specialFirst) && pyEq(specialId(pair[0]), specialFirst) ? 1 : 0;
      const seqStop = pyTruthy(specialLast) && pyEq(specialId(pair[pair.length - 1]), specialLast) ? -1 : undefined;
      pair = pair.slice(seqStart, seqStop);
      if (pair.length > 0) {
        const a = sequenceId(pair[0]);
        const b = sequenceId(pair[pair.length - 1]);
        const middle = pair.slice(1, -1);
        if (a === "A" && b === "B" && middle.length > 0) {
          let addSep = false;
          const first = specialId(middle[0]);
          if (pyTruthy(first) && pyIn(first, [specialSep, specialEos]) && !pyTruthy(specialLast)) addSep = true;
          if (middle.length === 2) {
            const second = specialId(middle[1]);
            if (pyTruthy(second) && pyIn(second, [specialSep, specialEos])) addSep = true;
          }
          add.set("sep", addSep);
          if (addSep && !pyTruthy(specialSep) && tc && tcTruthy()) tc["sep_token"] = specialEos;
        }
      }
    }
  }
  return { addSpecialToken: add, specialTokenTypes: types };
}
