// JSON the way mlx-lm writes it: Python's json.load then json.dump(obj, f, indent=4).
// Parsing keeps what JSON.parse loses and Python keeps: key order (JS objects move integer-like
// keys first), ints vs floats (`500000.0` stays a float, `1e-6` prints as `1e-06`) and ints past
// 2^53. Dumping follows json.dump's defaults: ensure_ascii, `": "` and `","` + newline with an
// indent, `[]`/`{}` for empty containers, float repr, NaN/Infinity spelled out, no final newline.
import { InputError } from "@llama-pajamas/artifact";

export class PyInt {
  constructor(readonly raw: string) {}
}
export class PyFloat {
  constructor(readonly value: number) {}
}
/** An ordered dict. */
export class PyDict {
  readonly entries: [string, PyValue][];
  constructor(entries: [string, PyValue][] = []) {
    this.entries = entries;
  }
  get(key: string): PyValue | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }
  has(key: string): boolean {
    return this.entries.some(([k]) => k === key);
  }
  /** dict[key] = value: replaces in place, or appends. */
  set(key: string, value: PyValue): void {
    const i = this.entries.findIndex(([k]) => k === key);
    if (i >= 0) this.entries[i] = [key, value];
    else this.entries.push([key, value]);
  }
  delete(key: string): void {
    const i = this.entries.findIndex(([k]) => k === key);
    if (i >= 0) this.entries.splice(i, 1);
  }
}
/** A parsed Python JSON value; plain JS numbers are accepted when dumping (ints print as ints). */
export type PyValue = null | boolean | string | number | PyInt | PyFloat | PyDict | PyValue[];

/** json.loads, keeping order and number kinds. */
export function parsePyJson(text: string, where = "JSON"): PyValue {
  let i = 0;
  const fail = (msg: string): never => {
    throw new InputError(`${where}: ${msg} at character ${i}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const value = (depth: number): PyValue => {
    if (depth > 512) fail("nesting deeper than 512");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const d = new PyDict();
      ws();
      if (text[i] === "}") return i++, d;
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const key = str();
        ws();
        if (text[i] !== ":") fail('expected ":"');
        i++;
        d.set(key, value(depth + 1)); // a repeated key keeps its first place, last value, as in Python
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return i++, d;
        else fail('expected "," or "}"');
      }
    }
    if (c === "[") {
      i++;
      const a: PyValue[] = [];
      ws();
      if (text[i] === "]") return i++, a;
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return i++, a;
        else fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    for (const [word, v] of [["true", true], ["false", false], ["null", null], ["NaN", new PyFloat(NaN)], ["Infinity", new PyFloat(Infinity)], ["-Infinity", new PyFloat(-Infinity)]] as const) {
      if (text.startsWith(word, i)) return (i += word.length), v;
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("unexpected character");
    i += m[0].length;
    return m[2] === undefined && m[3] === undefined ? new PyInt(m[0]) : new PyFloat(Number(m[0]));
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail("bad string escape");
    }
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail("trailing characters");
  return v;
}

/** Python's repr(float): shortest round-trip digits, scientific below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expText] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const exp = Number(expText); // x = d.ddd * 10^exp
  const sign = x < 0 ? "-" : "";
  const decpt = exp + 1; // position of the point after the first `decpt` digits
  if (decpt <= -4 || decpt > 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
  if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

/** json.dumps string with ensure_ascii=True. */
export function pyJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else out += `\\u${c.toString(16).padStart(4, "0")}`; // UTF-16 units = Python's surrogate pairs
  }
  return out + '"';
}

/** json.dumps(value, indent=indent). */
export function pyJsonDumps(value: PyValue, indent = 4): string {
  const dump = (v: PyValue, level: number): string => {
    if (v === null) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (typeof v === "string") return pyJsonString(v);
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
    if (v instanceof PyInt) return v.raw;
    if (v instanceof PyFloat) return pyFloatRepr(v.value);
    const inner = "\n" + " ".repeat(indent * (level + 1));
    const outer = "\n" + " ".repeat(indent * level);
    if (Array.isArray(v)) {
      if (v.length === 0) return "[]";
      return "[" + inner + v.map((x) => dump(x, level + 1)).join("," + inner) + outer + "]";
    }
    if (v.entries.length === 0) return "{}";
    return "{" + inner + v.entries.map(([k, x]) => `${pyJsonString(k)}: ${dump(x, level + 1)}`).join("," + inner) + outer + "}";
  };
  return dump(value, 0);
}

/** A plain JS value (numbers that are integers become ints) as a PyValue. */
export function toPy(value: unknown): PyValue {
  if (value === null || typeof value === "boolean" || typeof value === "string" || typeof value === "number") return value;
  if (value instanceof PyInt || value instanceof PyFloat || value instanceof PyDict) return value;
  if (Array.isArray(value)) return value.map(toPy);
  if (typeof value === "object") return new PyDict(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, toPy(v)]));
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}

/** Python truthiness of a parsed value (`if x:`). */
export function pyTruthyValue(v: PyValue | undefined): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (typeof v === "number") return v !== 0;
  if (v instanceof PyInt) return !/^-?0$/.test(v.raw);
  if (v instanceof PyFloat) return v.value !== 0;
  if (typeof v === "string" || Array.isArray(v)) return v.length > 0;
  if (v instanceof PyDict) return v.entries.length > 0;
  return true;
}

/** Python's sorted() order of str keys (code points, not UTF-16 units). */
export function comparePyStrings(a: string, b: string): number {
  const ca = [...a].map((c) => c.codePointAt(0)!);
  const cb = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i]! - cb[i]!;
  return ca.length - cb.length;
}
