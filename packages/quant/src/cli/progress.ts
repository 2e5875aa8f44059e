import type { ProgressEvent } from "../pipeline.js";

/**
 * One self-rewriting status line on a terminal's stderr: tensors, bytes, rate, ETA.
 * Silent when stderr is not a terminal or when quiet.
 */
export function tensorProgress(opts: { quiet: boolean }): ((e: ProgressEvent) => void) & { done(): void } {
  const tty = process.stderr.isTTY === true && !opts.quiet;
  let last = 0;
  const report = (e: ProgressEvent) => {
    if (!tty) return;
    const now = Date.now();
    if (now - last < 100 && e.tensorIndex !== e.tensorCount) return;
    last = now;
    const rate = e.bytesRead / Math.max(e.elapsedMs / 1000, 1e-3);
    const eta = rate > 0 ? (e.bytesTotal - e.bytesRead) / rate : 0;
    const line =
      `[${e.tensorIndex}/${e.tensorCount}] ${formatBytes(e.bytesRead)} / ${formatBytes(e.bytesTotal)}` +
      `  ${formatBytes(rate)}/s  ETA ${formatSeconds(eta)}  ${e.tensorName}`;
    process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
  };
  return Object.assign(report, {
    done() {
      if (tty) process.stderr.write("\r\x1b[2K");
    },
  });
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}
