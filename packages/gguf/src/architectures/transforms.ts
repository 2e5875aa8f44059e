// Tensor transforms llama.cpp's converter applies on the way to GGUF. All take and return F32
// data in PyTorch (row-major, outermost-first) order and never modify their inputs.

/**
 * LlamaModel.permute (conversion/llama.py): HF stores q/k rows per head as [half0 | half1]
 * (rotate_half RoPE); llama.cpp wants them interleaved. Per head, the rows are viewed as
 * [2, half] and transposed to [half, 2]:
 *
 *   reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)
 *   out row  h*headDim + j*2 + i  <-  in row  h*headDim + i*half + j      (i in 0..1)
 *
 * `nHead` is num_attention_heads for q and num_key_value_heads for k. Works for biases (cols 1).
 */
export function permuteRopeRows(data: Float32Array, rows: number, nHead: number): Float32Array {
  if (rows % (nHead * 2) !== 0) throw new Error(`cannot permute ${rows} rows into ${nHead} heads of pairs`);
  const cols = data.length / rows;
  const headDim = rows / nHead;
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + i * half + j) * cols;
        const dst = (h * headDim + j * 2 + i) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** torch.stack(experts, dim=0): the experts' data one after another. */
export function stackTensors(inputs: readonly Float32Array[]): Float32Array {
  let total = 0;
  for (const t of inputs) total += t.length;
  const out = new Float32Array(total);
  let offset = 0;
  for (const t of inputs) {
    out.set(t, offset);
    offset += t.length;
  }
  return out;
}

/** data + shift in float32 (Gemma3Model.norm_shift: Gemma's RMSNorm multiplies by 1 + w). */
export function addScalar(data: Float32Array, shift: number): Float32Array {
  const out = new Float32Array(data.length);
  const s = Math.fround(shift);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! + s;
  return out;
}

/** The first `rows` rows of a row-major tensor (data_torch[:rows]). */
export function firstRows(data: Float32Array, totalRows: number, rows: number): Float32Array {
  const cols = data.length / totalRows;
  return data.slice(0, rows * cols);
}

/**
 * torch.split of a 3-D [experts, 2*n, cols] tensor along dim 1: part 0 is [..., :n, :], part 1
 * is [..., n:, :] (Qwen2MoeModel.modify_tensors for fused gate_up_proj).
 */
export function splitMiddle(data: Float32Array, shape: readonly number[], part: 0 | 1): Float32Array {
  const [outer, middle, cols] = shape as [number, number, number];
  const n = middle / 2;
  const out = new Float32Array(outer * n * cols);
  for (let e = 0; e < outer; e++) {
    const src = (e * middle + part * n) * cols;
    out.set(data.subarray(src, src + n * cols), e * n * cols);
  }
  return out;
}

export interface Llama3Rope {
  base: number;
  dim: number;
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContext: number;
}

/**
 * LlamaModel.generate_extra_tensors (conversion/llama.py): the llama3 per-frequency RoPE factors,
 * rope_freqs.weight. Replays the converter's float32 torch arithmetic step by step so the bits
 * match: torch evaluates `s / t` as `t.reciprocal() * s`, comparisons against Python floats in
 * float32, and everything else as float32 ops.
 */
export function llama3RopeFactors(o: Llama3Rope): Float32Array {
  const f = Math.fround;
  const n = Math.ceil(o.dim / 2);
  const out = new Float32Array(n);
  const lowWavelen = f(o.originalContext / o.lowFreqFactor);
  const highWavelen = f(o.originalContext / o.highFreqFactor);
  const twoPi = f(2 * Math.PI);
  for (let k = 0; k < n; k++) {
    const exponent = f(f(2 * k) / f(o.dim));
    const freq = f(1 / f(Math.pow(f(o.base), exponent)));
    const wavelen = f(f(1 / freq) * twoPi);
    if (wavelen < highWavelen) {
      out[k] = 1;
    } else if (wavelen > lowWavelen) {
      out[k] = o.factor;
    } else {
      const ratio = f(f(1 / wavelen) * f(o.originalContext));
      const smooth = f(f(ratio - f(o.lowFreqFactor)) / f(o.highFreqFactor - o.lowFreqFactor));
      const denom = f(f(f(1 - smooth) / f(o.factor)) + smooth);
      out[k] = f(1 / denom);
    }
  }
  return out;
}
