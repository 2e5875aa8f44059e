// Request bodies: read with a size limit, parsed as a JSON object, and typed field readers whose
// errors name the field as OpenAI does ("messages[0].content") and say what was seen.
import { HttpError, invalidField } from "./errors.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Reads the body up to `limitBytes` (413 past it, before reading the rest) and parses a JSON object. */
export async function readJsonObject(request: Request, limitBytes: number): Promise<JsonObject> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limitBytes) throw tooLarge(declared, limitBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limitBytes) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge(size, limitBytes);
      }
      chunks.push(value);
    }
  }
  const text = Buffer.concat(chunks).toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const why = text.trim() === "" ? "the request body is empty" : `the request body is not valid JSON (${(e as Error).message})`;
    throw new HttpError(400, `${why}; send a JSON object with Content-Type: application/json`, { code: "invalid_json" });
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new HttpError(400, `the request body must be a JSON object, got ${describe(parsed)}`, { code: "invalid_json" });
  }
  return parsed as JsonObject;
}

function tooLarge(size: number, limit: number): HttpError {
  return new HttpError(413, `the request body is ${size} bytes or more, over the server's limit of ${limit} (--max-body-bytes)`, { code: "request_too_large" });
}

/** A short description of a JSON value for messages: its type, and the value when it is short. */
export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "object") return "an object";
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 40 ? s.slice(0, 40) + "..." : s}`;
}

/** Typed access to an object's fields; `path` prefixes the names in messages. */
export class Fields {
  constructor(
    readonly obj: JsonObject,
    readonly path = "",
  ) {}

  name(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): Json | undefined {
    const v = this.obj[key];
    return v === null ? undefined : v;
  }

  fail(key: string, expected: string): never {
    throw invalidField(this.name(key), `${this.name(key)} must be ${expected}, got ${describe(this.obj[key])}`);
  }

  string(key: string, options: { required: true; nonEmpty?: boolean }): string;
  string(key: string, options?: { required?: false; nonEmpty?: boolean }): string | undefined;
  string(key: string, options: { required?: boolean; nonEmpty?: boolean } = {}): string | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (options.required === true) throw invalidField(this.name(key), `${this.name(key)} is required`, "missing_required_parameter");
      return undefined;
    }
    if (typeof v !== "string" || (options.nonEmpty === true && v.length === 0)) this.fail(key, options.nonEmpty === true ? "a non-empty string" : "a string");
    return v;
  }

  number(key: string, range: { min?: number; max?: number; integer?: boolean; minExclusive?: boolean } = {}): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    const { min, max, integer = false, minExclusive = false } = range;
    const ok =
      typeof v === "number" &&
      Number.isFinite(v) &&
      (!integer || Number.isInteger(v)) &&
      (min === undefined || (minExclusive ? v > min : v >= min)) &&
      (max === undefined || v <= max);
    if (!ok) {
      const bounds = [min !== undefined ? `${minExclusive ? ">" : ">="} ${min}` : "", max !== undefined ? `<= ${max}` : ""].filter((b) => b !== "").join(" and ");
      this.fail(key, `${integer ? "an integer" : "a number"}${bounds ? " " + bounds : ""}`);
    }
    return v as number;
  }

  boolean(key: string): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  object(key: string): Fields | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "an object");
    return new Fields(v as JsonObject, this.name(key));
  }

  array(key: string): Json[] | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.fail(key, "an array");
    return v as Json[];
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) this.fail(key, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`);
    return v as T;
  }
}

export function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
