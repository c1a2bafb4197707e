import { type ParseArgsConfig, parseArgs } from "node:util";
import { readAgentVersion } from "../shared/version.js";

/** A usage mistake: printed as one sentence, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  command: string,
) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`);
  }
}

/** Runs a CLI main, mapping errors to the contract's exit codes: 1 runtime failure, 2 usage or config. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`${error.message}\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`error: ${(error as Error)?.message ?? String(error)}\n`);
        process.exitCode = 1;
      }
    },
  );
}

/** `--help`, `help`, `-h`, `--version`, or nothing at all: answered the same way by both programs. */
export function answerTopLevel(command: string | undefined, help: string): number | undefined {
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(help);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version") {
    console.log(readAgentVersion());
    return 0;
  }
  return undefined;
}
