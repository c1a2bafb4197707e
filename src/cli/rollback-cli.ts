import { join } from "node:path";
import { systemClock } from "../shared/clock.js";
import { AgentError, errorMessage, isAgentError } from "../shared/errors.js";
import { silentLogger } from "../shared/logger.js";
import { err } from "../shared/result.js";
import { createCountersFile } from "../store/counters-file.js";
import { COUNTERS_FILE, openDatabase, walLimitFor } from "../store/database.js";
import { createEventRecorder } from "../store/event-recorder.js";
import { acquireDataDirLock } from "../store/lock.js";
import { createMetaStore } from "../store/meta.js";
import { createOutbox } from "../store/outbox.js";
import { createUpdateJournal } from "../store/update-journal.js";
import { maxRecordBytes } from "../transport/batch.js";
import { createUpdateEngine } from "../updates/engine.js";
import { COMPONENT_NAME_PATTERN } from "../updates/manifest.js";
import { parse, UsageError } from "./args.js";
import { loadConfigOrThrow } from "./load-config-or-throw.js";

export const ROLLBACK_HELP = `Usage: pos-agent rollback [--config FILE] COMPONENT

Goes back to the release of COMPONENT before the live one, on this terminal (a technician on site):
switches dataDir/components/COMPONENT/current to it in one rename, runs the component's restart
command, removes the abandoned release, and records the rollback in the agent's database; the agent
reports it (ROOT/update/state and an update.rolled_back event) when it next runs. The daemon must be
stopped first (it holds the data directory); with the daemon running, send update.rollback instead.
Exit codes: 0 rolled back, 1 nothing to roll back to or the rollback failed, 2 usage or config error.`;

/** `pos-agent rollback COMPONENT`: the engine's own rollback, run without the daemon. */
export async function rollbackCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { config: { type: "string", short: "c" } },
    "pos-agent rollback",
  );
  if (values.help) {
    console.log(ROLLBACK_HELP);
    return 0;
  }
  const [component, ...extra] = positionals;
  if (component === undefined) throw new UsageError("pos-agent rollback: name the COMPONENT to roll back");
  if (extra.length > 0) throw new UsageError(`pos-agent rollback: unexpected argument "${extra[0]}"`);
  if (!COMPONENT_NAME_PATTERN.test(component) || component === "." || component === "..") {
    throw new UsageError(`pos-agent rollback: "${component}" is not a component name`);
  }
  const { config } = loadConfigOrThrow(values.config);

  let lock: { release(): void };
  try {
    lock = acquireDataDirLock(config.dataDir);
  } catch (error) {
    console.error(
      `pos-agent rollback: ${errorMessage(error)}; stop it first (systemctl stop pos-agent), or send update.rollback to it`,
    );
    return 1;
  }
  const clock = systemClock;
  const opened = openDatabase({
    dataDir: config.dataDir,
    log: silentLogger,
    now: clock.now,
    walLimitBytes: walLimitFor(config.outbox.maxBytes),
  });
  try {
    const meta = createMetaStore(opened.db);
    const outbox = createOutbox({
      db: opened.db,
      counters: createCountersFile(join(config.dataDir, COUNTERS_FILE)),
      maxBytes: config.outbox.maxBytes,
      maxRecordBytes: maxRecordBytes(config.outbox.maxMessageBytes),
    });
    const offline = (what: string) => async () => {
      throw new AgentError("INTERNAL", `pos-agent rollback does not ${what}`);
    };
    const engine = createUpdateEngine({
      dataDir: config.dataDir,
      components: config.components,
      journal: createUpdateJournal(opened.db),
      decide: () => err(new AgentError("INTERNAL", "pos-agent rollback installs nothing")),
      preconditions: async () => ({ ok: true }),
      download: offline("download"),
      stage: offline("stage releases"),
      publishState: (payload) => meta.setJson("updateState", payload),
      recordEvent: createEventRecorder({ outbox, now: clock.now, log: silentLogger }),
      noteIssuedAt: () => {},
      clock,
      log: silentLogger,
    });
    const outcome = await engine.rollback(component, "rolled back on the terminal with pos-agent rollback");
    if (outcome.state !== "rolled_back") {
      console.error(
        `pos-agent rollback: ${component}: ${outcome.state}${outcome.message ? `: ${outcome.message}` : ""}`,
      );
      return 1;
    }
    console.log(`rolled back ${component} ${outcome.toVersion} -> ${outcome.fromVersion ?? "(none)"}`);
    return 0;
  } catch (error) {
    if (isAgentError(error)) {
      console.error(`pos-agent rollback: ${error.code}: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    opened.db.close();
    lock.release();
  }
}
