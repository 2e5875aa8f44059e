import { availableBackends } from "../backends/select.js";
import { BACKEND_NAMES } from "../config.js";
import type { Command } from "./args.js";

const usage = `Usage: llama-pajamas-run backends [--json]

Lists the backends that can run on this machine, best first (the order --backend auto
tries them in).`;

export const backendsCommand: Command = {
  name: "backends",
  summary: "list the backends available on this machine",
  usage,
  options: { json: { type: "boolean" } },
  async run(values) {
    const available = await availableBackends();
    if (values.json === true) {
      process.stdout.write(JSON.stringify({ available }) + "\n");
      return 0;
    }
    for (const name of BACKEND_NAMES) {
      if (name === "auto") continue;
      process.stdout.write(`${name.padEnd(8)}${available.includes(name) ? "available" : "not available"}\n`);
    }
    return 0;
  },
};
