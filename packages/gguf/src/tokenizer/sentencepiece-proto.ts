// A reader for SentencePiece's tokenizer.model: the protobuf ModelProto of
// sentencepiece/src/sentencepiece_model.proto, decoded by hand (no protobuf dependency). Only
// the fields the converters read are kept; every other field is skipped by its wire type.
//
//   ModelProto      1: repeated SentencePiece pieces   2: TrainerSpec   3: NormalizerSpec
//   SentencePiece   1: string piece   2: float score   3: Type type (default NORMAL)
//   TrainerSpec     3: ModelType model_type (default UNIGRAM)   4: int32 vocab_size
//                   35: bool byte_fallback   40-43: int32 unk_id, bos_id, eos_id, pad_id
//   NormalizerSpec  1: string name   2: bytes precompiled_charsmap   3: bool add_dummy_prefix
//                   4: bool remove_extra_whitespaces   5: bool escape_whitespaces
//
// Wire format: each field is a varint key (field_number << 3 | wire_type) then a varint (0),
// 8 bytes (1), a varint length + bytes (2) or 4 bytes (5), little-endian.
import { InputError } from "@llama-pajamas/artifact";

/** Most pieces we accept (real models have up to ~262k). */
export const MAX_PIECES = 4_000_000;
/** Longest single piece, in bytes. */
export const MAX_PIECE_BYTES = 1024 * 1024;

/** sentencepiece_model.proto SentencePiece.Type; the numbers equal gguf TokenType's. */
export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** TrainerSpec.ModelType */
export enum SentencePieceModelType {
  UNIGRAM = 1,
  BPE = 2,
  WORD = 3,
  CHAR = 4,
}

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainerSpec: {
    modelType: SentencePieceModelType;
    vocabSize: number | undefined;
    byteFallback: boolean;
    unkId: number;
    bosId: number;
    eosId: number;
    padId: number;
  };
  normalizerSpec: {
    name: string | undefined;
    precompiledCharsmap: Uint8Array;
    addDummyPrefix: boolean;
    removeExtraWhitespaces: boolean;
    escapeWhitespaces: boolean;
  };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    readonly where: string,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  fail(what: string): never {
    throw new InputError(`${this.where}: ${what} at byte ${this.pos}; the file is not a SentencePiece model or is damaged`, {
      path: this.where,
    });
  }

  /** A varint as a bigint (up to 10 bytes). */
  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const byte = this.buf[this.pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
    return this.fail("varint longer than 10 bytes");
  }

  /** A length or key: a non-negative varint that fits a JS number. */
  size(): number {
    // Fast path: keys and lengths almost always fit 4 varint bytes (28 bits).
    const start = this.pos;
    let result = 0;
    for (let shift = 0; shift < 28 && this.pos < this.end; shift += 7) {
      const byte = this.buf[this.pos++] as number;
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
    }
    this.pos = start;
    const v = this.varint();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`size ${v} too large`);
    return Number(v);
  }

  /** int32 fields are sign-extended to 64 bits on the wire. */
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }

  bool(): boolean {
    return this.varint() !== 0n;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail("truncated float");
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  /** The [start, end) byte range of a length-delimited field. */
  bytes(): [number, number] {
    const len = this.size();
    if (this.pos + len > this.end) this.fail(`length ${len} runs past the end of its message`);
    const start = this.pos;
    this.pos += len;
    return [start, this.pos];
  }

  string([start, end]: [number, number]): string {
    try {
      return utf8.decode(this.buf.subarray(start, end));
    } catch {
      return this.fail("string field is not valid UTF-8");
    }
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.advance(8);
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.advance(4);
    else this.fail(`unsupported wire type ${wireType}`);
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) this.fail("truncated field");
    this.pos += n;
  }

  /** Calls `onField(fieldNumber, wireType)` for each field; the callback must consume it. */
  fields(onField: (field: number, wireType: number) => void): void {
    while (this.pos < this.end) {
      const key = this.size();
      const field = Math.floor(key / 8);
      if (field === 0) this.fail("field number 0");
      onField(field, key % 8);
    }
    if (this.pos !== this.end) this.fail("message overruns its length");
  }

  sub([start, end]: [number, number]): Reader {
    return new Reader(this.buf, this.where, start, end);
  }
}

function expectWire(r: Reader, wireType: number, expected: number, field: string): void {
  if (wireType !== expected) r.fail(`field ${field} has wire type ${wireType}, expected ${expected}`);
}

function readPiece(r: Reader): SentencePiece {
  const out: SentencePiece = { piece: "", score: 0, type: PieceType.NORMAL };
  r.fields((field, wt) => {
    if (field === 1) {
      expectWire(r, wt, 2, "SentencePiece.piece");
      const range = r.bytes();
      if (range[1] - range[0] > MAX_PIECE_BYTES) r.fail(`piece of ${range[1] - range[0]} bytes (limit ${MAX_PIECE_BYTES})`);
      out.piece = r.string(range);
    } else if (field === 2) {
      expectWire(r, wt, 5, "SentencePiece.score");
      out.score = r.float();
    } else if (field === 3) {
      expectWire(r, wt, 0, "SentencePiece.type");
      const t = r.int32();
      if (!(t in PieceType)) r.fail(`unknown piece type ${t}`);
      out.type = t as PieceType;
    } else r.skip(wt);
  });
  return out;
}

/** Parses a tokenizer.model (ModelProto). `where` names the file in error messages. */
export function parseSentencePieceModel(buf: Uint8Array, where = "tokenizer.model"): SentencePieceModel {
  const model: SentencePieceModel = {
    pieces: [],
    trainerSpec: {
      modelType: SentencePieceModelType.UNIGRAM,
      vocabSize: undefined,
      byteFallback: false,
      unkId: 0,
      bosId: 1,
      eosId: 2,
      padId: -1,
    },
    normalizerSpec: {
      name: undefined,
      precompiledCharsmap: new Uint8Array(0),
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
      escapeWhitespaces: true,
    },
  };
  const r = new Reader(buf, where);
  r.fields((field, wt) => {
    if (field === 1) {
      expectWire(r, wt, 2, "ModelProto.pieces");
      if (model.pieces.length >= MAX_PIECES) r.fail(`more than ${MAX_PIECES} pieces`);
      model.pieces.push(readPiece(r.sub(r.bytes())));
    } else if (field === 2) {
      expectWire(r, wt, 2, "ModelProto.trainer_spec");
      const t = model.trainerSpec;
      const s = r.sub(r.bytes());
      s.fields((f, w) => {
        if (f === 3 && w === 0) t.modelType = s.int32() as SentencePieceModelType;
        else if (f === 4 && w === 0) t.vocabSize = s.int32();
        else if (f === 35 && w === 0) t.byteFallback = s.bool();
        else if (f === 40 && w === 0) t.unkId = s.int32();
        else if (f === 41 && w === 0) t.bosId = s.int32();
        else if (f === 42 && w === 0) t.eosId = s.int32();
        else if (f === 43 && w === 0) t.padId = s.int32();
        else s.skip(w);
      });
    } else if (field === 3) {
      expectWire(r, wt, 2, "ModelProto.normalizer_spec");
      const n = model.normalizerSpec;
      const s = r.sub(r.bytes());
      s.fields((f, w) => {
        if (f === 1 && w === 2) n.name = s.string(s.bytes());
        else if (f === 2 && w === 2) n.precompiledCharsmap = buf.slice(...s.bytes());
        else if (f === 3 && w === 0) n.addDummyPrefix = s.bool();
        else if (f === 4 && w === 0) n.removeExtraWhitespaces = s.bool();
        else if (f === 5 && w === 0) n.escapeWhitespaces = s.bool();
        else s.skip(w);
      });
    } else r.skip(wt);
  });
  return model;
}
