import { readAgentVersion } from "../shared/version.js";
import { runMain, UsageError } from "./args.js";

const HELP = `pos-ops: operator tools for pos-agent fleets

Usage:
  pos-ops --help
  pos-ops --version

This build has no operator commands yet. The contract's pki, release, sign, cmd and diag commands
arrive with the remote-commands and signed-release capabilities.`;

async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version") {
    console.log(readAgentVersion());
    return 0;
  }
  throw new UsageError(`pos-ops: unknown command "${command}"; see pos-ops --help`);
}

runMain(() => main(process.argv.slice(2)));
