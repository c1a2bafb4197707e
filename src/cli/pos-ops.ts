import { answerTopLevel, runMain, UsageError } from "./args.js";

const HELP = `pos-ops: operator tools for pos-agent fleets

Usage:
  pos-ops --help
  pos-ops --version

This build has no operator commands yet. The contract's pki, release, sign, cmd and diag commands
arrive with the remote-commands and signed-release capabilities.`;

async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  const answered = answerTopLevel(command, HELP);
  if (answered !== undefined) return answered;
  throw new UsageError(`pos-ops: unknown command "${command}"; see pos-ops --help`);
}

runMain(() => main(process.argv.slice(2)));
