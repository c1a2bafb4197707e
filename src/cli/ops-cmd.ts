import { COMMAND_NAME_PATTERN } from "../commands/command.js";
import { isTerminalStatus } from "../shared/command-response.js";
import { errorMessage } from "../shared/errors.js";
import {
  type FleetResponse,
  parseTarget,
  type ReceivedResponse,
  targetText,
} from "../transport/command-client.js";
import { parse, UsageError } from "./args.js";
import {
  BROKER_HELP,
  BROKER_OPTIONS,
  buildCommand,
  checkCommandId,
  closeQuietly,
  type OpsDeps,
  parseWait,
  processDeps,
  readBrokerOptions,
  readSigner,
  required,
} from "./ops-broker.js";

export const CMD_HELP = `Usage: pos-ops cmd --broker URL --tenant T --target DEVICE|group:G CMD [--args JSON]
                   [--sign KEY,CERT] [--wait SEC] [--id ID] [--json]
                   [--ca FILE] [--cert FILE --key FILE] [--username U --password-file F]

Sends one command (CONTRACT.md 6) and prints its responses as they arrive: one line each,
"DEVICE  status  code  message", and the result JSON when a device has finished.
  --args JSON       the command's arguments, a JSON object (default {})
  --sign KEY,CERT   sign it with an operator key and certificate (a pos-command+json envelope)
  --wait SEC        how long to wait for answers (default 30); the command expires after
                    the wait, and never sooner than a minute after it was issued
  --id ID           the command id (default: random); sending the same id again gets the
                    terminal's stored answer, marked duplicate, instead of a second run
  --json            print each response as it arrived, one JSON object per line
For a device, it exits on the device's final answer: 0 succeeded, 1 failed or rejected, 1 when
none came within the wait. For group:G, it waits the whole --wait (the group's members are not
known here) and exits 0 if at least one device answered and every one that did succeeded.

${BROKER_HELP}`;

const DEFAULT_WAIT_SEC = 30;

export async function opsCmd(argv: string[], deps: OpsDeps = processDeps()): Promise<number> {
  const command = "pos-ops cmd";
  const { values, positionals } = parse(
    argv,
    {
      ...BROKER_OPTIONS,
      target: { type: "string" },
      args: { type: "string" },
      sign: { type: "string" },
      wait: { type: "string" },
      id: { type: "string" },
      json: { type: "boolean" },
    },
    command,
  );
  if (values.help) {
    deps.out(CMD_HELP);
    return 0;
  }
  const [cmd, ...extra] = positionals;
  if (cmd === undefined) throw new UsageError(`${command}: name the command to send, e.g. ping`);
  if (extra.length > 0) throw new UsageError(`${command}: unexpected argument "${extra[0]}"`);
  if (!COMMAND_NAME_PATTERN.test(cmd)) {
    throw new UsageError(`${command}: "${cmd}" is not a command name (1-64 characters of A-Z a-z 0-9 . _ -)`);
  }
  const broker = readBrokerOptions(command, values);
  const targetOption = required(command, "target", values.target, "DEVICE|group:G");
  const parsedTarget = parseTarget(targetOption);
  if (!parsedTarget.ok) throw new UsageError(`${command}: --target ${parsedTarget.error}`);
  const target = parsedTarget.value;
  const args = parseArgsJson(command, values.args);
  const waitSec = parseWait(command, values.wait, DEFAULT_WAIT_SEC);
  const id = values.id === undefined ? deps.newId() : checkCommandId(command, values.id);
  const sign = readSigner(command, values.sign);
  const json = values.json === true;

  const request = buildCommand({ id, cmd, args, target: targetText(target), now: deps.now(), waitSec });
  const payload = sign === undefined ? request : sign(request);

  const client = await deps.connect(broker.client);
  try {
    client.onInvalid((problem) => deps.err(`warning: ${problem}`));
    const lastByDevice = new Map<string, FleetResponse>();
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    client.onResponse((received: ReceivedResponse) => {
      if (received.id !== id) return;
      const response = received.response;
      lastByDevice.set(response.deviceId, response);
      deps.out(json ? JSON.stringify(response) : describe(response));
      if (
        target.kind === "device" &&
        response.deviceId === target.deviceId &&
        isTerminalStatus(response.status)
      ) {
        finish();
      }
    });
    const timer = setTimeout(finish, waitSec * 1000);
    try {
      await client.send(broker.tenant, target, payload, { id, expirySec: waitSec });
      await finished;
    } finally {
      clearTimeout(timer);
    }
    return target.kind === "device"
      ? deviceOutcome(deps, target.deviceId, lastByDevice.get(target.deviceId), waitSec)
      : groupOutcome(deps, targetText(target), lastByDevice, waitSec);
  } finally {
    await closeQuietly(client, deps);
  }
}

/** `DEVICE  status  code  message`, then the result for a finished command. */
export function describe(response: FleetResponse): string {
  const fields: string[] = [response.deviceId, response.status];
  if (response.code !== undefined) fields.push(response.code);
  if (response.progress !== undefined) fields.push(`${response.progress}%`);
  if (response.message !== undefined) fields.push(response.message);
  if (response.duplicate === true) fields.push("(duplicate: the stored answer, not run again)");
  const line = fields.join("  ");
  if (!isTerminalStatus(response.status) || response.result === undefined) return line;
  return `${line}\n${JSON.stringify(response.result, null, 2)}`;
}

function deviceOutcome(
  deps: OpsDeps,
  deviceId: string,
  last: FleetResponse | undefined,
  waitSec: number,
): number {
  if (last === undefined) {
    deps.err(`no answer from ${deviceId} within ${waitSec} s`);
    return 1;
  }
  if (!isTerminalStatus(last.status)) {
    deps.err(`no final answer from ${deviceId} within ${waitSec} s (last status: ${last.status})`);
    return 1;
  }
  return last.status === "succeeded" ? 0 : 1;
}

function groupOutcome(
  deps: OpsDeps,
  target: string,
  lastByDevice: Map<string, FleetResponse>,
  waitSec: number,
): number {
  const counts = new Map<string, number>();
  for (const response of lastByDevice.values()) {
    const key = isTerminalStatus(response.status) ? response.status : "unfinished";
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const answered = lastByDevice.size;
  const parts = ["succeeded", "failed", "rejected", "unfinished"]
    .filter((key) => counts.has(key))
    .map((key) => `${counts.get(key)} ${key}`);
  deps.err(
    `${target}: ${answered} device(s) answered within ${waitSec} s${parts.length > 0 ? ` (${parts.join(", ")})` : ""}`,
  );
  return answered > 0 && counts.get("succeeded") === answered ? 0 : 1;
}

function parseArgsJson(command: string, text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${command}: --args is not valid JSON (${errorMessage(error)})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${command}: --args must be a JSON object, e.g. '{"checks":["disk"]}'`);
  }
  return value as Record<string, unknown>;
}
