import type { HubEvent } from "../source/index.js";
import { formatBytes, formatSeconds } from "./progress.js";

/**
 * Hub download reports on stderr: one line for what is fetched (or that the cache has it all),
 * a self-rewriting bytes / rate / ETA line on a terminal, warnings for retries and cache
 * fallbacks, and a summary. Nothing when quiet.
 */
export function downloadProgress(opts: { quiet: boolean }): ((e: HubEvent) => void) & { done(): void } {
  const out = process.stderr;
  const tty = out.isTTY === true;
  let drawn = false;
  let planAt = Date.now();
  let startBytes = 0;
  const clear = () => {
    if (drawn) out.write("\r\x1b[2K");
    drawn = false;
  };
  const line = (text: string) => {
    clear();
    out.write(`${text}\n`);
  };
  const report = (e: HubEvent) => {
    if (opts.quiet) return;
    switch (e.type) {
      case "plan": {
        planAt = Date.now();
        startBytes = e.bytesDone;
        const at = `${e.repo}@${e.revision} (commit ${e.commit.slice(0, 12)})`;
        if (e.downloads.length === 0) {
          line(`${at}: all ${e.files} files in the cache ${e.cacheDir}`);
        } else {
          const resumed = e.resumedBytes > 0 ? `, resuming with ${formatBytes(e.resumedBytes)} already here` : "";
          line(
            `downloading ${at}: ${e.downloads.length} of ${e.files} files, ${formatBytes(e.bytesTotal)}${resumed}, into ${e.cacheDir}`,
          );
        }
        break;
      }
      case "progress": {
        if (!tty) return;
        const seconds = Math.max((Date.now() - planAt) / 1000, 1e-3);
        const rate = Math.max(e.bytesDone - startBytes, 0) / seconds;
        // The first half second's rate is noise: no ETA from it.
        const eta = rate > 0 && seconds >= 0.5 ? Math.max(e.bytesTotal - e.bytesDone, 0) / rate : Number.NaN;
        const text =
          `${formatBytes(Math.max(e.bytesDone, 0))} / ${formatBytes(e.bytesTotal)}  ${formatBytes(rate)}/s  ` +
          `ETA ${formatSeconds(eta)}  [${e.filesDone}/${e.filesTotal} files]`;
        out.write(`\r\x1b[2K${text.slice(0, (out.columns || 120) - 1)}`);
        drawn = true;
        break;
      }
      case "retry":
        line(`warning: ${e.file}: ${e.reason}; resuming at ${formatBytes(e.offsetBytes)} (try ${e.attempt})`);
        break;
      case "wait":
        line(
          `waiting for process ${e.pid}, which is downloading ${e.file} (if it is not, delete its lock ${e.lockPath})`,
        );
        break;
      case "cached":
        line(
          e.why === "offline"
            ? `${e.repo}@${e.revision}: offline (HF_HUB_OFFLINE), using the cached snapshot ${e.commit.slice(0, 12)}`
            : `warning: cannot reach the hub (${e.reason}); using the cached snapshot ${e.commit.slice(0, 12)} of ${e.repo}@${e.revision}`,
        );
        break;
      case "done":
        clear();
        if (e.downloadedFiles > 0) {
          const seconds = Math.max(e.elapsedMs / 1000, 1e-3);
          line(
            `downloaded ${e.downloadedFiles} file${e.downloadedFiles === 1 ? "" : "s"}, ${formatBytes(e.downloadedBytes)} ` +
              `in ${formatSeconds(seconds)} ` +
              `(${formatBytes(e.downloadedBytes / seconds)}/s)`,
          );
        }
        break;
      case "resolve":
        break;
    }
  };
  return Object.assign(report, { done: clear });
}
