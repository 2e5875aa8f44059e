// Float conversions between F32 and the 16-bit storage types, bit-exact with what
// llama.cpp's converter produces: numpy's `astype(np.float16)` for F16 and gguf-py quants.py
// BF16.quantize_blocks for BF16. They run over whole checkpoints, so the loops work on
// integer views of the typed arrays and allocate nothing per element.
//
//   f32:  s eeeeeeee mmmmmmmmmmmmmmmmmmmmmmm    (1 + 8 + 23 bits, bias 127)
//   f16:  s eeeee mmmmmmmmmm                    (1 + 5 + 10 bits, bias 15)
//   bf16: s eeeeeeee mmmmmmm                    (the upper half of an f32)

/** Uint32 view of a Float32Array's bits (no copy). */
function bitsOf(src: Float32Array): Uint32Array {
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

/**
 * One f32 (as bits) to f16 bits, transcribed from numpy's npy_floatbits_to_halfbits
 * (numpy/_core/src/common/half_private.hpp): round to nearest even, subnormal halves,
 * overflow to signed inf, NaN keeps the top 10 payload bits (and stays NaN). Signalling NaNs
 * therefore stay signalling, unlike the F16C instruction.
 */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  if (fExp >= 0x47800000) {
    // Too large for f16, inf or NaN.
    if (fExp === 0x7f800000) {
      const fSig = f & 0x007fffff;
      if (fSig !== 0) {
        const ret = 0x7c00 + (fSig >>> 13);
        return sign + (ret === 0x7c00 ? 0x7c01 : ret);
      }
    }
    return sign + 0x7c00;
  }
  if (fExp <= 0x38000000) {
    // Subnormal half or signed zero.
    if (fExp < 0x33000000) return sign;
    const e = fExp >>> 23;
    let fSig = (0x00800000 + (f & 0x007fffff)) >>> (113 - e);
    // Round half to even; (f & 0x7ff) covers the up to 11 bits the shift dropped.
    if ((fSig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) fSig += 0x1000;
    return sign + (fSig >>> 13);
  }
  let fSig = f & 0x007fffff;
  if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000;
  // A carry out of the significand bumps the exponent; at the top it becomes inf (0x7c00).
  return sign + (((fExp - 0x38000000) >>> 13) + (fSig >>> 13));
}

/** F32 -> F16 bits, like numpy `src.astype(np.float16)`. */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  const bits = bitsOf(src);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    const f = bits[i] as number;
    const fExp = f & 0x7f800000;
    // Fast path: normal f16 range (the bulk of any weight tensor).
    if (fExp > 0x38000000 && fExp < 0x47800000) {
      let fSig = f & 0x007fffff;
      if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000;
      out[i] = ((f >>> 16) & 0x8000) + (((fExp - 0x38000000) >>> 13) + (fSig >>> 13));
    } else {
      out[i] = f32BitsToF16Bits(f);
    }
  }
  return out;
}

/**
 * F32 -> BF16 bits, as gguf-py quants.py BF16.quantize_blocks (same as ggml's
 * ggml_compute_fp32_to_bf16): a NaN keeps its top 16 bits with the quiet bit (bit 22) set;
 * everything else rounds to nearest even, overflowing to inf.
 */
export function f32ToBF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  const bits = bitsOf(src);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    let f = bits[i] as number;
    if ((f & 0x7fffffff) > 0x7f800000) f = ((f & 0xffff0000) | 0x00400000) >>> 0;
    // f < 2^32 and the NaN range is gone, so the sum stays below 2^32 and >>> is exact.
    out[i] = (f + 0x7fff + ((f >>> 16) & 1)) >>> 16;
  }
  return out;
}

let f16Table: Uint32Array | undefined;

/** f16 bits -> f32 bits for all 65536 halves (numpy npy_halfbits_to_floatbits), built once. */
function f16ToF32Table(): Uint32Array {
  if (f16Table !== undefined) return f16Table;
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const hExp = h & 0x7c00;
    const hSig = h & 0x03ff;
    if (hExp === 0) {
      // Zero or subnormal: exactly hSig * 2^-24, representable in f32.
      asFloat[h] = (h & 0x8000 ? -1 : 1) * hSig * 2 ** -24;
    } else if (hExp === 0x7c00) {
      table[h] = (sign | 0x7f800000 | (hSig << 13)) >>> 0;
    } else {
      table[h] = (sign | (((h & 0x7fff) + 0x1c000) << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** F16 bits -> F32 (exact). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  const table = f16ToF32Table();
  const bits = bitsOf(out);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = table[src[i] as number] as number;
  return out;
}

/** BF16 bits -> F32 (exact: the bits become the upper half). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  const bits = bitsOf(out);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = (src[i] as number) << 16;
  return out;
}

/**
 * Rounds F32 values through F16 in place: the same bits as f16ToF32(f32ToF16(data)), without
 * the two temporary arrays (the pipeline's intermediate type F16).
 */
export function roundThroughF16(data: Float32Array): Float32Array {
  const table = f16ToF32Table();
  const bits = bitsOf(data);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    const f = bits[i] as number;
    const fExp = f & 0x7f800000;
    let h: number;
    if (fExp > 0x38000000 && fExp < 0x47800000) {
      let fSig = f & 0x007fffff;
      if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000;
      h = ((f >>> 16) & 0x8000) + (((fExp - 0x38000000) >>> 13) + (fSig >>> 13));
    } else {
      h = f32BitsToF16Bits(f);
    }
    bits[i] = table[h] as number;
  }
  return data;
}

/**
 * BF16 bits -> F32, signalling NaNs made quiet: what roundThroughBF16(bf16ToF32(src)) gives
 * (a BF16 value only loses a NaN's signalling bit), in one pass (a BF16 checkpoint quantized
 * from a BF16 intermediate).
 */
export function bf16ToF32ThroughBF16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  const bits = bitsOf(out);
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const f = (src[i] as number) << 16;
    bits[i] = (f & 0x7fffffff) > 0x7f800000 ? f | 0x00400000 : f;
  }
  return out;
}

let bf16ThroughF16Table: Uint32Array | undefined;

/**
 * BF16 bits -> the F32 bits of that value rounded through F16: what
 * roundThroughF16(bf16ToF32(src)) gives, in one table lookup per value (a BF16 checkpoint
 * quantized from an F16 intermediate, as llama.cpp's chain does it).
 */
export function bf16ToF32ThroughF16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new RangeError(`output length ${out.length} != input length ${src.length}`);
  if (bf16ThroughF16Table === undefined) {
    const t = new Uint32Array(65536);
    for (let b = 0; b < 65536; b++) t[b] = (b << 16) >>> 0;
    roundThroughF16(new Float32Array(t.buffer));
    bf16ThroughF16Table = t;
  }
  const table = bf16ThroughF16Table;
  const bits = bitsOf(out);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = table[src[i] as number] as number;
  return out;
}

/** Rounds F32 values through BF16 in place: the same bits as bf16ToF32(f32ToBF16(data)). */
export function roundThroughBF16(data: Float32Array): Float32Array {
  const bits = bitsOf(data);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    let f = bits[i] as number;
    if ((f & 0x7fffffff) > 0x7f800000) f = ((f & 0xffff0000) | 0x00400000) >>> 0;
    bits[i] = ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) << 16;
  }
  return data;
}
