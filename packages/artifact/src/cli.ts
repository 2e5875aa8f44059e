import { PajamasError, UsageError } from "./errors.js";

/** What the shared entry point needs to know of a command. */
export interface CliCommandInfo {
  name: string;
  summary: string;
  usage: string;
}

/**
 * The entry point both CLIs share, and the only place that sets the exit code: usage errors
 * 2, user errors (PajamasError) 1 with one `error:` line, bugs 70 with the stack.
 * `invoke` parses a command's own flags and runs it.
 */
export function runCli<C extends CliCommandInfo>(opts: {
  program: string;
  version: string;
  tagline: string;
  commands: C[];
  invoke: (command: C, argv: string[]) => Promise<number>;
  argv?: string[];
}): void {
  const { program, version, commands } = opts;
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const help = `${program} ${version}: ${opts.tagline}

Usage: ${program} <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join("\n")}

Run \`${program} <command> --help\` for a command's options.`;

  const main = async (argv: string[]): Promise<number> => {
    const [name, ...rest] = argv;
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      process.stdout.write(help + "\n");
      return name === undefined ? 2 : 0;
    }
    if (name === "--version" || name === "-v") {
      process.stdout.write(version + "\n");
      return 0;
    }
    const command = commands.find((c) => c.name === name);
    if (!command) throw new UsageError(`unknown command "${name}"; commands: ${commands.map((c) => c.name).join(", ")}`);
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(command.usage + "\n");
      return 0;
    }
    return opts.invoke(command, rest);
  };

  // `... | head` closes stdout early: stop quietly, as Unix tools do.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });

  main(opts.argv ?? process.argv.slice(2)).then(
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
}
