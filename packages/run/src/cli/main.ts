#!/usr/bin/env node
import { PajamasError, UsageError } from "@llama-pajamas/artifact";
import { RUNTIME_VERSION } from "../version.js";
import { type Command, parse } from "./args.js";
import { backendsCommand } from "./backends.js";
import { benchmarkCommand } from "./benchmark.js";
import { chatCommand } from "./chat.js";
import { generateCommand } from "./generate.js";
import { serveCommand } from "./serve.js";

const commands: Command[] = [generateCommand, chatCommand, serveCommand, benchmarkCommand, backendsCommand];

const help = `llama-pajamas-run ${RUNTIME_VERSION}: run quantized GGUF artifacts

Usage: llama-pajamas-run <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(12)}${c.summary}`).join("\n")}

Run \`llama-pajamas-run <command> --help\` for a command's options.`;

/** The only place that exits: usage errors 2, user errors 1, bugs 70 with the stack. */
async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help + "\n");
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(RUNTIME_VERSION + "\n");
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command "${name}"; commands: ${commands.map((c) => c.name).join(", ")}`);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.usage + "\n");
    return 0;
  }
  const { values, positionals } = parse(rest, command.options);
  return command.run(values, positionals);
}

// A reader that goes away (`| head`) ends the run quietly rather than with an EPIPE trace.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exitCode = 2;
    } else if (e instanceof PajamasError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`internal error (please report): ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 70;
    }
  },
);
