#!/usr/bin/env node
import { runCli } from "@llama-pajamas/artifact";
import { type Command, parse } from "./args.js";
import { convertCommand } from "./convert.js";
import { infoCommand } from "./info.js";
import { listMethodsCommand } from "./list-methods.js";
import { validateCommand } from "./validate.js";
import { PIPELINE_VERSION } from "../version.js";

const commands: Command[] = [convertCommand, infoCommand, listMethodsCommand, validateCommand];

runCli({
  program: "llama-pajamas-quant",
  version: PIPELINE_VERSION,
  tagline: "Hugging Face checkpoints to quantized GGUF artifacts",
  commands,
  invoke(command, argv) {
    const { values, positionals } = parse(argv, command.options);
    return command.run(values, positionals);
  },
});
