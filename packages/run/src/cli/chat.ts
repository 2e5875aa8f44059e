import { createInterface } from "node:readline";
import { UsageError } from "@llama-pajamas/artifact";
import type { ChatMessage } from "../chat-template.js";
import { ContextOverflowError } from "../errors.js";
import { Runtime } from "../runtime.js";
import { optionalString, type Command } from "./args.js";
import { abortOnSigint, inferenceConfig, MODEL_OPTIONS, MODEL_USAGE, readTextFile, runtimeOptions, SAMPLING_OPTIONS, SAMPLING_USAGE, speedLine, transcodeSummary } from "./common.js";

const usage = `Usage: llama-pajamas-run chat --model PATH [--system TEXT] [options]

Talks with the model through its chat template, keeping the conversation. Each line read
from stdin is one user turn (it works with a pipe); the answer streams to stdout, followed
by a newline. Lines /reset (forget the conversation, keep --system) and /exit are commands.

Chat options:
  --system TEXT                a system message for the whole conversation
  --chat-template-file FILE    a Jinja chat template instead of the model's own
  --chat-template-kwargs JSON  extra template variables, e.g. '{"enable_thinking":false}'
  --stats                      print token counts and speed to stderr after each answer

${MODEL_USAGE}

${SAMPLING_USAGE}`;

export const chatCommand: Command = {
  name: "chat",
  summary: "interactive chat with the model's chat template",
  usage,
  options: {
    ...MODEL_OPTIONS,
    ...SAMPLING_OPTIONS,
    system: { type: "string", short: "s" },
    "chat-template-file": { type: "string" },
    "chat-template-kwargs": { type: "string" },
    stats: { type: "boolean" },
  },
  async run(values) {
    const config = inferenceConfig(values);
    const kwargs = parseKwargs(optionalString(values, "chat-template-kwargs"));
    const templateFile = optionalString(values, "chat-template-file");
    const chatTemplate = templateFile === undefined ? undefined : await readTextFile(templateFile, "chat template");
    const runtime = await Runtime.load(runtimeOptions(values, usage, { mainThreadDecodes: true, ...(chatTemplate === undefined ? {} : { chatTemplate }) }));
    transcodeSummary(runtime, values);
    const system = optionalString(values, "system");
    const initial: ChatMessage[] = system === undefined ? [] : [{ role: "system", content: system }];
    let history = [...initial];
    // Fail now, not at the first turn, when the model has no template.
    runtime.applyChatTemplate([...history, { role: "user", content: "" }], kwargs);

    const interactive = process.stdin.isTTY === true;
    const lines = createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
    if (interactive) process.stderr.write(`${runtime.name} on ${runtime.backend}; /reset clears the conversation, /exit quits\n`);
    let failed = false;
    try {
      for (;;) {
        if (interactive) process.stderr.write("> ");
        const next = await lines.next();
        if (next.done === true) break;
        const line = next.value.trim();
        if (line === "") continue;
        if (line === "/exit") break;
        if (line === "/reset") {
          history = [...initial];
          if (interactive) process.stderr.write("[conversation cleared]\n");
          continue;
        }
        const turn = [...history, { role: "user", content: line }];
        const sigint = abortOnSigint();
        try {
          const stream = runtime.chat(turn, { ...config, ...(kwargs ? { chatTemplateKwargs: kwargs } : {}), stream: true, signal: sigint.signal });
          for await (const piece of stream) process.stdout.write(piece);
          const result = await stream.result;
          process.stdout.write("\n");
          if (values.stats === true) process.stderr.write(speedLine(result) + "\n");
          history = [...turn, { role: "assistant", content: result.text }];
        } catch (e) {
          // A conversation that outgrew the context is not fatal: say so and let the user /reset.
          if (!(e instanceof ContextOverflowError)) throw e;
          failed = true;
          process.stderr.write(`error: ${e.message}; /reset starts over\n`);
        } finally {
          sigint.dispose();
        }
      }
    } finally {
      await runtime.unload();
    }
    return failed ? 1 : 0;
  },
};

function parseKwargs(raw: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new UsageError(`--chat-template-kwargs is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new UsageError(`--chat-template-kwargs must be a JSON object, got ${raw}`);
  return v as Record<string, unknown>;
}
