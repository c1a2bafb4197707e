import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Config } from "../config/schema.js";
import {
  ClockTrust,
  DEFAULT_TOLERANCE_MS,
  LAST_TRUSTED_KEY,
  TRUST_KEY,
  TrustedTime,
} from "../metrics/clock-sanity.js";
import { createLinuxReaders } from "../metrics/host/linux-readers.js";
import { errorMessage } from "../shared/errors.js";
import { DATABASE_FILE, openDatabaseReadOnly, quickCheck } from "../store/database.js";
import { isAgentProcess } from "../store/lock.js";
import { createMetaStore, type MetaStore } from "../store/meta.js";
import { createStatsReader } from "../store/outbox.js";
import type { CertificateFile } from "./certificates-check.js";
import type { DiagnosticCheck } from "./check.js";
import {
  certificatesCheck,
  clockCheck,
  componentsCheck,
  databaseCheck,
  diskCheck,
  memoryCheck,
  outboxCheck,
} from "./checks.js";
import { formatAge } from "./format.js";

// The suite `pos-agent diag` runs on the terminal, beside a running daemon or without one. It only
// reads: the database through a read-only connection (WAL lets it read while the daemon writes), host
// files, certificate files. What only the daemon can see (a live broker round trip, the serial ports it
// holds) is reported from what the daemon last recorded, or said to be checked remotely.

/** What the daemon notes in meta "connection" on every link change (agent.ts). JSON from SQLite: parsed. */
export const ConnectionState = z.object({
  connected: z.boolean(),
  url: z.string().optional(),
  sessionId: z.number().optional(),
  since: z.number().optional(),
  lastError: z.string().optional(),
});
export type ConnectionState = z.infer<typeof ConnectionState>;

const DaemonState = z.object({ pid: z.number().int().positive().nullable().optional() });

/**
 * "broker" from the daemon's last recorded connection, where no live round trip can be made: pass while
 * the running daemon says connected, fail otherwise (daemon not running, never connected, disconnected).
 */
export function brokerConnectionCheck(deps: {
  daemonRunning(): boolean;
  connection(): ConnectionState | undefined;
  now(): number;
}): DiagnosticCheck {
  return {
    name: "broker",
    async run() {
      const connection = deps.connection();
      const data = { daemonRunning: deps.daemonRunning(), connection: connection ?? null };
      const url = connection?.url === undefined ? "" : ` ${connection.url}`;
      const since =
        connection?.since === undefined
          ? ""
          : ` for ${formatAge(Math.max(0, deps.now() - connection.since))}`;
      const lastError = connection?.lastError === undefined ? "" : ` (${connection.lastError})`;
      if (!data.daemonRunning) {
        const last =
          connection === undefined
            ? ""
            : `; last ${connection.connected ? "connected to" : "disconnected from"}${url}`;
        return { status: "fail", detail: `daemon not running, so no broker connection${last}`, data };
      }
      if (connection === undefined)
        return { status: "fail", detail: "the daemon has not connected to a broker yet", data };
      if (connection.connected) {
        const session = connection.sessionId === undefined ? "" : `, session ${connection.sessionId}`;
        return { status: "pass", detail: `the daemon is connected to${url}${since}${session}`, data };
      }
      return { status: "fail", detail: `the daemon is disconnected from${url}${since}${lastError}`, data };
    },
  };
}

export interface LocalDiagnostics {
  checks: DiagnosticCheck[];
  /** Closes the read-only database connection. */
  close(): void;
}

type ReadOnlyDatabase = ReturnType<typeof openDatabaseReadOnly>;

export function openLocalDiagnostics(config: Config, deps: { now(): number }): LocalDiagnostics {
  const file = join(config.dataDir, DATABASE_FILE);
  let db: ReadOnlyDatabase | undefined;
  let unavailable: string | undefined;
  if (!existsSync(file)) {
    unavailable = `no agent database at ${file}: the agent has not run with this data directory yet`;
  } else {
    try {
      db = openDatabaseReadOnly(config.dataDir);
    } catch (error) {
      unavailable = `cannot open the agent database ${file}: ${errorMessage(error)}`;
    }
  }

  let meta: MetaStore | undefined;
  const readMeta = (): MetaStore | undefined => {
    if (db === undefined) return undefined;
    meta ??= createMetaStore(db);
    return meta;
  };
  const daemonRunning = (): boolean => {
    const daemon = DaemonState.safeParse(readMeta()?.getJson<unknown>("daemon"));
    const pid = daemon.success ? daemon.data.pid : undefined;
    return pid != null && isAgentProcess(pid);
  };

  const readers = createLinuxReaders({ dataDir: config.dataDir });
  const checks: DiagnosticCheck[] = [
    databaseCheck({
      quickCheck: () => {
        if (db === undefined) throw new Error(unavailable);
        try {
          return quickCheck(db);
        } catch (error) {
          throw new Error(`${file}: ${errorMessage(error)}`);
        }
      },
    }),
    db === undefined
      ? unknownCheck("outbox", "unknown: the agent database cannot be read (see the database check)")
      : outboxCheck({ stats: lazyStats(db), maxBytes: config.outbox.maxBytes, now: deps.now }),
    diskCheck({ filesystems: () => readers.filesystems() }),
    memoryCheck({ memory: () => readers.memory() }),
    clockCheck({ trusted: () => storedClockTrust(readMeta(), deps.now()) }),
    brokerConnectionCheck({
      daemonRunning,
      connection: () => {
        const parsed = ConnectionState.safeParse(readMeta()?.getJson<unknown>("connection"));
        return parsed.success ? parsed.data : undefined;
      },
      now: deps.now,
    }),
    peripheralsNote(config.peripherals.map((p) => p.name)),
    certificatesCheck({ files: certificateFiles(config), now: deps.now }),
    componentsCheck({
      components: Object.fromEntries(Object.keys(config.components).map((name) => [name, {}])),
    }),
  ];
  return {
    checks,
    close: () => db?.close(),
  };
}

/** The statements are prepared on first use, so a file without the agent's schema fails only this check. */
function lazyStats(db: ReadOnlyDatabase) {
  let reader: ReturnType<typeof createStatsReader> | undefined;
  return () => {
    reader ??= createStatsReader(db);
    return reader();
  };
}

/**
 * The trust the daemon last recorded. The daemon writes TRUST_KEY only on a change of trust and reads its
 * absence as trusted; a persisted last trusted time shows its checks ran. A clock now more than the
 * tolerance behind that time is untrusted by the daemon's own rule, whatever was recorded.
 */
export function storedClockTrust(
  meta: Pick<MetaStore, "getJson"> | undefined,
  now: number,
): { trusted: boolean; reason?: string } | undefined {
  if (meta === undefined) return undefined;
  const trust = ClockTrust.safeParse(meta.getJson<unknown>(TRUST_KEY));
  const last = TrustedTime.safeParse(meta.getJson<unknown>(LAST_TRUSTED_KEY));
  if (trust.success && !trust.data.trusted) {
    return { trusted: false, reason: trust.data.reason ?? "recorded untrusted by the agent" };
  }
  if (!trust.success && !last.success) return undefined;
  if (last.success && now < last.data.wall - DEFAULT_TOLERANCE_MS) {
    return {
      trusted: false,
      reason: `wall clock is ${formatAge(last.data.wall - now)} behind the last trusted time ${new Date(last.data.wall).toISOString()}`,
    };
  }
  return { trusted: true };
}

/** Locally the serial ports belong to the daemon; opening them here would disturb it. */
function peripheralsNote(names: string[]): DiagnosticCheck {
  return {
    name: "peripherals",
    async run() {
      if (names.length === 0) return { status: "pass", detail: "no peripherals configured" };
      return {
        status: "pass",
        detail: `${names.length} configured (${names.join(", ")}); checked by the running agent only, which holds their serial ports (pos-ops diag)`,
        data: { configured: names, checkedLocally: false },
      };
    },
  };
}

function unknownCheck(name: string, detail: string): DiagnosticCheck {
  return { name, run: async () => ({ status: "warn", detail }) };
}

export function certificateFiles(config: Config): CertificateFile[] {
  const files: CertificateFile[] = [];
  const tls = config.mqtt.tls;
  if (tls?.cert !== undefined) files.push({ label: "device certificate", path: tls.cert });
  if (tls?.ca !== undefined) files.push({ label: "broker CA", path: tls.ca });
  for (const path of config.trust.operatorRoots) files.push({ label: "operator root", path });
  for (const path of config.trust.releaseRoots) files.push({ label: "release root", path });
  return files;
}
