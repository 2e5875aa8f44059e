// GBNF text (llama.cpp's grammars/README.md) that the server composes: a JSON-object grammar,
// string literals, and renaming rules so that several grammars can live in one.

/** Any JSON object: llama.cpp's grammars/json.gbnf, as llama-server uses for response_format json_object. */
export const JSON_OBJECT_GBNF = String.raw`root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
`;

/** `text` as a GBNF string literal. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\" || ch === '"') out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}

/** llama-grammar.cpp's is_word_char: rule names are letters, digits and '-'. */
const isWordChar = (c: string) => /[A-Za-z0-9-]/.test(c);

/**
 * Prefixes every rule name in `gbnf` (definitions and references) with `prefix`, leaving string
 * literals, character classes, repetition counts and comments alone.
 */
export function prefixRules(gbnf: string, prefix: string): string {
  let out = "";
  let i = 0;
  const skipDelimited = (close: string) => {
    const start = i++;
    while (i < gbnf.length && gbnf[i] !== close) i += gbnf[i] === "\\" ? 2 : 1;
    i++;
    out += gbnf.slice(start, i);
  };
  while (i < gbnf.length) {
    const c = gbnf[i]!;
    if (c === '"') skipDelimited('"');
    else if (c === "[") skipDelimited("]");
    else if (c === "{") skipDelimited("}");
    else if (c === "#") {
      const end = gbnf.indexOf("\n", i);
      const stop = end < 0 ? gbnf.length : end;
      out += gbnf.slice(i, stop);
      i = stop;
    } else if (isWordChar(c)) {
      const start = i;
      while (i < gbnf.length && isWordChar(gbnf[i]!)) i++;
      out += prefix + gbnf.slice(start, i);
    } else {
      out += c;
      i++;
    }
  }
  return out;
}
