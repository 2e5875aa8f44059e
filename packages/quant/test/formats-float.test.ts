import { describe, expect, it } from "vitest";
import { bf16ToF32, bf16ToF32ThroughBF16, bf16ToF32ThroughF16, f16ToF32, f32BitsToF16Bits, f32ToBF16, f32ToF16, roundThroughBF16, roundThroughF16 } from "@llama-pajamas/gguf/formats/float.js";

const fromBits = (bits: number[]): Float32Array => new Float32Array(Uint32Array.from(bits).buffer);
const bitsOf = (f: Float32Array): number[] => Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length));
const hex = (xs: ArrayLike<number>): string[] => Array.from(xs, (x) => "0x" + x.toString(16));

// [f32 bits, expected f16 bits, why]; expected values derived by hand from the IEEE layouts
// (and numpy's NaN rule: 0x7c00 + top 10 payload bits, forced non-zero).
const F16_CASES: [number, number, string][] = [
  [0x3f800000, 0x3c00, "1.0"],
  [0xc0000000, 0xc000, "-2.0"],
  [0x80000000, 0x8000, "-0"],
  [0x477fe000, 0x7bff, "65504, the largest half"],
  [0x477fefff, 0x7bff, "just below the 65520 midpoint"],
  [0x477ff000, 0x7c00, "65520: tie rounds to even = 65536, overflows to inf"],
  [0x501502f9, 0x7c00, "1e10 overflows to inf"],
  [0xd01502f9, 0xfc00, "-1e10 overflows to -inf"],
  [0x7f800000, 0x7c00, "+inf"],
  [0xff800000, 0xfc00, "-inf"],
  [0x7fc00000, 0x7e00, "quiet NaN"],
  [0xffc00000, 0xfe00, "negative quiet NaN"],
  [0x7fc02000, 0x7e01, "NaN keeps its top 10 payload bits"],
  [0x7f800001, 0x7c01, "signalling NaN whose payload vanishes stays NaN"],
  [0x33800000, 0x0001, "2^-24, the smallest subnormal"],
  [0x33000000, 0x0000, "2^-25: tie between 0 and 2^-24 rounds to even 0"],
  [0x33000001, 0x0001, "just above 2^-25 rounds up"],
  [0x33c00000, 0x0002, "1.5 * 2^-24: tie rounds to even 2"],
  [0x387fc000, 0x03ff, "largest subnormal"],
  [0x387fe000, 0x0400, "tie between largest subnormal and 2^-14 rounds to even (normal)"],
  [0x38800000, 0x0400, "2^-14, smallest normal"],
  [0x3f801000, 0x3c00, "1 + 2^-11: tie rounds down to even"],
  [0x3f803000, 0x3c02, "1 + 3*2^-11: tie rounds up to even"],
  [0x3f801001, 0x3c01, "just above a tie rounds up"],
  [0x0da24260, 0x0000, "1e-30 underflows to +0"],
  [0x8da24260, 0x8000, "-1e-30 underflows to -0"],
];

describe("f32ToF16 (numpy astype(float16))", () => {
  it("edge values", () => {
    const out = f32ToF16(fromBits(F16_CASES.map((c) => c[0])));
    expect(hex(out)).toEqual(hex(F16_CASES.map((c) => c[1])));
    for (const [bits, want, why] of F16_CASES) expect(f32BitsToF16Bits(bits), why).toBe(want);
  });

  it("every half survives f16 -> f32 -> f16 unchanged (NaN payloads too)", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    let mismatches = 0;
    for (let i = 0; i < 65536; i++) if (back[i] !== i) mismatches++;
    expect(mismatches).toBe(0);
  });

  it("rejects an output of the wrong length", () => {
    expect(() => f32ToF16(new Float32Array(3), new Uint16Array(2))).toThrow(RangeError);
  });
});

// Expected values follow quants.py BF16.quantize_blocks: NaN -> top 16 bits | quiet bit,
// else (n + 0x7fff + lsb) >> 16.
const BF16_CASES: [number, number, string][] = [
  [0x3f800000, 0x3f80, "1.0"],
  [0x80000000, 0x8000, "-0"],
  [0x3f808000, 0x3f80, "tie with even lsb rounds down"],
  [0x3f818000, 0x3f82, "tie with odd lsb rounds up"],
  [0x3f808001, 0x3f81, "above a tie rounds up"],
  [0x7f7fffff, 0x7f80, "f32 max rounds up to inf"],
  [0x7f800000, 0x7f80, "+inf"],
  [0xff800000, 0xff80, "-inf"],
  [0x7fc00000, 0x7fc0, "quiet NaN"],
  [0x7f800001, 0x7fc0, "signalling NaN is quieted"],
  [0x7f812345, 0x7fc1, "NaN keeps its top bits, quieted, not rounded"],
  [0xff800001, 0xffc0, "negative NaN"],
  [0x00000001, 0x0000, "smallest f32 subnormal rounds to 0"],
  [0x00008000, 0x0000, "subnormal tie, even"],
  [0x00018000, 0x0002, "subnormal tie, odd"],
];

describe("f32ToBF16 (gguf-py quants.py)", () => {
  it("edge values", () => {
    const out = f32ToBF16(fromBits(BF16_CASES.map((c) => c[0])));
    expect(hex(out)).toEqual(hex(BF16_CASES.map((c) => c[1])));
  });

  it("every non-NaN bf16 survives bf16 -> f32 -> bf16; NaNs come back quiet", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = f32ToBF16(bf16ToF32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (back[i] !== (isNaN ? i | 0x40 : i)) throw new Error(`bf16 0x${i.toString(16)} came back as 0x${back[i]!.toString(16)}`);
    }
  });
});

describe("widening", () => {
  it("f16ToF32 is exact", () => {
    const f = f16ToF32(Uint16Array.of(0x0001, 0x03ff, 0x0400, 0x7bff, 0x3555, 0x7c00, 0xfc00, 0x8000));
    expect(Array.from(f)).toEqual([2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, 0.333251953125, Infinity, -Infinity, -0]);
    expect(hex(bitsOf(f16ToF32(Uint16Array.of(0x7e00, 0x7c01, 0xfe00))))).toEqual(["0x7fc00000", "0x7f802000", "0xffc00000"]);
  });

  it("bf16ToF32 puts the bits in the upper half", () => {
    const f = bf16ToF32(Uint16Array.of(0x3f80, 0xff80, 0x7fc1, 0x0001, 0xc049));
    expect(hex(bitsOf(f))).toEqual(["0x3f800000", "0xff800000", "0x7fc10000", "0x10000", "0xc0490000"]);
    expect(f[0]).toBe(1);
    expect(f[4]).toBe(-3.140625);
  });
});

describe("rounding through F16/BF16 in place", () => {
  // Every edge case above, every half and every bf16 widened, and a spread of random bit patterns.
  const inputs = (): Float32Array => {
    let s = 12345;
    const random = Array.from({ length: 1 << 16 }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0));
    const halves = Array.from(bitsOf(f16ToF32(Uint16Array.from({ length: 65536 }, (_, i) => i))));
    const bf16s = Array.from({ length: 65536 }, (_, i) => (i << 16) >>> 0);
    return fromBits([...F16_CASES.map((c) => c[0]), ...BF16_CASES.map((c) => c[0]), ...halves, ...bf16s, ...random]);
  };

  it("roundThroughF16 gives the bits of f16ToF32(f32ToF16(x))", () => {
    const x = inputs();
    expect(bitsOf(roundThroughF16(x.slice()))).toEqual(bitsOf(f16ToF32(f32ToF16(x))));
  });

  it("bf16ToF32ThroughF16 gives the bits of f16ToF32(f32ToF16(bf16ToF32(b))) for all 65,536 BF16 values", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const got = bitsOf(bf16ToF32ThroughF16(all));
    const want = bitsOf(f16ToF32(f32ToF16(bf16ToF32(all))));
    expect(got).toEqual(want);
    // spot values: 1 + 2^-7 is exact in F16; 70000 overflows F16 to +inf; 2^-30 underflows to 0
    const spot = bitsOf(bf16ToF32ThroughF16(new Uint16Array([0x3f81, 0x4789, 0x3080])));
    expect([...spot]).toEqual([0x3f810000, 0x7f800000, 0]);
  });

  it("bf16ToF32ThroughBF16 gives the bits of roundThroughBF16(bf16ToF32(b)) for all 65,536 BF16 values", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    expect(bitsOf(bf16ToF32ThroughBF16(all))).toEqual(bitsOf(roundThroughBF16(bf16ToF32(all))));
    // a signalling NaN (0x7f81) comes out quiet; infinity and -0 stay
    expect(bitsOf(bf16ToF32ThroughBF16(new Uint16Array([0x7f81, 0x7f80, 0x8000])))).toEqual([0x7fc10000, 0x7f800000, 0x80000000]);
  });

  it("roundThroughBF16 gives the bits of bf16ToF32(f32ToBF16(x)), and so does bf16ToF32ThroughBF16 on BF16 data", () => {
    const x = inputs();
    expect(bitsOf(roundThroughBF16(x.slice()))).toEqual(bitsOf(bf16ToF32(f32ToBF16(x))));
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const widened = bf16ToF32(all);
    expect(bitsOf(bf16ToF32ThroughBF16(all))).toEqual(bitsOf(bf16ToF32(f32ToBF16(widened))));
  });
});
