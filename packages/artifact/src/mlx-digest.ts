import { createHash } from "node:crypto";

/**
 * The manifest's sha256 for an `mlx/` directory: a directory has no single hash, so it is the
 * sha256 of its `sha256sum` listing, one line `<sha256 hex>  <file name>\n` per file (all but
 * metadata.json, which holds the listing), in code point order of the names. The pipeline
 * writes it; the runtime's --verify checks it.
 */
export function mlxFilesDigest(files: readonly { name: string; sha256: string }[]): string {
  const sorted = [...files].sort((a, b) => compareCodePoints(a.name, b.name));
  return createHash("sha256")
    .update(sorted.map((f) => `${f.sha256}  ${f.name}\n`).join(""))
    .digest("hex");
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}
