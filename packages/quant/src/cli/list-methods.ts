import { METHODS } from "../quantize/methods.js";
import type { Command } from "./args.js";

const usage = `Usage: llama-pajamas-quant list-methods [--json]

Lists the GGUF quantization methods with their bits per weight.`;

export const listMethodsCommand: Command = {
  name: "list-methods",
  summary: "list GGUF quantization methods",
  usage,
  options: { json: { type: "boolean" } },
  async run(values) {
    if (values.json === true) {
      process.stdout.write(JSON.stringify(METHODS, null, 2) + "\n");
      return 0;
    }
    const w = Math.max(...METHODS.map((m) => m.name.length));
    process.stdout.write(`${"method".padEnd(w)}  ${"bpw*".padStart(5)}      llama.cpp's description\n`);
    for (const m of METHODS) {
      const bpw = m.bitsPerWeight.toFixed(2).padStart(5);
      process.stdout.write(`${m.name.padEnd(w)}  ${bpw} bpw  ${m.description}${m.requiresImatrix ? " (needs --imatrix)" : ""}\n`);
    }
    process.stdout.write("\n* bits per weight of the whole mix (output, attn_v, ffn_down bumps) on a Llama-3-8B-shaped model\n");
    return 0;
  },
};
