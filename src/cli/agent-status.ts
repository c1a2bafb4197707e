import type { Config } from "../config/schema.js";
import { openDatabaseReadOnly } from "../store/database.js";
import { isAgentProcess } from "../store/lock.js";
import { createMetaStore } from "../store/meta.js";
import { createStatsReader, type OutboxStats } from "../store/outbox.js";
import { createUpdateJournal } from "../store/update-journal.js";
import { readInstalledVersion } from "../updates/installed-state.js";

export interface StatusReport {
  deviceId: string;
  tenant: string;
  dataDir: string;
  daemon: { running: boolean; pid: number | null; startedAt?: number; agentVersion?: string };
  connection: {
    connected: boolean;
    url?: string;
    sessionId?: number;
    since?: number;
    lastError?: string;
  } | null;
  outbox: OutboxStats & { maxBytes: number };
  /** Each configured or updated component: the live version and the last update job. */
  components: Array<{
    name: string;
    version: string | null;
    securityFloor: number;
    update: {
      toVersion: string;
      fromVersion?: string;
      state: string;
      code?: string;
      message?: string;
      at: number;
    } | null;
  }>;
}

/** Reads the daemon's database read-only (WAL lets it do so while the daemon writes). */
export function readStatus(config: Config): StatusReport {
  let db: ReturnType<typeof openDatabaseReadOnly>;
  try {
    db = openDatabaseReadOnly(config.dataDir);
  } catch (error) {
    throw new Error(`cannot open the agent database in ${config.dataDir}: ${(error as Error).message}`);
  }
  try {
    const meta = createMetaStore(db);
    const daemon = meta.getJson<{ pid: number | null; startedAt?: number; agentVersion?: string }>("daemon");
    const running = daemon?.pid != null && isAgentProcess(daemon.pid);
    const connection = meta.getJson<StatusReport["connection"]>("connection") ?? null;
    return {
      deviceId: config.deviceId,
      tenant: config.tenant,
      dataDir: config.dataDir,
      daemon: { ...(daemon ?? {}), running, pid: running ? (daemon?.pid ?? null) : null },
      // What the daemon last wrote is only true while it runs.
      connection: connection && !running ? { ...connection, connected: false } : connection,
      outbox: { ...createStatsReader(db)(), maxBytes: config.outbox.maxBytes },
      components: readComponents(db, config),
    };
  } finally {
    db.close();
  }
}

function readComponents(
  db: ReturnType<typeof openDatabaseReadOnly>,
  config: Config,
): StatusReport["components"] {
  const hasJobs = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'update_jobs'")
    .get();
  const journal = hasJobs === undefined ? undefined : createUpdateJournal(db);
  const jobs = journal?.latestAll() ?? [];
  const names = [...new Set([...Object.keys(config.components), ...jobs.map((job) => job.component)])].sort();
  return names.map((name) => {
    const job = jobs.find((candidate) => candidate.component === name);
    return {
      name,
      version: readInstalledVersion(config.dataDir, name) ?? null,
      securityFloor: journal?.securityFloor(name) ?? 0,
      update:
        job === undefined
          ? null
          : {
              toVersion: job.toVersion,
              ...(job.fromVersion === undefined ? {} : { fromVersion: job.fromVersion }),
              state: job.state,
              ...(job.code === undefined ? {} : { code: job.code }),
              ...(job.message === undefined ? {} : { message: job.message }),
              at: job.updatedAt,
            },
    };
  });
}

export function formatStatus(report: StatusReport, now: number): string {
  const lines: string[] = [];
  const row = (label: string, value: string) => lines.push(`${label.padEnd(12)}${value}`);
  row("device", `${report.deviceId} (tenant ${report.tenant}), data in ${report.dataDir}`);
  row(
    "daemon",
    report.daemon.running
      ? `running, pid ${report.daemon.pid}${report.daemon.agentVersion ? `, version ${report.daemon.agentVersion}` : ""}`
      : "not running",
  );
  const c = report.connection;
  if (c === null) row("connection", "never connected");
  else if (c.connected)
    row("connection", `connected to ${c.url}, session ${c.sessionId}, since ${ago(now, c.since)}`);
  else
    row(
      "connection",
      `disconnected${c.url ? ` from ${c.url}` : ""}${c.lastError ? ` (${c.lastError})` : ""}`,
    );
  const o = report.outbox;
  row(
    "outbox",
    `${o.records} records, ${mib(o.bytes)} of ${mib(o.maxBytes)}, oldest ${o.oldestTs === undefined ? "-" : ago(now, o.oldestTs)}, last seq ${o.lastSeq}`,
  );
  row(
    "dropped",
    `telemetry ${o.streams.telemetry.dropped}, logs ${o.streams.logs.dropped}, events ${o.streams.events.dropped}`,
  );
  for (const stream of ["telemetry", "events", "logs"] as const) {
    row(`  ${stream}`, `${o.streams[stream].records} records, ${mib(o.streams[stream].bytes)}`);
  }
  for (const component of report.components) {
    const update = component.update;
    row(
      "component",
      `${component.name} ${component.version ?? "(not installed)"}, security floor ${component.securityFloor}${
        update === null
          ? ""
          : `; last update ${update.fromVersion ?? "(none)"} → ${update.toVersion}: ${update.state}${update.code ? ` ${update.code}` : ""}${update.message ? ` (${update.message})` : ""}, ${ago(now, update.at)}`
      }`,
    );
  }
  return lines.join("\n");
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

function ago(now: number, ts: number | undefined): string {
  if (ts === undefined) return "-";
  const sec = Math.max(0, Math.round((now - ts) / 1000));
  if (sec < 120) return `${sec} s ago`;
  if (sec < 7200) return `${Math.round(sec / 60)} min ago`;
  return `${Math.round(sec / 3600)} h ago`;
}
