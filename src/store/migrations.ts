import type { Database } from "better-sqlite3";

/**
 * Schema versions, applied in order by `PRAGMA user_version`. Never edit a shipped step: add one.
 * seq comes from AUTOINCREMENT, whose high-water mark lives in sqlite_sequence, so a deleted row's
 * seq is never handed out again.
 */
const STEPS: ReadonlyArray<(db: Database) => void> = [
  (db) => {
    db.exec(`
      CREATE TABLE outbox (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT    NOT NULL CHECK (stream IN ('telemetry', 'events', 'logs')),
        ts     INTEGER NOT NULL,
        body   TEXT    NOT NULL,
        bytes  INTEGER NOT NULL
      );
      CREATE INDEX outbox_stream_seq ON outbox (stream, seq);

      -- Running totals kept by triggers, so quota checks never scan the table.
      CREATE TABLE outbox_stats (
        stream  TEXT PRIMARY KEY,
        records INTEGER NOT NULL DEFAULT 0,
        bytes   INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO outbox_stats (stream) VALUES ('telemetry'), ('events'), ('logs');

      CREATE TRIGGER outbox_stats_insert AFTER INSERT ON outbox BEGIN
        UPDATE outbox_stats SET records = records + 1, bytes = bytes + NEW.bytes WHERE stream = NEW.stream;
      END;
      CREATE TRIGGER outbox_stats_delete AFTER DELETE ON outbox BEGIN
        UPDATE outbox_stats SET records = records - 1, bytes = bytes - OLD.bytes WHERE stream = OLD.stream;
      END;

      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
    `);
  },
];

export const SCHEMA_VERSION = STEPS.length;

export function migrate(db: Database): { from: number; to: number } {
  const from = db.pragma("user_version", { simple: true }) as number;
  if (from > STEPS.length) {
    throw new Error(
      `database schema version ${from} is newer than this agent understands (${STEPS.length}); refusing to touch it`,
    );
  }
  for (let version = from; version < STEPS.length; version++) {
    const step = STEPS[version];
    if (step === undefined) break;
    db.transaction(() => {
      step(db);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
  return { from, to: STEPS.length };
}
