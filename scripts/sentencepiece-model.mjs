// A SentencePiece tokenizer.model (protobuf ModelProto) built from a Llama-2 style BPE
// tokenizer.json, for checkpoints whose llama.cpp conversion insists on tokenizer.model
// (phi3: Phi3MiniModel.set_vocab; gemma3: Gemma3Model.set_vocab, which otherwise needs a
// BPE pre-tokenizer hash llama.cpp knows). The pieces and ids are the tokenizer.json's; the
// scores are merge order, -(id - 259) for ordinary pieces and 0 for special and byte pieces,
// which is how the original Llama-2 tokenizer.model ranks its pieces.
//
// Wire format (google/sentencepiece src/sentencepiece_model.proto):
//   ModelProto     { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                    NormalizerSpec normalizer_spec = 3; }
//   SentencePiece  { string piece = 1; float score = 2; Type type = 3; }
//                  Type: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
//   TrainerSpec    { ModelType model_type = 3 (BPE = 2); int32 vocab_size = 4;
//                    bool byte_fallback = 35; unk/bos/eos/pad ids 40..43 keep defaults 0,1,2,-1 }
//   NormalizerSpec { string name = 1; bool add_dummy_prefix = 3;
//                    bool remove_extra_whitespaces = 4; bool escape_whitespaces = 5; }

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** @param {number} n non-negative integer @returns {number[]} */
function varint(n) {
  const out = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** @param {number} field @param {number} wire */
const key = (field, wire) => varint(field * 8 + wire);

/** @param {number} field @param {Uint8Array | number[]} bytes */
function lenField(field, bytes) {
  return [...key(field, WIRE_LEN), ...varint(bytes.length), ...bytes];
}

/** @param {number} field @param {number} value */
const varintField = (field, value) => [...key(field, WIRE_VARINT), ...varint(value)];

/** @param {number} field @param {number} value */
function floatField(field, value) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  return [...key(field, WIRE_FIXED32), ...b];
}

const TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, BYTE: 6 };

/**
 * @param {{ model: { type: string, vocab: Record<string, number> },
 *           added_tokens?: { id: number, content: string, special?: boolean }[] }} tokenizerJson
 * @param {{ addDummyPrefix?: boolean }} [options]
 * @returns {Buffer} the tokenizer.model bytes
 */
export function buildSentencePieceModel(tokenizerJson, options = {}) {
  const { model } = tokenizerJson;
  if (model.type !== "BPE") throw new Error(`expected a BPE tokenizer.json, got model.type ${model.type}`);
  /** @type {string[]} */
  const pieces = [];
  for (const [piece, id] of Object.entries(model.vocab)) pieces[id] = piece;
  for (let id = 0; id < pieces.length; id++) {
    if (pieces[id] === undefined) throw new Error(`tokenizer.json vocab has no piece with id ${id}`);
  }
  const special = new Set((tokenizerJson.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
  /** @type {number[]} */
  const bytes = [];
  pieces.forEach((piece, id) => {
    let type = TYPE.NORMAL;
    if (piece === "<unk>") type = TYPE.UNKNOWN;
    else if (special.has(piece)) type = TYPE.CONTROL;
    else if (/^<0x[0-9A-F]{2}>$/.test(piece)) type = TYPE.BYTE;
    const score = type === TYPE.NORMAL ? -(id - 259) : 0;
    const msg = [...lenField(1, Buffer.from(piece, "utf8")), ...floatField(2, score), ...varintField(3, type)];
    for (const b of lenField(1, msg)) bytes.push(b);
  });
  const trainer = [...varintField(3, 2), ...varintField(4, pieces.length), ...varintField(35, 1)];
  const normalizer = [
    ...lenField(1, Buffer.from("identity", "utf8")),
    ...varintField(3, options.addDummyPrefix === false ? 0 : 1),
    ...varintField(4, 0),
    ...varintField(5, 1),
  ];
  return Buffer.concat([Buffer.from(bytes), Buffer.from(lenField(2, trainer)), Buffer.from(lenField(3, normalizer))]);
}
