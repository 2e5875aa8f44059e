// MLX affine quantization against values derived by hand from the kernels' algorithm
// (mlx/backend/metal/kernels/quantized.h affine_quantize, mlx/backend/cpu/quantized.cpp
// quantize), for every width and every packing edge. No MLX runs here: each expected word below
// is worked out in the comment beside it, and a BigInt bit-stream packer cross-checks the rest.
import { describe, expect, it } from "vitest";
import { f32ToBF16 } from "@llama-pajamas/gguf/formats/float.js";
import {
  affineDequantize,
  affineGroupParams,
  affineQuantize,
  castToDtype,
  packRow,
  roundHalfAway,
  roundHalfEven,
  unpackRow,
} from "@llama-pajamas/gguf/mlx/affine.js";

const hex = (words: ArrayLike<number>): string[] => Array.from(words, (w) => "0x" + w.toString(16).toUpperCase().padStart(8, "0"));
const bf16 = (x: number): number => f32ToBF16(new Float32Array([x]))[0]!;

/** An independent packer: the row as one BigInt, value k at bit k*bits, cut into 32-bit words. */
function bigPack(q: number[], bits: number): number[] {
  let stream = 0n;
  q.forEach((v, k) => (stream |= BigInt(v) << BigInt(k * bits)));
  return Array.from({ length: (q.length * bits) / 32 }, (_, i) => Number((stream >> BigInt(32 * i)) & 0xffffffffn));
}

/**
 * A group whose scale comes out exactly 1: w_min = -2^(b-1) and w_max = 2^(b-1) - 1, so
 *   scale = (w_max - w_min) / (2^b - 1) = 1,  |w_min| > |w_max| -> edge = w_min, scale = +1,
 *   q0 = round(w_min / 1) = w_min != 0 -> scale = w_min / w_min = 1, bias = w_min,
 *   q_i = round(w_i - w_min) = w_i - w_min.
 * So the stored q are exactly the chosen codes `q`, scale 1.0 (bf16 0x3F80), bias -2^(b-1).
 */
function unitGroup(bits: number, q: number[]): Float32Array {
  const min = -(2 ** (bits - 1));
  expect(Math.min(...q)).toBe(0);
  expect(Math.max(...q)).toBe(2 ** bits - 1);
  return new Float32Array(q.map((v) => v + min));
}

describe("packing: hand-derived words for every width", () => {
  const cases: { bits: number; groupSize: number; q: number[]; words: Record<number, number>; bias: number }[] = [
    // 2 bits, 16 per word. q = 0,1,2,3 repeated: each byte is 0b11_10_01_00 = 0xE4.
    { bits: 2, groupSize: 32, q: Array.from({ length: 32 }, (_, j) => j % 4), words: { 0: 0xe4e4e4e4, 1: 0xe4e4e4e4 }, bias: 0xc000 /* -2 */ },
    // 3 bits, 32 values in 3 words. q = 0..7 repeated: one pack of 8 is the octal number 0o76543210 =
    // 0xFAC688, stored as bytes 88 C6 FA; four packs give bytes 88 C6 FA 88 | C6 FA 88 C6 | FA 88 C6 FA,
    // read little-endian: 0x88FAC688, 0xC688FAC6, 0xFAC688FA. Value 10 (= 2) straddles words 0/1:
    // word 0's top bits 30-31 are 0b10 (its low two bits) and word 1's bit 0 is 0 (its high bit).
    { bits: 3, groupSize: 32, q: Array.from({ length: 32 }, (_, j) => j % 8), words: { 0: 0x88fac688, 1: 0xc688fac6, 2: 0xfac688fa }, bias: 0xc080 /* -4 */ },
    // 4 bits, 8 per word, v0 in the low nibble: 0..7 -> 0x76543210, 8..15 -> 0xFEDCBA98.
    { bits: 4, groupSize: 32, q: Array.from({ length: 32 }, (_, j) => j % 16), words: { 0: 0x76543210, 1: 0xfedcba98, 2: 0x76543210, 3: 0xfedcba98 }, bias: 0xc100 /* -8 */ },
    // 5 bits, 32 values in 5 words, q = j. Word 0 = v0 | v1<<5 | v2<<10 | v3<<15 | v4<<20 | v5<<25 |
    // (v6 & 3)<<30 = 0x20 + 0x800 + 0x18000 + 0x400000 + 0xA000000 + 0x80000000 = 0x8A418820; v6 = 0b110
    // straddles: its high bit (1) is bit 0 of word 1. Word 4 ends with v31 = 31 in bits 27-31 (0xF8000000).
    { bits: 5, groupSize: 32, q: Array.from({ length: 32 }, (_, j) => j), words: { 0: 0x8a418820 }, bias: 0xc180 /* -16 */ },
    // 6 bits, 16 values in 3 words, q = j over a group of 64. Word 0 = v0 | v1<<6 | v2<<12 | v3<<18 |
    // v4<<24 | (v5 & 3)<<30 = 0x40 + 0x2000 + 0xC0000 + 0x4000000 + 0x40000000 = 0x440C2040; v5 = 0b101
    // straddles: bits 2-5 (0b1) open word 1, so word 1 & 0xF = 1.
    { bits: 6, groupSize: 64, q: Array.from({ length: 64 }, (_, j) => j), words: { 0: 0x440c2040 }, bias: 0xc200 /* -32 */ },
    // 8 bits, 4 per word, over a group of 128 with q = 2j (+1 past the middle) to reach 0 and 255:
    // word 0 = 0,2,4,6 -> 0x06040200; word 16 = q64..67 = 129,131,133,135 -> 0x87858381;
    // word 31 = 249,251,253,255 -> 0xFFFDFBF9.
    { bits: 8, groupSize: 128, q: Array.from({ length: 128 }, (_, j) => 2 * j + (j >= 64 ? 1 : 0)), words: { 0: 0x06040200, 16: 0x87858381, 31: 0xfffdfbf9 }, bias: 0xc300 /* -128 */ },
  ];
  for (const c of cases) {
    it(`${c.bits} bits, group ${c.groupSize}`, () => {
      const data = unitGroup(c.bits, c.q);
      for (const kernel of ["metal", "cpu"] as const) {
        const r = affineQuantize({ data, cols: data.length, groupSize: c.groupSize, bits: c.bits, dtype: "bfloat16", kernel });
        expect(r.weight.length).toBe((data.length * c.bits) / 32);
        for (const [i, w] of Object.entries(c.words)) expect(hex([r.weight[Number(i)]!]), `word ${i}`).toEqual(hex([w]));
        expect(hex(r.weight)).toEqual(hex(bigPack(c.q, c.bits)));
        expect(Array.from(r.scales)).toEqual([0x3f80]); // 1.0
        expect(Array.from(r.biases)).toEqual([c.bias]);
        expect(Array.from(unpackRow(r.weight, 0, c.bits, data.length))).toEqual(c.q);
        // Dequantized: q * 1 + w_min gives the inputs back exactly.
        expect(Array.from(affineDequantize({ ...r, cols: data.length, groupSize: c.groupSize, bits: c.bits, dtype: "bfloat16" }))).toEqual(Array.from(data));
      }
    });
  }

  it("5-bit and 6-bit straddling values sit where the diagram says", () => {
    const five = bigPack(Array.from({ length: 32 }, (_, j) => j), 5);
    expect(five[1]! & 1).toBe(1); // v6 = 0b00110: bits 0-1 in word 0 (0b10), bit 2 in word 1
    expect(five[4]! >>> 27).toBe(31); // v31 fills bits 27-31 of the last word
    const six = bigPack(Array.from({ length: 16 }, (_, j) => j), 6);
    expect(six[1]! & 0xf).toBe(1); // v5 = 0b000101: bits 2-5 = 0b0001
    expect(six[1]! >>> 28).toBe(10 & 0xf); // v10 = 0b001010: bits 0-3 in word 1 ...
    expect(six[2]! & 0x3).toBe(10 >>> 4); // ... bits 4-5 in word 2
  });

  it("a row is whole words, and rows follow each other", () => {
    const q = new Uint8Array(64).map((_, j) => j % 8);
    const out = new Uint32Array(12).fill(0xffffffff);
    packRow(q, 3, out, 6); // a second row of 64 x 3 bits = 6 words, from word 6
    expect(hex(out.subarray(0, 6))).toEqual(hex(new Uint32Array(6).fill(0xffffffff)));
    expect(hex(out.subarray(6))).toEqual(hex(bigPack(Array.from(q), 3)));
  });

  it("packs random codes like the BigInt stream for every width and group size", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (const bits of [2, 3, 4, 5, 6, 8]) {
      for (const cols of [32, 64, 128, 96, 160]) {
        const q = new Uint8Array(cols).map(() => Math.floor(rand() * 2 ** bits));
        const out = new Uint32Array((cols * bits) / 32);
        packRow(q, bits, out, 0);
        expect(hex(out), `${bits} bits x ${cols}`).toEqual(hex(bigPack(Array.from(q), bits)));
        expect(Array.from(unpackRow(out, 0, bits, cols))).toEqual(Array.from(q));
      }
    }
  });
});

describe("arithmetic: the edges of the algorithm", () => {
  it("halfway cases: Metal/CUDA round() goes away from zero, the CPU's rint() to even", () => {
    // 4 bits, w_min = -8, w_max = 7: scale 1, bias -8, q = w + 8. Then
    //   -7.5 -> 0.5 -> Metal 1, CPU 0;  -6.5 -> 1.5 -> 2, 2;  0.5 -> 8.5 -> 9, 8;  6.5 -> 14.5 -> 15, 14.
    const w = new Float32Array(32).fill(0);
    w.set([-8, 7, -7.5, -6.5, 0.5, 6.5]);
    const metal = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", kernel: "metal" });
    const cpu = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", kernel: "cpu" });
    expect(Array.from(unpackRow(metal.weight, 0, 4, 6))).toEqual([0, 15, 1, 2, 9, 15]);
    expect(Array.from(unpackRow(cpu.weight, 0, 4, 6))).toEqual([0, 15, 0, 2, 8, 14]);
    // Word 0 = nibbles 0,15,1,2,9,15,8,8 (the zeros are q 8) -> 0x88F921F0 on Metal.
    expect(hex([metal.weight[0]!])).toEqual(["0x88F921F0"]);
    expect(hex([cpu.weight[0]!])).toEqual(["0x88E820F0"]);
    expect([roundHalfAway(-2.5), roundHalfEven(-2.5), roundHalfAway(2.5), roundHalfEven(2.5), roundHalfEven(3.5)]).toEqual([-3, -2, 3, 2, 4]);
  });

  it("an all-negative group: the GPU kernels start w_max at 0, the CPU kernel does not", () => {
    // w = [-15, -1, -8 x 30], 4 bits.
    // CPU:   w_max = -1: scale = 14/15 = 0.9333334, edge = -15, q0 = rint(-16.07) = -16,
    //        scale = -15/-16 = 0.9375 (bf16 0x3F70), bias = -15 (0xC170);
    //        q = rint((w + 15) / 0.9375): -15 -> 0, -1 -> rint(14.93) = 15, -8 -> rint(7.47) = 7.
    // Metal: w_max = 0: scale = 15/15 = 1, edge = -15, q0 = -15, scale 1 (0x3F80), bias -15;
    //        q = w + 15: 0, 14, 7.
    const w = new Float32Array(32).fill(-8);
    w[0] = -15;
    w[1] = -1;
    const cpu = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", kernel: "cpu" });
    const metal = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", kernel: "metal" });
    expect([cpu.scales[0], cpu.biases[0], metal.scales[0], metal.biases[0]]).toEqual([0x3f70, 0xc170, 0x3f80, 0xc170]);
    expect(hex(cpu.weight)).toEqual(["0x777777F0", "0x77777777", "0x77777777", "0x77777777"]);
    expect(hex(metal.weight)).toEqual(["0x777777E0", "0x77777777", "0x77777777", "0x77777777"]);
  });

  it("an all-positive group anchors w_max with a negative scale", () => {
    // w in [1, 16], 4 bits: scale = 15/15 = 1, |1| > |16| is false -> scale = -1, edge = 16,
    // q0 = round(16 / -1) = -16, scale = 16 / -16 = -1 (bf16 0xBF80), bias = 16 (0x4180), q = 16 - w.
    const w = new Float32Array(32).map((_, j) => 1 + (j % 16));
    for (const kernel of ["metal", "cpu"] as const) {
      const r = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", kernel });
      expect([r.scales[0], r.biases[0]]).toEqual([0xbf80, 0x4180]);
      // q = 15,14,...,8 -> 0x89ABCDEF, then 7..0 -> 0x01234567.
      expect(hex(r.weight)).toEqual(["0x89ABCDEF", "0x01234567", "0x89ABCDEF", "0x01234567"]);
    }
  });

  it("an all-zero group: scale = -eps, bias 0, every code 0, dequantizes to 0", () => {
    // scale = max(0, 1e-7) = 1e-7; 0 > 0 is false -> scale = -1e-7, edge = w_max = 0, q0 = -0 == 0,
    // so bias = 0 and the scale stays -1e-7. As bf16: 1e-7 is 0x33D6BF95 in f32, whose low half
    // 0xBF95 rounds the high half up: 0x33D7; with the sign, 0xB3D7.
    const w = new Float32Array(64);
    for (const kernel of ["metal", "cpu"] as const) {
      const r = affineQuantize({ data: w, cols: 64, groupSize: 64, bits: 3, dtype: "bfloat16", kernel });
      expect([r.scales[0], r.biases[0]]).toEqual([0xb3d7, 0]);
      expect(Array.from(r.weight)).toEqual([0, 0, 0, 0, 0, 0]);
      expect(Array.from(affineDequantize({ ...r, cols: 64, groupSize: 64, bits: 3, dtype: "bfloat16" }))).toEqual(Array.from(w));
    }
  });

  it("a range below eps: q0 rounds to 0, so bias 0 and scale -eps (f32 storage keeps it exact)", () => {
    // w all 1e-9: range 0 -> scale = eps = 1e-7; |w_min| > |w_max| is false (equal) -> scale -1e-7,
    // edge = w_max = 1e-9, q0 = round(1e-9 / -1e-7) = round(-0.01) = 0 -> bias 0; q = round(-0.01) = 0.
    const w = new Float32Array(32).fill(1e-9);
    const r = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "float32" });
    expect(Array.from(r.scales)).toEqual([-Math.fround(1e-7)]);
    expect(Array.from(r.biases)).toEqual([0]);
    expect(Array.from(r.weight)).toEqual([0, 0, 0, 0]);
  });

  it("re-anchoring can push the far edge past 2^bits - 1, which is clipped (error up to one step)", () => {
    // 2 bits, w = [-1, 0.8, 0 ...] in float32: scale = 1.8/3 = 0.6, edge = -1, q0 = round(-1.667) = -2,
    // scale = -1/-2 = 0.5, bias = -1. 0.8 -> (0.8 + 1) / 0.5 = 3.6 -> 4 -> clipped to 3 -> 0.5:
    // an error of 0.3, more than half the 0.5 step. (MLX's own test bounds errors by one scale.)
    const w = new Float32Array(32);
    w[0] = -1;
    w[1] = 0.8;
    const r = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 2, dtype: "float32" });
    expect([r.scales[0], r.biases[0]]).toEqual([0.5, -1]);
    expect(Array.from(unpackRow(r.weight, 0, 2, 3))).toEqual([0, 3, 2]);
    const back = affineDequantize({ ...r, cols: 32, groupSize: 32, bits: 2, dtype: "float32" });
    expect([back[0], back[1], back[2]]).toEqual([-1, 0.5, 0]);
  });

  it("scale and bias are used in float32, then stored rounded to the dtype", () => {
    // 4 bits, w = [-1, 1, 0 ...]: scale = 2/15 = 0.13333334, |-1| > |1| is false -> scale negative,
    // edge = 1, q0 = round(1 / -0.13333334) = round(-7.4999996) = -7, scale = 1/-7 = -0.14285715
    // (f32 0xBE124925, bf16 0xBE12 = -0.142578125), bias = 1 (0x3F80).
    // q(-1) = round(-2 / -0.14285715) = round(13.9999996) = 14; q(1) = 0; q(0) = round(6.99999) = 7.
    const w = new Float32Array(32);
    w[0] = -1;
    w[1] = 1;
    const p = affineGroupParams(castToDtype(w, "bfloat16"), 0, { groupSize: 32, bits: 4 });
    expect(p).toEqual({ scale: Math.fround(-1 / 7), bias: 1 });
    const r = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16" });
    expect([r.scales[0], r.biases[0]]).toEqual([0xbe12, 0x3f80]);
    expect(Array.from(unpackRow(r.weight, 0, 4, 3))).toEqual([14, 0, 7]);
    // Dequantized with the stored scale: 14 * -0.142578125 + 1 = -0.99609375 (exact in bf16).
    expect(affineDequantize({ ...r, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16" })[0]).toBe(-0.99609375);
    expect(bf16(-0.99609375)).toBe(0xbf7f);
    // mx.dequantize on a CPU stream rounds to bf16 after the multiply too: 14 * -0.142578125 =
    // -1.99609375 = -1.11111111b lies halfway between -1.1111111b and -10.0b; to even: -2.0; + 1 = -1.
    expect(affineDequantize({ ...r, cols: 32, groupSize: 32, bits: 4, dtype: "bfloat16", arithmetic: "dtype" })[0]).toBe(-1);
  });

  it("float16 and float32 weights keep their scales in their own dtype", () => {
    const w = unitGroup(4, Array.from({ length: 32 }, (_, j) => j % 16));
    const f16 = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "float16" });
    expect([f16.scales[0], f16.biases[0]]).toEqual([0x3c00, 0xc800]); // 1.0, -8.0
    const f32 = affineQuantize({ data: w, cols: 32, groupSize: 32, bits: 4, dtype: "float32" });
    expect(f32.scales).toBeInstanceOf(Float32Array);
    expect([f32.scales[0], f32.biases[0]]).toEqual([1, -8]);
  });

  it("groups are independent: two groups per row and two rows", () => {
    const g1 = unitGroup(4, Array.from({ length: 32 }, (_, j) => j % 16)); // bias -8
    const g2 = new Float32Array(32).map((_, j) => 1 + (j % 16)); // scale -1, bias 16
    const data = new Float32Array([...g1, ...g2, ...g2, ...g1]);
    const r = affineQuantize({ data, cols: 64, groupSize: 32, bits: 4, dtype: "bfloat16" });
    expect(Array.from(r.scales)).toEqual([0x3f80, 0xbf80, 0xbf80, 0x3f80]);
    expect(Array.from(r.biases)).toEqual([0xc100, 0x4180, 0x4180, 0xc100]);
    expect(hex(r.weight)).toEqual(hex([0x76543210, 0xfedcba98, 0x76543210, 0xfedcba98, 0x89abcdef, 0x01234567, 0x89abcdef, 0x01234567, 0x89abcdef, 0x01234567, 0x89abcdef, 0x01234567, 0x76543210, 0xfedcba98, 0x76543210, 0xfedcba98]));
  });
});

describe("dequantization error", () => {
  it("stays within half a step, plus the bf16 rounding of scale and bias, except clipped far edges (within one step)", () => {
    let seed = 12345;
    const gauss = () => {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      const u = (seed + 1) / 2 ** 32;
      seed = (seed * 1664525 + 1013904223) >>> 0;
      const v = seed / 2 ** 32;
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * 0.02;
    };
    const rows = 16;
    for (const bits of [2, 3, 4, 5, 6, 8]) {
      for (const groupSize of [32, 64, 128]) {
        for (const kernel of ["metal", "cpu"] as const) {
          const cols = 256;
          const w = castToDtype(new Float32Array(rows * cols).map(gauss), "bfloat16");
          const r = affineQuantize({ data: w, cols, groupSize, bits, dtype: "bfloat16", kernel });
          const back = affineDequantize({ ...r, cols, groupSize, bits, dtype: "bfloat16" });
          let clipped = 0;
          let worst = 0;
          for (let g = 0; g < (rows * cols) / groupSize; g++) {
            const p = affineGroupParams(w, g * groupSize, { groupSize, bits, kernel });
            const sT = castToDtype(new Float32Array([p.scale]), "bfloat16")[0]!;
            const bT = castToDtype(new Float32Array([p.bias]), "bfloat16")[0]!;
            const n = 2 ** bits - 1;
            for (let j = 0; j < groupSize; j++) {
              const i = g * groupSize + j;
              const v = (w[i]! - p.bias) / p.scale;
              const q = Math.min(n, Math.max(0, Math.round(v)));
              const storage = q * Math.abs(p.scale - sT) + Math.abs(p.bias - bT) + Math.abs(back[i]!) * 2 ** -8 + 1e-9;
              const isClipped = v > n + 0.5;
              if (isClipped) clipped++;
              const bound = (isClipped ? 1 : 0.5) * Math.abs(p.scale) * (1 + 1e-5) + storage;
              const err = Math.abs(back[i]! - w[i]!);
              worst = Math.max(worst, err / bound);
              expect(err, `bits ${bits} group ${groupSize} ${kernel}: element ${i}`).toBeLessThanOrEqual(bound);
            }
          }
          expect(worst).toBeLessThanOrEqual(1);
          // Clipping only ever hits values near the far edge, a small share of them.
          expect(clipped / (rows * cols), `bits ${bits} group ${groupSize} ${kernel}`).toBeLessThan(0.05);
        }
      }
    }
  });
});

describe("dequantization error with float32 weights (scale and bias stored exactly)", () => {
  it("is at most half a step, except values clipped at the far edge (at most one step)", () => {
    for (const bits of [2, 3, 4, 5, 6, 8]) {
      for (const kernel of ["metal", "cpu"] as const) {
        let seed = 99 + bits;
        const w = new Float32Array(64 * 128).map(() => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.1);
        const r = affineQuantize({ data: w, cols: 128, groupSize: 64, bits, dtype: "float32", kernel });
        const back = affineDequantize({ ...r, cols: 128, groupSize: 64, bits, dtype: "float32" });
        for (let i = 0; i < w.length; i++) {
          const s = r.scales[Math.floor(i / 64)]!;
          const b = r.biases[Math.floor(i / 64)]!;
          const clipped = (w[i]! - b) / s > 2 ** bits - 1 + 0.5;
          expect(Math.abs(back[i]! - w[i]!), `bits ${bits} ${kernel} [${i}]`).toBeLessThanOrEqual((clipped ? 1 : 0.5) * Math.abs(s) * (1 + 1e-5) + 1e-9);
        }
      }
    }
  });
});

describe("bad input", () => {
  const w = new Float32Array(64);
  it("refuses unsupported bits, group sizes, modes and partial groups with what is supported", () => {
    expect(() => affineQuantize({ data: w, cols: 64, groupSize: 64, bits: 7, dtype: "bfloat16" })).toThrow(/7 bits .*supported: 2, 3, 4, 5, 6, 8/);
    expect(() => affineQuantize({ data: w, cols: 64, groupSize: 1, bits: 1, dtype: "bfloat16" })).toThrow(/1 bits/);
    expect(() => affineQuantize({ data: w, cols: 64, groupSize: 16, bits: 4, dtype: "bfloat16" })).toThrow(/group size 16 .*supported: 32, 64, 128/);
    expect(() => affineQuantize({ data: new Float32Array(96), cols: 96, groupSize: 64, bits: 4, dtype: "bfloat16", name: "x.weight" })).toThrow(
      /last dimension for x.weight \(96\) is not divisible by the group size 64/,
    );
    expect(() => affineQuantize({ data: w, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16", mode: "mxfp4" })).toThrow(/"mxfp4".*does not write.*"affine"/);
    expect(() => affineQuantize({ data: w, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16", mode: "int4" })).toThrow(/"int4".*not an MLX mode/);
  });
  it("refuses non-finite weights, naming where", () => {
    const bad = new Float32Array(128);
    bad[70] = NaN;
    expect(() => affineQuantize({ data: bad, cols: 64, groupSize: 64, bits: 4, dtype: "bfloat16", name: "m.weight" })).toThrow(/m.weight .*non-finite.*row 1, column 6/);
  });
});
