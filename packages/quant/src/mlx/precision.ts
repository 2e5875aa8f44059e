// `--formats` and `--precision` together (the seed's `--formats gguf,mlx --precision q4_k_m:4bit`):
//
//   --formats gguf        q4_k_m,q8_0           GGUF methods, as before
//   --formats mlx         4bit | 4bit_mixed     one MLX precision
//   --formats gguf,mlx    q4_k_m:4bit           GGUF method : MLX precision
//                         q4_k_m:4bit,q8_0      more GGUF files, one MLX directory
//                         q4_k_m,4bit_mixed     an MLX-only name is taken as the MLX part
//                                               (bf16/f16/f32 name GGUF types; write ":bf16")
// A side left without a precision gets the seed's default (q4_k_m, 4bit).
import { InputError } from "@llama-pajamas/artifact";
import { MLX_METHOD_NAMES, parseMLXMethod } from "./recipes.js";

export type OutputFormat = "gguf" | "mlx";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["gguf", "mlx"];
export const DEFAULT_GGUF_PRECISION = "q4_k_m";
export const DEFAULT_MLX_PRECISION = "4bit";

export interface ResolvedPrecisions {
  gguf: string[];
  /** The MLX precision's canonical name; undefined without mlx in formats. */
  mlx?: string;
}

export function parseFormats(list: readonly string[]): OutputFormat[] {
  const out: OutputFormat[] = [];
  for (const f of list.map((x) => x.trim().toLowerCase()).filter(Boolean)) {
    if (!OUTPUT_FORMATS.includes(f as OutputFormat)) {
      throw new InputError(`unknown output format "${f}"; choose gguf, mlx or gguf,mlx`, { code: "E_FORMAT" });
    }
    if (!out.includes(f as OutputFormat)) out.push(f as OutputFormat);
  }
  if (out.length === 0) throw new InputError("no output format given; choose gguf, mlx or gguf,mlx", { code: "E_FORMAT" });
  return out;
}

const MLX_ONLY = new Set(MLX_METHOD_NAMES.filter((n) => !["bf16", "f16", "f32"].includes(n)));

export function resolvePrecisions(formats: readonly OutputFormat[], precisions: readonly string[]): ResolvedPrecisions {
  const wantGGUF = formats.includes("gguf");
  const wantMLX = formats.includes("mlx");
  const gguf: string[] = [];
  const mlx: string[] = [];
  for (const item of precisions.map((p) => p.trim()).filter(Boolean)) {
    const colon = item.indexOf(":");
    let g: string | undefined;
    let m: string | undefined;
    if (colon >= 0) {
      g = item.slice(0, colon).trim() || undefined;
      m = item.slice(colon + 1).trim() || undefined;
    } else if (wantMLX && (!wantGGUF || MLX_ONLY.has(item.toLowerCase()))) {
      m = item;
    } else {
      g = item;
    }
    if (g !== undefined) {
      if (!wantGGUF) throw new InputError(`precision "${item}" names a GGUF method, but --formats has no gguf; pass --formats gguf,mlx or drop it`, { code: "E_PRECISION" });
      gguf.push(g);
    }
    if (m !== undefined) {
      if (!wantMLX) throw new InputError(`precision "${item}" names an MLX precision, but --formats has no mlx; pass --formats gguf,mlx`, { code: "E_PRECISION" });
      const name = parseMLXMethod(m).name;
      if (!mlx.includes(name)) mlx.push(name);
    }
  }
  if (mlx.length > 1) {
    throw new InputError(`one MLX precision per artifact (mlx/ holds one model), got ${mlx.join(", ")}; convert again into another --output for the others`, {
      code: "E_PRECISION",
    });
  }
  if (wantGGUF && gguf.length === 0) gguf.push(DEFAULT_GGUF_PRECISION);
  return { gguf: wantGGUF ? gguf : [], mlx: wantMLX ? (mlx[0] ?? DEFAULT_MLX_PRECISION) : undefined };
}
