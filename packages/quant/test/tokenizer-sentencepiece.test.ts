// The tokenizer.model (SentencePiece ModelProto) reader on a hand-made protobuf, and the
// SentencePiece vocabulary the converter builds from it.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import { describe, expect, it } from "vitest";
import {
  buildTokenizerKV,
  parseSentencePieceModel,
  PieceType,
  SentencePieceModelType,
  TokenType,
} from "@llama-pajamas/gguf/tokenizer/index.js";
import { GGUFValueType } from "@llama-pajamas/gguf/formats/gguf-types.js";
import { withTempDir } from "./helpers.js";

// A minimal protobuf encoder: key = field << 3 | wire type; varints little-endian base 128.
function varint(value: bigint | number): number[] {
  let v = BigInt.asUintN(64, BigInt(value)); // int32 -1 goes out as 10 bytes, as protobuf does
  const out: number[] = [];
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
  return out;
}
const key = (field: number, wire: number): number[] => varint((field << 3) | wire);
const vint = (field: number, value: number | bigint): number[] => [...key(field, 0), ...varint(value)];
const bytesField = (field: number, bytes: number[]): number[] => [...key(field, 2), ...varint(bytes.length), ...bytes];
const str = (field: number, s: string): number[] => bytesField(field, [...Buffer.from(s, "utf8")]);
const f32 = (field: number, v: number): number[] => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...key(field, 5), ...b];
};
const piece = (text: string, score: number, type?: PieceType): number[] =>
  bytesField(1, [...str(1, text), ...f32(2, score), ...(type === undefined ? [] : vint(3, type))]);

function craftModel(opts: { addDummyPrefix?: boolean } = {}): Uint8Array {
  const trainer = [
    ...vint(3, SentencePieceModelType.BPE),
    ...vint(4, 8),
    ...vint(99, 12345), // unknown varint field: skipped
    ...[...key(100, 1), 1, 2, 3, 4, 5, 6, 7, 8], // unknown fixed64 field: skipped
    ...vint(35, 1),
    ...vint(43, -1), // pad_id -1, sign-extended to 10 bytes
  ];
  const normalizer = [...str(1, "identity"), ...(opts.addDummyPrefix === undefined ? [] : vint(3, opts.addDummyPrefix ? 1 : 0))];
  return Uint8Array.from([
    ...piece("<unk>", 0, PieceType.UNKNOWN),
    ...piece("<s>", 0, PieceType.CONTROL),
    ...piece("</s>", 0, PieceType.CONTROL),
    ...piece("<0x0A>", 0, PieceType.BYTE),
    ...piece("\u2581t", -1.5), // type left out: NORMAL
    ...piece("<tool>", 0, PieceType.USER_DEFINED),
    ...piece("<old>", 0, PieceType.UNUSED),
    ...piece("é", -7, PieceType.NORMAL),
    ...bytesField(2, trainer),
    ...bytesField(3, normalizer),
    ...bytesField(4, [...str(1, "self test data is skipped")]),
  ]);
}

describe("SentencePiece ModelProto reader", () => {
  it("reads pieces, scores, types, trainer and normalizer specs", () => {
    const m = parseSentencePieceModel(craftModel({ addDummyPrefix: false }));
    expect(m.pieces.map((p) => p.piece)).toEqual(["<unk>", "<s>", "</s>", "<0x0A>", "\u2581t", "<tool>", "<old>", "é"]);
    expect(m.pieces.map((p) => p.type)).toEqual([2, 3, 3, 6, 1, 4, 5, 1]);
    expect(m.pieces[4]!.score).toBe(-1.5);
    expect(m.pieces[7]!.score).toBe(-7);
    expect(m.trainerSpec).toMatchObject({ modelType: SentencePieceModelType.BPE, vocabSize: 8, byteFallback: true, padId: -1, unkId: 0, bosId: 1 });
    expect(m.normalizerSpec.name).toBe("identity");
    expect(m.normalizerSpec.addDummyPrefix).toBe(false);
  });

  it("defaults add_dummy_prefix to true when the field is absent", () => {
    expect(parseSentencePieceModel(craftModel()).normalizerSpec.addDummyPrefix).toBe(true);
  });

  it("rejects truncated or malformed files with InputError", () => {
    const good = craftModel();
    expect(() => parseSentencePieceModel(good.subarray(0, good.length - 3), "x/tokenizer.model")).toThrow(InputError);
    expect(() => parseSentencePieceModel(Uint8Array.from([...key(1, 5), 0, 0, 0, 0]))).toThrow(/wire type 5, expected 2/);
    expect(() => parseSentencePieceModel(Uint8Array.from([...key(7, 3)]))).toThrow(/unsupported wire type 3/);
  });
});

describe("SentencePiece vocabulary (_create_vocab_sentencepiece)", () => {
  it("writes llama/default, padded tokens, scores, types and special tokens in converter order", async () => {
    await withTempDir(async (dir) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "tokenizer.model"), craftModel());
      await writeFile(
        join(dir, "tokenizer_config.json"),
        JSON.stringify({
          add_bos_token: true,
          add_eos_token: false,
          added_tokens_decoder: { "6": { content: "<|x|>", special: false }, "5": { content: "a\u2581b", special: false } },
        }),
      );
      const config = { model_type: "llama", vocab_size: 10, bos_token_id: 1, eos_token_id: [2, 7], unk_token_id: 0 };
      const kvs = await buildTokenizerKV({ dir, config, ggufArch: "llama", modelType: "llama" });
      expect(kvs.map((k) => k.key)).toEqual([
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
      ]);
      const get = (k: string) => kvs.find((e) => e.key === k)!;
      expect(get("tokenizer.ggml.model").value).toBe("llama");
      expect(get("tokenizer.ggml.pre").value).toBe("default");
      expect(get("tokenizer.ggml.tokens").value).toEqual(["<unk>", "<s>", "</s>", "<0x0A>", "\u2581t", "a b", "<|x|>", "é", "[PAD8]", "[PAD9]"]);
      expect(Array.from(get("tokenizer.ggml.scores").value as Float32Array)).toEqual([0, 0, 0, 0, -1.5, -1000, -1000, -7, -10000, -10000]);
      const U = TokenType;
      expect(Array.from(get("tokenizer.ggml.token_type").value as Int32Array)).toEqual([
        U.UNKNOWN, U.CONTROL, U.CONTROL, U.BYTE, U.NORMAL, U.USER_DEFINED, U.CONTROL, U.NORMAL, U.UNUSED, U.UNUSED,
      ]);
      expect(get("tokenizer.ggml.bos_token_id")).toMatchObject({ type: GGUFValueType.UINT32, value: 1 });
      // eos_token_id is a list in config.json: gguf-py only takes ints, so no EOS id is written.
      expect(kvs.some((k) => k.key === "tokenizer.ggml.eos_token_id")).toBe(false);
    });
  });
});
