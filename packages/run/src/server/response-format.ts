// response_format: json_object and json_schema become a grammar the sampler follows, as
// llama-server does. JSON Schema goes through the engine's converter (node-llama-cpp's subset);
// keywords it cannot enforce are refused by name rather than silently ignored.
import type { GrammarSpec } from "../backends/types.js";
import type { Runtime } from "../runtime.js";
import { describe, Fields, isObject, type Json, type JsonObject } from "./body.js";
import { invalidField } from "./errors.js";
import { JSON_OBJECT_GBNF } from "./grammar.js";

/** Keywords that change what is valid but that the grammar converter would ignore. */
const UNENFORCEABLE = [
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "allOf",
  "not",
  "if",
  "then",
  "else",
  "patternProperties",
  "propertyNames",
  "dependentRequired",
  "dependentSchemas",
  "uniqueItems",
  "contains",
  "minContains",
  "maxContains",
];
const FORMATS = ["date-time", "time", "date"];
/** Nesting a schema may have (it is walked recursively). */
const MAX_SCHEMA_DEPTH = 64;

/** The grammar for a request's response_format, or undefined for plain text. */
export async function responseFormatGrammar(body: Fields, runtime: Runtime): Promise<GrammarSpec | undefined> {
  const rf = body.object("response_format");
  if (rf === undefined) return undefined;
  const type = rf.oneOf("type", ["text", "json_object", "json_schema"] as const);
  if (type === undefined) throw invalidField(rf.name("type"), `${rf.name("type")} is required`, "missing_required_parameter");
  if (type === "text") return undefined;
  if (type === "json_object") {
    // llama-server also reads a schema here.
    const schema = rf.raw("schema");
    return schema === undefined ? { gbnf: JSON_OBJECT_GBNF } : schemaGrammar(schema, rf.name("schema"), runtime);
  }
  const js = rf.object("json_schema");
  if (js === undefined) throw invalidField(rf.name("json_schema"), `${rf.name("json_schema")} is required when type is "json_schema"`, "missing_required_parameter");
  js.string("name");
  js.boolean("strict");
  const schema = js.raw("schema");
  // OpenAI allows leaving the schema out: any JSON object.
  return schema === undefined ? { gbnf: JSON_OBJECT_GBNF } : schemaGrammar(schema, js.name("schema"), runtime);
}

/** A grammar for JSON following `schema`; `param` names it in errors. */
export async function schemaGrammar(schema: Json, param: string, runtime: Runtime): Promise<GrammarSpec> {
  if (!isObject(schema)) throw invalidField(param, `${param} must be a JSON Schema object, got ${describe(schema)}`);
  const normalized = normalize(schema, param, 0) as JsonObject;
  if (Object.keys(normalized).filter((k) => k !== "description" && k !== "$defs" && k !== "title").length === 0) return { gbnf: JSON_OBJECT_GBNF };
  try {
    return await runtime.jsonSchemaGrammar(normalized);
  } catch (e) {
    throw invalidField(param, `${param} cannot be enforced: ${(e as Error).message}`, "invalid_schema");
  }
}

/**
 * The spellings node-llama-cpp reads: anyOf as oneOf, `definitions` as `$defs`; refuses keywords
 * it would ignore. Titles, $schema, $id and examples are dropped (they do not constrain).
 */
function normalize(node: Json, path: string, depth: number): Json {
  if (depth > MAX_SCHEMA_DEPTH) throw invalidField(path, `${path} is nested more than ${MAX_SCHEMA_DEPTH} levels deep`, "invalid_schema");
  if (Array.isArray(node)) return node.map((v, i) => normalize(v, `${path}[${i}]`, depth + 1));
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    const where = `${path}.${key}`;
    if (UNENFORCEABLE.includes(key)) {
      throw invalidField(where, `${where}: the JSON Schema keyword "${key}" cannot be enforced by the grammar; supported: type, properties, required, additionalProperties, items, prefixItems, minItems, maxItems, minLength, maxLength, enum, const, anyOf/oneOf, $ref to $defs, format (${FORMATS.join(", ")})`, "invalid_schema");
    }
    if (key === "format" && (typeof value !== "string" || !FORMATS.includes(value))) {
      throw invalidField(where, `${where}: format ${describe(value)} cannot be enforced; supported formats: ${FORMATS.join(", ")}`, "invalid_schema");
    }
    if (key === "title" || key === "$schema" || key === "$id" || key === "examples" || key === "default") continue;
    if (key === "enum" || key === "const") {
      out[key] = value;
      continue;
    }
    if (key === "$ref" && typeof value === "string") {
      out.$ref = value.replace(/^#\/definitions\//, "#/$defs/");
      continue;
    }
    // Property names are data, not keywords.
    if (key === "properties" && isObject(value)) {
      out.properties = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v, `${where}.${k}`, depth + 1)]));
      continue;
    }
    if ((key === "$defs" || key === "definitions") && isObject(value)) {
      out.$defs = { ...(isObject(out.$defs) ? out.$defs : {}), ...Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v, `${where}.${k}`, depth + 1)])) };
      continue;
    }
    out[key === "anyOf" ? "oneOf" : key] = normalize(value, where, depth + 1);
  }
  return out;
}
