import { formatProblems, loadConfig } from "../config/load.js";
import { type DiagnosticsReport, formatReport, runDiagnostics } from "../diagnostics/check.js";
import { openLocalDiagnostics } from "../diagnostics/local-checks.js";
import { runAgent } from "../main.js";
import { formatStatus, readStatus } from "./agent-status.js";
import { answerTopLevel, parse, runMain, UsageError } from "./args.js";
import { loadConfigOrThrow } from "./load-config-or-throw.js";
import { ROLLBACK_HELP, rollbackCommand } from "./rollback-cli.js";
import { VERIFY_HELP, verifyCommand } from "./verify-release-cli.js";

const HELP = `pos-agent: on-device diagnostics and remote-update agent for POS terminals

Usage:
  pos-agent run [--config FILE]            run the daemon (SIGTERM/SIGINT stop it cleanly)
  pos-agent config check FILE              validate a config file; exit 0 valid, 2 invalid
  pos-agent status [--config FILE] [--json]
                                           connection, outbox depth/age/drops, components and their
                                           last update (works beside the daemon)
  pos-agent diag [--config FILE] [--json]  run the diagnostics suite locally; exit 0 no check fails, 1 any fails
  pos-agent verify [--config FILE] [--json] ENVELOPE
                                           decide offline whether a signed release would be installed;
                                           exit 0 accept, 1 reject
  pos-agent rollback [--config FILE] COMPONENT
                                           go back to the previous release of COMPONENT (daemon stopped)
  pos-agent --version

The config defaults to $POS_AGENT_CONFIG, else /etc/pos-agent/config.json.
Exit codes: 0 success, 1 runtime failure, 2 usage or config error.
Each command answers --help.`;

const COMMAND_HELP: Record<string, string> = {
  run: `Usage: pos-agent run [--config FILE]

Runs the agent: stores records in the SQLite outbox in dataDir, publishes them over MQTT, serves the
local intake API. SIGTERM or SIGINT: stop intake, flush what can be flushed, publish offline, exit 0.`,
  config: `Usage: pos-agent config check FILE

Validates FILE against the config schema. Prints every problem as FILE: path.to.key: message and exits
2 if there is any, else prints "FILE: ok" and exits 0.`,
  status: `Usage: pos-agent status [--config FILE] [--json]

Reads the agent's database (read-only; safe while the daemon runs) and prints whether the daemon runs,
the broker connection, the outbox depth, size, oldest record age and drop counters per stream, and
each component's live release, security floor and last update with its state and reason.`,
  diag: `Usage: pos-agent diag [--config FILE] [--json]

Runs the diagnostics suite on this terminal, beside the daemon or without it, and prints one row per
check (pass, warn or fail, a detail, the time taken); --json prints the report as JSON for scripts.
Checks: database (read-only quick_check), outbox backlog and age, disk and memory headroom, clock trust
as the agent last recorded it, broker (the daemon's last recorded connection), peripherals (checked by
the running agent only: it holds the serial ports; use pos-ops diag), certificate expiry
(mqtt.tls.cert, mqtt.tls.ca, trust roots), components.
Exit codes: 0 no check failed (warnings allowed), 1 a check failed, 2 usage or config error.`,
  verify: VERIFY_HELP,
  rollback: ROLLBACK_HELP,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const answered = answerTopLevel(command, HELP);
  if (answered !== undefined) return answered;
  switch (command) {
    case "run":
      return run(rest);
    case "config":
      return configCheck(rest);
    case "status":
      return status(rest);
    case "diag":
      return diag(rest);
    case "verify":
      return verifyCommand(rest);
    case "rollback":
      return rollbackCommand(rest);
    default:
      throw new UsageError(`pos-agent: unknown command "${command}"; see pos-agent --help`);
  }
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: "string", short: "c" } }, "pos-agent run");
  if (values.help) return help("run");
  if (positionals.length > 0) throw new UsageError(`pos-agent run: unexpected argument "${positionals[0]}"`);
  const { config } = loadConfigOrThrow(values.config);
  // Handlers go in before the start: a SIGTERM while the agent starts (a service manager that gives
  // up, a fast restart) must still end in a clean stop, not in the default action that looks like a crash.
  let stopping = false;
  let startedHandle: Awaited<ReturnType<typeof runAgent>> | undefined;
  let stopRequested: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stopRequested = () => {
      if (startedHandle === undefined) return; // stopped as soon as the start completes
      startedHandle.stop().then(resolve, (error: unknown) => {
        process.stderr.write(`pos-agent: clean stop failed: ${(error as Error).message}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
  });
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`pos-agent: second ${signal}; exiting at once\n`);
      process.exit(1);
    }
    stopping = true;
    stopRequested();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  startedHandle = await runAgent(config);
  if (stopping) stopRequested();
  await stopped;
  return Number(process.exitCode ?? 0);
}

function configCheck(args: string[]): number {
  const { values, positionals } = parse(args, {}, "pos-agent config");
  if (values.help) return help("config");
  const [sub, file, ...extra] = positionals;
  if (sub !== "check") throw new UsageError('pos-agent config: the only subcommand is "check FILE"');
  if (file === undefined) throw new UsageError("pos-agent config check: name the config FILE to check");
  if (extra.length > 0) throw new UsageError(`pos-agent config check: unexpected argument "${extra[0]}"`);
  const loaded = loadConfig(file);
  if (!loaded.ok) {
    console.error(formatProblems(loaded.error.file, loaded.error.problems));
    return 2;
  }
  console.log(`${loaded.value.file}: ok`);
  return 0;
}

function status(args: string[]): number {
  const { values, positionals } = parse(
    args,
    { config: { type: "string", short: "c" }, json: { type: "boolean" } },
    "pos-agent status",
  );
  if (values.help) return help("status");
  if (positionals.length > 0)
    throw new UsageError(`pos-agent status: unexpected argument "${positionals[0]}"`);
  const { config } = loadConfigOrThrow(values.config);
  const report = readStatus(config);
  console.log(values.json ? JSON.stringify(report, null, 2) : formatStatus(report, Date.now()));
  return 0;
}

async function diag(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { config: { type: "string", short: "c" }, json: { type: "boolean" } },
    "pos-agent diag",
  );
  if (values.help) return help("diag");
  if (positionals.length > 0) throw new UsageError(`pos-agent diag: unexpected argument "${positionals[0]}"`);
  const { config } = loadConfigOrThrow(values.config);
  const local = openLocalDiagnostics(config, { now: Date.now });
  let report: DiagnosticsReport;
  try {
    report = await runDiagnostics(local.checks, { deviceId: config.deviceId, now: Date.now });
  } finally {
    local.close();
  }
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.summary.fail > 0 ? 1 : 0;
}

function help(command: string): number {
  console.log(COMMAND_HELP[command]);
  return 0;
}

runMain(() => main(process.argv.slice(2)));
