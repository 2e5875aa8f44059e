import { UsageError } from "@llama-pajamas/artifact";
import { Runtime } from "../runtime.js";
import type { Command } from "./args.js";
import { abortOnSigint, inferenceConfig, MODEL_OPTIONS, MODEL_USAGE, readStdin, runtimeOptions, SAMPLING_OPTIONS, SAMPLING_USAGE, speedLine, transcodeSummary } from "./common.js";

const usage = `Usage: llama-pajamas-run generate --model PATH --prompt TEXT [options]

Continues TEXT as raw text (no chat template: that is \`chat\`). Only the generated text goes
to stdout, as it is produced; token counts and speed go to stderr. --prompt - reads the
prompt from stdin.

${MODEL_USAGE}

${SAMPLING_USAGE}`;

export const generateCommand: Command = {
  name: "generate",
  summary: "continue a prompt (raw text, streamed to stdout)",
  usage,
  options: { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, prompt: { type: "string", short: "p" } },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}; give the prompt with --prompt\n\n${usage}`);
    const promptFlag = values.prompt;
    if (typeof promptFlag !== "string") throw new UsageError(`--prompt is required (use --prompt - to read stdin)\n\n${usage}`);
    const config = inferenceConfig(values);
    const options = runtimeOptions(values, usage, { mainThreadDecodes: true });
    const prompt = promptFlag === "-" ? await readStdin() : promptFlag;
    const runtime = await Runtime.load(options);
    transcodeSummary(runtime, values);
    const sigint = abortOnSigint();
    try {
      const stream = runtime.generate(prompt, { ...config, stream: true, signal: sigint.signal });
      for await (const piece of stream) process.stdout.write(piece);
      const result = await stream.result;
      if (process.stdout.isTTY) process.stderr.write("\n");
      process.stderr.write(speedLine(result) + "\n");
      return 0;
    } finally {
      sigint.dispose();
      await runtime.unload();
    }
  },
};
