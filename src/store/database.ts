import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Database } from "better-sqlite3";
import Sqlite from "better-sqlite3";
import { errorMessage } from "../shared/errors.js";
import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import { migrate } from "./migrations.js";

export const DATABASE_FILE = "agent.db";
export const COUNTERS_FILE = "agent.counters.json";

/**
 * The WAL is checkpointed at 5 % of the outbox quota (4 MiB at most), so the quota holds for the
 * files on disk and not only for the database.
 */
export function walLimitFor(maxBytes: number): number {
  return Math.min(4 * 1024 * 1024, Math.floor(maxBytes / 20));
}

export interface Quarantine {
  /** Where the unreadable file was moved. */
  movedTo: string;
  reason: string;
}

/** The event a quarantine raises at start: a high-severity fact the fleet must see. */
export function quarantineEvent(quarantine: Quarantine): AgentEvent {
  return {
    type: "agent.store.quarantined",
    severity: "high",
    source: "agent",
    message: `database failed its integrity check and was moved aside to ${quarantine.movedTo}; started with a fresh one`,
    details: { movedTo: quarantine.movedTo, reason: quarantine.reason },
  };
}

export interface OpenedDatabase {
  db: Database;
  file: string;
  /** True when the schema was created by this open (new device, or after a quarantine). */
  created: boolean;
  quarantine: Quarantine | undefined;
}

export interface OpenDatabaseOptions {
  dataDir: string;
  log: Logger;
  now: () => number;
  /** WAL size that triggers a checkpoint; kept small next to the outbox quota so the quota holds on disk. */
  walLimitBytes: number;
}

/**
 * Opens the agent's database: WAL with synchronous=FULL (better-sqlite3's WAL default, NORMAL, can lose
 * the last commits on power loss, and an acknowledged intake record must survive that), one writer,
 * quick_check at start. A file that fails the check is renamed aside and a fresh one created, so a
 * corrupt database never becomes a crash loop.
 */
export function openDatabase(options: OpenDatabaseOptions): OpenedDatabase {
  mkdirSync(options.dataDir, { recursive: true });
  const file = join(options.dataDir, DATABASE_FILE);
  let quarantine: Quarantine | undefined;
  let db: Database;
  try {
    db = openChecked(file, options.walLimitBytes);
  } catch (error) {
    // Only a damaged file is moved aside. A full disk, a permission or I/O error says nothing about
    // the data in it: that is a failed start (exit 1, the service manager retries), not a reason to
    // abandon a backlog of acknowledged records.
    if (!isCorruption(error)) throw error;
    const reason = errorMessage(error);
    const movedTo = `${file}.corrupt-${options.now()}`;
    options.log.error({ err: error, file, movedTo }, "database failed its integrity check; quarantining it");
    for (const suffix of ["", "-wal", "-shm"]) {
      if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
    }
    quarantine = { movedTo, reason };
    db = openChecked(file, options.walLimitBytes);
  }
  let from: number;
  try {
    ({ from } = migrate(db));
  } catch (error) {
    db.close();
    throw error;
  }
  return { db, file, created: from === 0, quarantine };
}

function openChecked(file: string, walLimitBytes: number): Database {
  const db = new Sqlite(file);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("busy_timeout = 5000");
    const pages = Math.max(16, Math.floor(walLimitBytes / 4096));
    db.pragma(`wal_autocheckpoint = ${pages}`);
    db.pragma(`journal_size_limit = ${walLimitBytes}`);
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new CorruptDatabaseError(`quick_check: ${String(check)}`);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

class CorruptDatabaseError extends Error {
  override readonly name = "CorruptDatabaseError";
}

function isCorruption(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof CorruptDatabaseError || code === "SQLITE_CORRUPT" || code === "SQLITE_NOTADB";
}

/** A read-only view for `pos-agent status` while the daemon holds the writer. */
export function openDatabaseReadOnly(dataDir: string): Database {
  const file = join(dataDir, DATABASE_FILE);
  const db = new Sqlite(file, { readonly: true, fileMustExist: true });
  db.pragma("busy_timeout = 2000");
  return db;
}

/** `PRAGMA quick_check`: one row "ok", or up to 100 rows naming problems. */
export function quickCheck(db: Database): string {
  const rows = db.pragma("quick_check") as Record<string, unknown>[];
  const messages = rows.map((row) => String(Object.values(row)[0]));
  if (messages.length === 1 && messages[0] === "ok") return "ok";
  const shown = messages.slice(0, 3).join("; ");
  return messages.length > 3 ? `${shown} (and ${messages.length - 3} more)` : shown;
}
