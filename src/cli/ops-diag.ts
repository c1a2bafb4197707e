import { errorMessage } from "../shared/errors.js";
import { type CommandTarget, parseTarget, targetText } from "../transport/command-client.js";
import { parse, UsageError } from "./args.js";
import { type DiagEntry, isFinal, renderTable, summarise, toRow } from "./diag-rows.js";
import {
  BROKER_HELP,
  BROKER_OPTIONS,
  buildCommand,
  closeQuietly,
  type OpsDeps,
  parseWait,
  processDeps,
  readBrokerOptions,
  readSigner,
  required,
} from "./ops-broker.js";

export const DIAG_HELP = `Usage: pos-ops diag --broker URL --tenant T --target DEV1,DEV2,…|group:G [--wait SEC]
                    [--checks a,b] [--sign KEY,CERT] [--json]
                    [--ca FILE] [--cert FILE --key FILE] [--username U --password-file F]

Runs the diagnostics suite (diagnostics.run) on many terminals at once and prints one row per
device: its pass, warn and fail counts, its worst check and how long the answer took, or
"no answer" when none came by the deadline.
  --target          a comma-separated list of device ids (one command each), or group:G (one
                    command on the group's topic; only devices that answer get a row, since the
                    group's members are not known here)
  --wait SEC        the deadline (default 30); a device list ends sooner once all have answered
  --checks a,b      run only these checks
  --sign KEY,CERT   sign the commands with an operator key and certificate
  --json            one JSON object per device instead of the table
While waiting, a progress line on stderr when it is a terminal; a summary at the end.
Exit 0 when every device answered and no check failed, 1 otherwise.

${BROKER_HELP}`;

const DEFAULT_WAIT_SEC = 30;
const PROGRESS_EVERY_MS = 250;
const CHECK_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export async function opsDiag(argv: string[], deps: OpsDeps = processDeps()): Promise<number> {
  const command = "pos-ops diag";
  const { values, positionals } = parse(
    argv,
    {
      ...BROKER_OPTIONS,
      target: { type: "string" },
      wait: { type: "string" },
      checks: { type: "string" },
      sign: { type: "string" },
      json: { type: "boolean" },
    },
    command,
  );
  if (values.help) {
    deps.out(DIAG_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`${command}: unexpected argument "${positionals[0]}"`);
  const broker = readBrokerOptions(command, values);
  const targets = parseTargets(command, required(command, "target", values.target, "DEV1,DEV2,…|group:G"));
  const waitSec = parseWait(command, values.wait, DEFAULT_WAIT_SEC);
  const args = parseChecks(command, values.checks);
  const sign = readSigner(command, values.sign);
  const json = values.json === true;
  const group = targets.length === 1 && targets[0]?.kind === "group" ? targets[0] : undefined;

  const client = await deps.connect(broker.client);
  const started = deps.now();
  const deadline = started + waitSec * 1000;
  /** By command id for a device list; by device id for a group (one command, many answers). */
  const pending = new Map<string, DiagEntry>();
  const byDevice = new Map<string, DiagEntry>();
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    client.onInvalid((problem) => deps.err(`warning: ${problem}`));
    const answered = (): number => [...byDevice.values()].filter((p) => isFinal(p.last)).length;
    const allDone = (): boolean =>
      [...byDevice.values()].every((p) => p.error !== undefined || isFinal(p.last));
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const groupId = group === undefined ? undefined : deps.newId();
    client.onResponse((received) => {
      if (group !== undefined) {
        if (received.id !== groupId) return;
        const deviceId = received.response.deviceId;
        const entry = byDevice.get(deviceId) ?? { deviceId, sentAt: started };
        if (!isFinal(entry.last)) entry.last = received;
        byDevice.set(deviceId, entry);
        return;
      }
      const entry = pending.get(received.id);
      if (entry === undefined || isFinal(entry.last)) return;
      entry.last = received;
      if (allDone()) finish();
    });
    const timer = setTimeout(finish, waitSec * 1000);
    if (deps.progressTty) {
      const total = group === undefined ? `/${targets.length}` : "";
      ticker = setInterval(() => {
        const left = Math.max(0, Math.ceil((deadline - deps.now()) / 1000));
        deps.progress(`answered ${answered()}${total}, waiting ${left} s more`);
      }, PROGRESS_EVERY_MS);
    }

    const send = async (target: CommandTarget, id: string, entry: DiagEntry | undefined): Promise<void> => {
      const request = buildCommand({
        id,
        cmd: "diagnostics.run",
        args,
        target: targetText(target),
        now: deps.now(),
        waitSec,
      });
      try {
        await client.send(broker.tenant, target, sign === undefined ? request : sign(request), {
          id,
          expirySec: waitSec,
        });
      } catch (error) {
        if (entry === undefined) throw error;
        entry.error = errorMessage(error);
      }
    };
    try {
      if (group !== undefined && groupId !== undefined) {
        await send(group, groupId, undefined);
      } else {
        const sends: Promise<void>[] = [];
        for (const target of targets) {
          if (target.kind !== "device") continue;
          const id = deps.newId();
          const entry: DiagEntry = { deviceId: target.deviceId, sentAt: deps.now() };
          pending.set(id, entry);
          byDevice.set(target.deviceId, entry);
          sends.push(send(target, id, entry));
        }
        await Promise.all(sends);
        // Nobody left to wait for when every request failed to go out or all answered already.
        if (allDone()) finish();
      }
      await finished;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    if (ticker !== undefined) {
      clearInterval(ticker);
      deps.progress("");
    }
    await closeQuietly(client, deps);
  }

  const entries = [...byDevice.values()];
  if (group !== undefined) entries.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  const rows = entries.map(toRow);
  if (json) {
    for (const row of rows) deps.out(JSON.stringify(row));
  } else {
    for (const line of renderTable(rows)) deps.out(line);
  }
  const summary = summarise(rows);
  if (group === undefined) {
    deps.err(
      `${rows.length} device(s): ${summary.answered} answered within ${waitSec} s, ${rows.length - summary.answered} no answer; ${summary.failing} with failing checks or commands`,
    );
    return summary.answered === rows.length && summary.failing === 0 ? 0 : 1;
  }
  deps.err(
    `${targetText(group)}: ${summary.answered} device(s) answered within ${waitSec} s, ${summary.failing} with failing checks or commands; members that did not answer have no row (pos-ops cannot know the group's members)`,
  );
  return summary.answered > 0 && summary.answered === rows.length && summary.failing === 0 ? 0 : 1;
}

function parseTargets(command: string, text: string): CommandTarget[] {
  if (text.startsWith("group:")) {
    const parsed = parseTarget(text);
    if (!parsed.ok) throw new UsageError(`${command}: --target ${parsed.error}`);
    return [parsed.value];
  }
  const seen = new Set<string>();
  const targets: CommandTarget[] = [];
  for (const item of text.split(",").map((part) => part.trim())) {
    if (item === "") continue;
    const parsed = parseTarget(item);
    if (!parsed.ok) throw new UsageError(`${command}: --target ${parsed.error}`);
    if (parsed.value.kind === "group") {
      throw new UsageError(`${command}: --target takes a list of device ids or one group:G, not both`);
    }
    if (seen.has(parsed.value.deviceId)) continue;
    seen.add(parsed.value.deviceId);
    targets.push(parsed.value);
  }
  if (targets.length === 0) throw new UsageError(`${command}: --target names no device`);
  return targets;
}

function parseChecks(command: string, text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  const checks = text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "");
  const bad = checks.find((name) => !CHECK_NAME.test(name));
  if (bad !== undefined || checks.length === 0) {
    throw new UsageError(
      `${command}: --checks takes check names separated by commas (A-Z a-z 0-9 . _ -), not "${text}"`,
    );
  }
  return { checks };
}
