#!/usr/bin/env node
import { runCli } from "@llama-pajamas/artifact";
import { RUNTIME_VERSION } from "../version.js";
import { type Command, parse } from "./args.js";
import { backendsCommand } from "./backends.js";
import { benchmarkCommand } from "./benchmark.js";
import { chatCommand } from "./chat.js";
import { generateCommand } from "./generate.js";
import { serveCommand } from "./serve.js";

const commands: Command[] = [generateCommand, chatCommand, serveCommand, benchmarkCommand, backendsCommand];

runCli({
  program: "llama-pajamas-run",
  version: RUNTIME_VERSION,
  tagline: "run quantized GGUF artifacts",
  commands,
  invoke(command, argv) {
    const { values, positionals } = parse(argv, command.options);
    return command.run(values, positionals);
  },
});
