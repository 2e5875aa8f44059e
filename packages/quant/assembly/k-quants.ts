// ggml's Q4_K, Q5_K and Q6_K quantizers without an importance matrix (quantize_row_q4_K_ref,
// _q5_K_ref and _q6_K_ref with make_qkx2_quants / make_qx_quants, llama.cpp's ggml-quants.c,
// MIT), in AssemblyScript with WebAssembly SIMD. Compiled by `npm run build:kernels` into
// dist/quantize/k-quants.wasm and chosen by src/quantize/kernels.ts.
//
// Same bytes as ggml: every float operation is the reference code's, in its order (each sum
// runs over a sub-block's values one after another), with IEEE single precision and no fused
// multiply-add, as x86-64 builds of ggml compute them. The speed comes from running four
// sub-blocks side by side, one per SIMD lane: where the reference code branches per sub-block
// (a better scale found, a constant sub-block), the lanes select. Rows are whole super-blocks of
// 256 values; the caller checks that.
//
// Memory: the caller writes the input floats at or above heapBase() and names the output
// address; the scratch below (one group of four sub-blocks, transposed) is static.

const MAGIC: f32 = 12582912.0;

// XT/WT: a group's values and weights, entry i holding value i of each lane's sub-block;
// LBEST/LAUX: the levels kept and tried; SCALES/MINS: per sub-block; LQ: levels in value order.
const XT: usize = memory.data(32 * 16, 16);
const WT: usize = memory.data(32 * 16, 16);
const LBEST: usize = memory.data(32 * 16, 16);
const LAUX: usize = memory.data(32 * 16, 16);
const SCALES: usize = memory.data(8 * 4, 16);
const MINS: usize = memory.data(8 * 4, 16);
const LQ: usize = memory.data(256, 16);

// @ts-ignore: decorator
@inline function nearestV(f: v128): v128 {
  const val = f32x4.add(f, f32x4.splat(MAGIC));
  return i32x4.sub(v128.and(val, i32x4.splat(0x007fffff)), i32x4.splat(0x00400000));
}

// @ts-ignore: decorator
@inline function nearest(f: f32): i32 {
  return (reinterpret<i32>(f + MAGIC) & 0x007fffff) - 0x00400000;
}

// @ts-ignore: decorator
@inline function sel(mask: v128, a: v128, b: v128): v128 {
  return v128.bitselect(a, b, mask);
}

/** Lane k: the f32 at p + k * stride bytes. */
// @ts-ignore: decorator
@inline function gather(p: usize, stride: usize): v128 {
  let v = f32x4.splat(load<f32>(p));
  v = f32x4.replace_lane(v, 1, load<f32>(p + stride));
  v = f32x4.replace_lane(v, 2, load<f32>(p + 2 * stride));
  return f32x4.replace_lane(v, 3, load<f32>(p + 3 * stride));
}

/** Lane k of l (a level, 0..63) as the byte at q + k * stride. */
// @ts-ignore: decorator
@inline function scatterBytes(q: usize, l: v128, stride: usize): void {
  store<u8>(q, i32x4.extract_lane(l, 0));
  store<u8>(q + stride, i32x4.extract_lane(l, 1));
  store<u8>(q + 2 * stride, i32x4.extract_lane(l, 2));
  store<u8>(q + 3 * stride, i32x4.extract_lane(l, 3));
}

function fp16ToF32(h: u32): f32 {
  const w: u32 = h << 16;
  const sign: u32 = w & 0x80000000;
  const twoW: u32 = w + w;
  const normalized: f32 = reinterpret<f32>((twoW >> 4) + (<u32>0xe0 << 23)) * reinterpret<f32>(<u32>0x07800000);
  const denormalized: f32 = reinterpret<f32>((twoW >> 17) | (<u32>126 << 23)) - <f32>0.5;
  return reinterpret<f32>(sign | (twoW < (<u32>1 << 27) ? reinterpret<u32>(denormalized) : reinterpret<u32>(normalized)));
}

function f32ToFp16(f: f32): u32 {
  let base: f32 = (abs<f32>(f) * reinterpret<f32>(<u32>0x77800000)) * reinterpret<f32>(<u32>0x08800000);
  const w = reinterpret<u32>(f);
  const shl1W: u32 = w + w;
  const sign: u32 = w & 0x80000000;
  let bias: u32 = shl1W & 0xff000000;
  if (bias < 0x71000000) bias = 0x71000000;
  base = reinterpret<f32>((bias >> 1) + 0x07800000) + base;
  const bits = reinterpret<u32>(base);
  const nonsign: u32 = ((bits >> 13) & 0x00007c00) + (bits & 0x00000fff);
  return (sign >> 16) | (shl1W > 0xff000000 ? <u32>0x7e00 : nonsign);
}

/** make_qkx2_quants on four sub-blocks at once (lanes), from XT/WT into LBEST, SCALES, MINS. */
function qkx2x4(nmax: i32, rmin: f32, rdelta: f32, nstep: i32, firstSub: i32): void {
  const zero = f32x4.splat(0);
  const izero = i32x4.splat(0);
  const vnmax = i32x4.splat(nmax);
  const x0 = v128.load(XT);
  const w0 = v128.load(WT);
  let mn = x0;
  let mx = x0;
  let sumW = w0;
  let sumX = f32x4.mul(w0, x0);
  for (let i = 1; i < 32; i++) {
    const x = v128.load(XT + (<usize>i << 4));
    const w = v128.load(WT + (<usize>i << 4));
    mn = sel(f32x4.lt(x, mn), x, mn);
    mx = sel(f32x4.gt(x, mx), x, mx);
    sumW = f32x4.add(sumW, w);
    sumX = f32x4.add(sumX, f32x4.mul(w, x));
  }
  mn = sel(f32x4.gt(mn, zero), zero, mn);
  const flat = f32x4.eq(mx, mn);
  const min0 = mn;
  const iscale = f32x4.div(f32x4.splat(<f32>nmax), f32x4.sub(mx, mn));
  let scale = f32x4.div(f32x4.splat(1), iscale);
  let best = zero;
  for (let i = 0; i < 32; i++) {
    const x = v128.load(XT + (<usize>i << 4));
    const w = v128.load(WT + (<usize>i << 4));
    const l = i32x4.max_s(izero, i32x4.min_s(vnmax, nearestV(f32x4.mul(iscale, f32x4.sub(x, mn)))));
    v128.store(LBEST + (<usize>i << 4), l);
    const diff = f32x4.sub(f32x4.add(f32x4.mul(scale, f32x4.convert_i32x4_s(l)), mn), x);
    best = f32x4.add(best, f32x4.mul(w, f32x4.mul(diff, diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    const c: f32 = rmin + rdelta * <f32>is + <f32>nmax;
    const isc = f32x4.div(f32x4.splat(c), f32x4.sub(mx, mn));
    let sl = zero;
    let sl2 = zero;
    let sxl = zero;
    for (let i = 0; i < 32; i++) {
      const x = v128.load(XT + (<usize>i << 4));
      const w = v128.load(WT + (<usize>i << 4));
      const l = i32x4.max_s(izero, i32x4.min_s(vnmax, nearestV(f32x4.mul(isc, f32x4.sub(x, mn)))));
      v128.store(LAUX + (<usize>i << 4), l);
      const lf = f32x4.convert_i32x4_s(l);
      const wl = f32x4.mul(w, lf);
      sl = f32x4.add(sl, wl);
      sl2 = f32x4.add(sl2, f32x4.mul(wl, lf));
      sxl = f32x4.add(sxl, f32x4.mul(wl, x));
    }
    const D = f32x4.sub(f32x4.mul(sumW, sl2), f32x4.mul(sl, sl));
    const dpos = f32x4.gt(D, zero);
    if (!v128.any_true(dpos)) continue;
    let ts = f32x4.div(f32x4.sub(f32x4.mul(sumW, sxl), f32x4.mul(sumX, sl)), D);
    let tm = f32x4.div(f32x4.sub(f32x4.mul(sl2, sumX), f32x4.mul(sl, sxl)), D);
    const mpos = f32x4.gt(tm, zero);
    tm = sel(mpos, zero, tm);
    ts = sel(mpos, f32x4.div(sxl, sl2), ts);
    let cur = zero;
    for (let i = 0; i < 32; i++) {
      const x = v128.load(XT + (<usize>i << 4));
      const w = v128.load(WT + (<usize>i << 4));
      const lf = f32x4.convert_i32x4_s(v128.load(LAUX + (<usize>i << 4)));
      const diff = f32x4.sub(f32x4.add(f32x4.mul(ts, lf), tm), x);
      cur = f32x4.add(cur, f32x4.mul(w, f32x4.mul(diff, diff)));
    }
    const take = v128.and(dpos, f32x4.lt(cur, best));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < 32; i++) {
      const p = LBEST + (<usize>i << 4);
      v128.store(p, sel(take, v128.load(LAUX + (<usize>i << 4)), v128.load(p)));
    }
    best = sel(take, cur, best);
    scale = sel(take, ts, scale);
    mn = sel(take, tm, mn);
  }
  for (let i = 0; i < 32; i++) {
    const p = LBEST + (<usize>i << 4);
    v128.store(p, sel(flat, izero, v128.load(p)));
  }
  v128.store(SCALES + (<usize>firstSub << 2), sel(flat, zero, scale));
  v128.store(MINS + (<usize>firstSub << 2), f32x4.neg(sel(flat, min0, mn)));
}

/** Q4_K/Q5_K: one super-block's levels into LQ, its d, dmin and packed scales into y. */
function superBlock(x: usize, y: usize, nmax: i32, rmin: f32, rdelta: f32, nstep: i32): void {
  for (let h = 0; h < 2; h++) {
    const xs = x + (<usize>h << 9); // 128 floats
    let s2 = f32x4.splat(0);
    for (let i = 0; i < 32; i++) {
      const p = xs + (<usize>i << 2);
      const v = gather(p, 128);
      v128.store(XT + (<usize>i << 4), v);
      s2 = f32x4.add(s2, f32x4.mul(v, v));
    }
    const av = f32x4.sqrt(f32x4.div(s2, f32x4.splat(32)));
    for (let i = 0; i < 32; i++) {
      v128.store(WT + (<usize>i << 4), f32x4.add(av, f32x4.abs(v128.load(XT + (<usize>i << 4)))));
    }
    qkx2x4(nmax, rmin, rdelta, nstep, h << 2);
    for (let i = 0; i < 32; i++) {
      const l = v128.load(LBEST + (<usize>i << 4));
      const q = LQ + (<usize>h << 7) + <usize>i;
      scatterBytes(q, l, 32);
    }
  }
  let maxScale: f32 = 0;
  let maxMin: f32 = 0;
  for (let j = 0; j < 8; j++) {
    const s = load<f32>(SCALES + (<usize>j << 2));
    if (s > maxScale) maxScale = s;
    const m = load<f32>(MINS + (<usize>j << 2));
    if (m > maxMin) maxMin = m;
  }
  const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
  const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
  const sc = y + 4;
  for (let j = 0; j < 12; j++) store<u8>(sc + j, 0);
  for (let j = 0; j < 8; j++) {
    let ls = <u32>(<u8>nearest(invScale * load<f32>(SCALES + (<usize>j << 2))));
    let lm = <u32>(<u8>nearest(invMin * load<f32>(MINS + (<usize>j << 2))));
    if (ls > 63) ls = 63;
    if (lm > 63) lm = 63;
    if (j < 4) {
      store<u8>(sc + j, ls);
      store<u8>(sc + j + 4, lm);
    } else {
      store<u8>(sc + j + 4, (ls & 0xf) | ((lm & 0xf) << 4));
      store<u8>(sc + j - 4, load<u8>(sc + j - 4) | ((ls >> 4) << 6));
      store<u8>(sc + j, load<u8>(sc + j) | ((lm >> 4) << 6));
    }
  }
  const d16 = f32ToFp16(maxScale / <f32>63);
  const dm16 = f32ToFp16(maxMin / <f32>63);
  store<u16>(y, d16);
  store<u16>(y, dm16, 2);
  const dd = fp16ToF32(d16);
  const ddm = fp16ToF32(dm16);
  const vmax = i32x4.splat(nmax);
  const izero = i32x4.splat(0);
  for (let j = 0; j < 8; j++) {
    let s: u32;
    let m: u32;
    if (j < 4) {
      s = load<u8>(sc + j) & 63;
      m = load<u8>(sc + j + 4) & 63;
    } else {
      s = (load<u8>(sc + j + 4) & 0xf) | ((load<u8>(sc + j - 4) >> 6) << 4);
      m = (load<u8>(sc + j + 4) >> 4) | ((load<u8>(sc + j) >> 6) << 4);
    }
    const d: f32 = dd * <f32>s;
    if (d == 0) continue;
    const dm: f32 = ddm * <f32>m;
    const vd = f32x4.splat(d);
    const vdm = f32x4.splat(dm);
    for (let i = 0; i < 32; i += 4) {
      const v = v128.load(x + (<usize>(32 * j + i) << 2));
      const l = i32x4.max_s(izero, i32x4.min_s(vmax, nearestV(f32x4.div(f32x4.add(v, vdm), vd))));
      const q = LQ + <usize>(32 * j + i);
      scatterBytes(q, l, 1);
    }
  }
}

/** nBlocks * 256 floats at src -> nBlocks block_q4_K (144 bytes) at dst. */
export function quantizeQ4K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b << 10);
    const y = dst + <usize>b * 144;
    superBlock(x, y, 15, -1.0, 0.1, 20);
    const q = y + 16;
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) {
        const lo = <u32>load<u8>(LQ + <usize>(64 * j + l));
        const hi = <u32>load<u8>(LQ + <usize>(64 * j + l + 32));
        store<u8>(q + <usize>(32 * j + l), lo | (hi << 4));
      }
    }
  }
}

/** nBlocks * 256 floats at src -> nBlocks block_q5_K (176 bytes) at dst. */
export function quantizeQ5K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b << 10);
    const y = dst + <usize>b * 176;
    superBlock(x, y, 31, -0.5, 0.1, 15);
    const qh = y + 16;
    const ql = y + 48;
    for (let j = 0; j < 32; j++) store<u8>(qh + j, 0);
    let m1: u32 = 1;
    let m2: u32 = 2;
    for (let n = 0; n < 4; n++) {
      for (let j = 0; j < 32; j++) {
        let l1 = <u32>load<u8>(LQ + <usize>(64 * n + j));
        if (l1 > 15) {
          l1 -= 16;
          store<u8>(qh + j, load<u8>(qh + j) | m1);
        }
        let l2 = <u32>load<u8>(LQ + <usize>(64 * n + j + 32));
        if (l2 > 15) {
          l2 -= 16;
          store<u8>(qh + j, load<u8>(qh + j) | m2);
        }
        store<u8>(ql + <usize>(32 * n + j), l1 | (l2 << 4));
      }
      m1 <<= 2;
      m2 <<= 2;
    }
  }
}


const GROUP_MAX_EPS: f32 = 1e-15;
const SCALES16: usize = memory.data(16 * 4, 16);

/** make_qx_quants(16, 32, x, L, rmse_type 1) on four sub-blocks of 16 (lanes) from XT into LBEST, SCALES16. */
function qx32x4(firstSub: i32): void {
  const zero = f32x4.splat(0);
  const vlo = i32x4.splat(-32);
  const vhi = i32x4.splat(31);
  const v32 = i32x4.splat(32);
  let mx = zero;
  let amax = zero;
  for (let i = 0; i < 16; i++) {
    const x = v128.load(XT + (<usize>i << 4));
    const ax = f32x4.abs(x);
    const gt = f32x4.gt(ax, amax);
    amax = sel(gt, ax, amax);
    mx = sel(gt, x, mx);
  }
  const tiny = f32x4.lt(amax, f32x4.splat(GROUP_MAX_EPS));
  let iscale = f32x4.div(f32x4.splat(<f32>-32), mx);
  let sumlx = zero;
  let suml2 = zero;
  for (let i = 0; i < 16; i++) {
    const x = v128.load(XT + (<usize>i << 4));
    const l = i32x4.max_s(vlo, i32x4.min_s(vhi, nearestV(f32x4.mul(iscale, x))));
    v128.store(LBEST + (<usize>i << 4), i32x4.add(l, v32));
    const lf = f32x4.convert_i32x4_s(l);
    const w = f32x4.mul(x, x);
    sumlx = f32x4.add(sumlx, f32x4.mul(f32x4.mul(w, x), lf));
    suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(w, lf), lf));
  }
  let scale = sel(f32x4.ne(suml2, zero), f32x4.div(sumlx, suml2), zero);
  let best = f32x4.mul(scale, sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    const c: f32 = -(<f32>32 + <f32>0.1 * <f32>is);
    iscale = f32x4.div(f32x4.splat(c), mx);
    sumlx = zero;
    suml2 = zero;
    for (let i = 0; i < 16; i++) {
      const x = v128.load(XT + (<usize>i << 4));
      const l = i32x4.max_s(vlo, i32x4.min_s(vhi, nearestV(f32x4.mul(iscale, x))));
      v128.store(LAUX + (<usize>i << 4), i32x4.add(l, v32));
      const lf = f32x4.convert_i32x4_s(l);
      const w = f32x4.mul(x, x);
      sumlx = f32x4.add(sumlx, f32x4.mul(f32x4.mul(w, x), lf));
      suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(w, lf), lf));
    }
    const take = v128.and(f32x4.gt(suml2, zero), f32x4.gt(f32x4.mul(sumlx, sumlx), f32x4.mul(best, suml2)));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < 16; i++) {
      const p = LBEST + (<usize>i << 4);
      v128.store(p, sel(take, v128.load(LAUX + (<usize>i << 4)), v128.load(p)));
    }
    const s = f32x4.div(sumlx, suml2);
    scale = sel(take, s, scale);
    best = sel(take, f32x4.mul(s, sumlx), best);
  }
  for (let i = 0; i < 16; i++) {
    const p = LBEST + (<usize>i << 4);
    v128.store(p, sel(tiny, i32x4.splat(0), v128.load(p)));
  }
  v128.store(SCALES16 + (<usize>firstSub << 2), sel(tiny, zero, scale));
}

/** nBlocks * 256 floats at src -> nBlocks block_q6_K (210 bytes) at dst. */
export function quantizeQ6K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b << 10);
    const y = dst + <usize>b * 210;
    for (let g = 0; g < 4; g++) {
      const xs = x + (<usize>g << 8); // 64 floats: four sub-blocks of 16
      for (let i = 0; i < 16; i++) {
        const p = xs + (<usize>i << 2);
        const v = gather(p, 64);
        v128.store(XT + (<usize>i << 4), v);
      }
      qx32x4(g << 2);
      for (let i = 0; i < 16; i++) {
        const l = v128.load(LBEST + (<usize>i << 4));
        const q = LQ + (<usize>g << 6) + <usize>i;
        scatterBytes(q, l, 16);
      }
    }
    let maxScale: f32 = 0;
    let maxAbsScale: f32 = 0;
    for (let ib = 0; ib < 16; ib++) {
      const s = load<f32>(SCALES16 + (<usize>ib << 2));
      const a = abs<f32>(s);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = s;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      memory.fill(y, 0, 210);
      store<u16>(y, f32ToFp16(0), 208);
      continue;
    }
    const iscale: f32 = <f32>-128 / maxScale;
    const d16 = f32ToFp16(<f32>1 / iscale);
    store<u16>(y, d16, 208);
    const sc = y + 192;
    for (let ib = 0; ib < 16; ib++) {
      let q = nearest(iscale * load<f32>(SCALES16 + (<usize>ib << 2)));
      if (q > 127) q = 127;
      store<i8>(sc + ib, q);
    }
    const dd = fp16ToF32(d16);
    const vlo = i32x4.splat(-32);
    const vhi = i32x4.splat(31);
    const v32 = i32x4.splat(32);
    for (let j = 0; j < 16; j++) {
      const d: f32 = dd * <f32>load<i8>(sc + j);
      if (d == 0) continue;
      const vd = f32x4.splat(d);
      for (let i = 0; i < 16; i += 4) {
        const v = v128.load(x + (<usize>(16 * j + i) << 2));
        const l = i32x4.add(i32x4.max_s(vlo, i32x4.min_s(vhi, nearestV(f32x4.div(v, vd)))), v32);
        const q = LQ + <usize>(16 * j + i);
        scatterBytes(q, l, 1);
      }
    }
    for (let h = 0; h < 2; h++) {
      const L = LQ + (<usize>h << 7);
      const ql = y + (<usize>h << 6);
      const qh = y + 128 + (<usize>h << 5);
      for (let l = 0; l < 32; l++) {
        const a = <u32>load<u8>(L + l);
        const b2 = <u32>load<u8>(L + l + 32);
        const c = <u32>load<u8>(L + l + 64);
        const e = <u32>load<u8>(L + l + 96);
        store<u8>(ql + l, (a & 0xf) | ((c & 0xf) << 4));
        store<u8>(ql + l + 32, (b2 & 0xf) | ((e & 0xf) << 4));
        store<u8>(qh + l, (a >> 4) | ((b2 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
    }
  }
}

export function heapBase(): usize {
  return __heap_base;
}
