#!/usr/bin/env node
// Writes a Hugging Face checkpoint directory with deterministic pseudo-random bf16 weights:
//
//   node scripts/make-random-checkpoint.mjs --preset NAME --out DIR [--seed N]
//        [--max-shard-size 5GB] [--fixtures ../shared/fixtures/models]
//
// The output is a pure function of (preset, seed, max shard size, fixture tokenizer files): every
// tensor draws from its own xorshift32 stream seeded by FNV-1a(seed + ":" + name), so the bytes do
// not depend on write order, machine or Node version. Weights stream to disk in 16 MB chunks, so
// the 16 GB qwen3-8b preset never sits in memory. Shards follow save_pretrained: tensors in module
// order fill model-0000i-of-0000n.safetensors up to the shard size, with
// model.safetensors.index.json; one shard is written as model.safetensors.
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { endianness } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PRESETS, PyFloat } from "./random-checkpoint-presets.mjs";
import { buildSentencePieceModel } from "./sentencepiece-model.mjs";

/** The fixtures folder beside the repo: ../shared/fixtures/models. */
const DEFAULT_FIXTURES = fileURLToPath(new URL("../../shared/fixtures/models", import.meta.url));
const USAGE = "usage: node scripts/make-random-checkpoint.mjs --preset NAME --out DIR [--seed N] [--max-shard-size 5GB] [--fixtures DIR]";
const CHUNK_ELEMENTS = 8 * 1024 * 1024;
const WEIGHT_STD = 0.02; // initializer_range
// Irwin-Hall: the sum of the 4 bytes of a uniform u32 has mean 510 and variance 4 * (256^2 - 1) / 12.
const SUM_MEAN = 510;
const SUM_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

/** @param {string[]} argv */
function parseArgs(argv) {
  /** @type {Record<string, string>} */
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (!k?.startsWith("--") || v === undefined) throw new Error(USAGE);
    a[k.slice(2)] = v;
  }
  const preset = a["preset"];
  if (!preset || !a["out"]) throw new Error(USAGE);
  if (!(preset in PRESETS)) throw new Error(`unknown preset "${preset}"; presets: ${Object.keys(PRESETS).join(", ")}`);
  const seed = Number(a["seed"] ?? "0");
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${a["seed"]}`);
  return { preset, out: a["out"], seed, maxShardBytes: parseSize(a["max-shard-size"] ?? "5GB"), fixtures: a["fixtures"] ?? DEFAULT_FIXTURES };
}

/** "5GB" -> 5e9 (decimal units, as transformers' max_shard_size), plain numbers are bytes. */
function parseSize(s) {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(s);
  if (!m) throw new Error(`--max-shard-size must look like 5GB, 500MB or 1000000, got ${s}`);
  const unit = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[(m[2] ?? "B").toUpperCase()] ?? 1;
  return Math.floor(Number(m[1]) * unit);
}

/** JSON as Python's json.dumps(indent=2, sort_keys=True) writes it, PyFloat as Python floats. */
function pyJson(value, indent = "") {
  if (value instanceof PyFloat) return pyFloat(value.value);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const inner = indent + "  ";
    return `[\n${value.map((v) => inner + pyJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return "{}";
    const inner = indent + "  ";
    return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${pyJson(value[k], inner)}`).join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/** Python repr of a float: 1000000.0, 0.02, 1e-06. */
function pyFloat(x) {
  if (x === 0) return "0.0";
  const ax = Math.abs(x);
  if (ax >= 1e16 || ax < 1e-4) {
    const [mant, exp] = x.toExponential().split("e");
    const sign = exp.startsWith("-") ? "-" : "+";
    return `${mant}e${sign}${exp.replace(/^[-+]/, "").padStart(2, "0")}`;
  }
  const s = String(x);
  return Number.isInteger(x) ? `${s}.0` : s;
}

/** FNV-1a over UTF-8, never 0 (xorshift32's fixed point). */
function streamSeed(seed, name) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(`${seed}:${name}`, "utf8")) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h === 0 ? 0x9e3779b9 : h;
}

/** bf16 bits of center + z * std for every 4-byte sum z-score, rounded to nearest even. */
function valueTable(center, std) {
  const table = new Uint16Array(4 * 255 + 1);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let s = 0; s < table.length; s++) {
    f32[0] = center + ((s - SUM_MEAN) / SUM_STD) * std;
    const bits = u32[0];
    table[s] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }
  return table;
}

/** Streams one tensor's bf16 data to fd. */
function writeTensor(fd, spec, seed, tables, chunk) {
  const table = tables[spec.kind];
  let remaining = spec.shape.reduce((a, b) => a * b, 1);
  let x = streamSeed(seed, spec.name);
  while (remaining > 0) {
    const n = Math.min(remaining, chunk.length);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk[i] = table[(x & 255) + ((x >>> 8) & 255) + ((x >>> 16) & 255) + (x >>> 24)];
    }
    writeSync(fd, new Uint8Array(chunk.buffer, 0, n * 2));
    remaining -= n;
  }
}

/** save_pretrained's sharding: fill a shard until the next tensor would pass the limit. */
function shard(specs, maxBytes) {
  const shards = [[]];
  let size = 0;
  for (const s of specs) {
    const bytes = s.shape.reduce((a, b) => a * b, 2);
    if (size > 0 && size + bytes > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(s);
    size += bytes;
  }
  return shards;
}

/** One safetensors file: u64 header length, JSON header padded to 8 bytes, data in name order. */
function writeSafetensors(path, specs, seed, tables, chunk) {
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  /** @type {Record<string, unknown>} */
  const header = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const s of sorted) {
    const bytes = s.shape.reduce((a, b) => a * b, 2);
    header[s.name] = { dtype: "BF16", shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(path, "w");
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const s of sorted) writeTensor(fd, s, seed, tables, chunk);
  } finally {
    closeSync(fd);
  }
  return offset;
}

/** Writes the checkpoint; returns what was written. */
export function makeRandomCheckpoint({ preset, out, seed, maxShardBytes, fixtures }) {
  if (endianness() !== "LE") throw new Error("safetensors data is little-endian; this script writes native Uint16Array data");
  const p = PRESETS[preset];
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "config.json"), pyJson(p.config) + "\n");
  writeFileSync(join(out, "generation_config.json"), pyJson(p.generation) + "\n");
  const tokDir = join(fixtures, p.tokenizer.from);
  // Read and write rather than copy: fixture files are read-only and the mode would come along.
  for (const file of p.tokenizer.files) writeFileSync(join(out, file), readFileSync(join(tokDir, file)));
  if (p.tokenizer.sentencePiece) {
    const tokenizerJson = JSON.parse(readFileSync(join(tokDir, "tokenizer.json"), "utf8"));
    writeFileSync(join(out, "tokenizer.model"), buildSentencePieceModel(tokenizerJson));
  }
  const tables = {
    matrix: valueTable(0, WEIGHT_STD),
    bias: valueTable(0, WEIGHT_STD),
    norm: valueTable(p.normCenter ?? 1, WEIGHT_STD),
  };
  const chunk = new Uint16Array(CHUNK_ELEMENTS);
  const shards = shard(p.tensors(), maxShardBytes);
  const files = [];
  let total = 0;
  if (shards.length === 1) {
    total = writeSafetensors(join(out, "model.safetensors"), shards[0], seed, tables, chunk);
    files.push("model.safetensors");
  } else {
    /** @type {Record<string, string>} */
    const weightMap = {};
    const n = String(shards.length).padStart(5, "0");
    shards.forEach((specs, i) => {
      const file = `model-${String(i + 1).padStart(5, "0")}-of-${n}.safetensors`;
      total += writeSafetensors(join(out, file), specs, seed, tables, chunk);
      for (const s of specs) weightMap[s.name] = file;
      files.push(file);
    });
    writeFileSync(join(out, "model.safetensors.index.json"), pyJson({ metadata: { total_size: total }, weight_map: weightMap }) + "\n");
  }
  return { files, totalBytes: total };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    const args = parseArgs(process.argv.slice(2));
    const t0 = Date.now();
    const r = makeRandomCheckpoint(args);
    process.stderr.write(`wrote ${args.preset} (seed ${args.seed}) to ${args.out}: ${r.files.length} file(s), ${(r.totalBytes / 1e9).toFixed(3)} GB of weights in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
