import { UsageError } from "@llama-pajamas/artifact";
import { inspectModel } from "../info.js";
import type { Command } from "./args.js";
import { downloadProgress } from "./download-progress.js";
import { formatBytes } from "./progress.js";

const usage = `Usage: llama-pajamas-quant info MODEL [--json] [--quiet]

Describes a checkpoint directory, a hub id org/name[@revision] (fetched into the Hugging Face
cache first, progress on stderr unless --quiet or --json), or a .gguf file: architecture,
family (dense/MoE), parameters, tensor dtypes, size, tokenizer, and whether this pipeline can
convert it.`;

export const infoCommand: Command = {
  name: "info",
  summary: "describe a checkpoint or GGUF file",
  usage,
  options: { json: { type: "boolean" }, quiet: { type: "boolean" } },
  async run(values, positionals) {
    const path = positionals[0];
    if (!path) throw new UsageError(`info needs a MODEL path\n\n${usage}`);
    const downloads = downloadProgress({ quiet: values.quiet === true || values.json === true });
    const info = await inspectModel(path, { hub: { onEvent: downloads } }).finally(() => downloads.done());
    if (values.json === true) {
      process.stdout.write(JSON.stringify(info, null, 2) + "\n");
      return 0;
    }
    const rows: [string, string][] = [
      ["path", info.path],
      ...(info.hub ? ([["hub", `${info.hub.repo}@${info.hub.revision} (commit ${info.hub.commit})`]] as [string, string][]) : []),
      ["kind", info.kind],
      ["architecture", `${info.architecture ?? "?"}${info.modelType ? ` (model_type ${info.modelType})` : ""}`],
      ["family", info.family ?? "?"],
      ["parameters", `${info.paramsLabel} (${info.params.toLocaleString("en")})`],
      ["layers", info.layers === undefined ? "?" : String(info.layers)],
      ...(info.experts ? ([["experts", String(info.experts)]] as [string, string][]) : []),
      ["dtypes", Object.entries(info.dtypes).map(([k, v]) => `${k}: ${v}`).join(", ")],
      ["size", formatBytes(info.sizeBytes)],
      ["tokenizer", info.tokenizer ?? "?"],
      ["supported", info.supported ? "yes" : `no: ${info.reason}`],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(13)} ${v}\n`);
    return 0;
  },
};
