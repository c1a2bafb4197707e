import type { Database } from "better-sqlite3";

/**
 * Schema versions, applied in order by `PRAGMA user_version`. Never edit a shipped step: add one.
 * seq comes from outbox_seq, which only grows, so a deleted row's seq is never handed out again.
 */
const STEPS: ReadonlyArray<(db: Database) => void> = [
  (db) => {
    // One table per stream: rows are appended at one end and deleted (published or dropped) at the
    // other, so pages fill up and empty whole. With the streams interleaved in one table, dropping
    // telemetry left pages half full of logs that SQLite never refills, and the file outgrew the quota.
    for (const stream of ["telemetry", "events", "logs"]) {
      db.exec(`
        CREATE TABLE outbox_${stream} (
          seq   INTEGER PRIMARY KEY,
          ts    INTEGER NOT NULL,
          body  TEXT    NOT NULL,
          bytes INTEGER NOT NULL
        );
        CREATE TRIGGER outbox_${stream}_insert AFTER INSERT ON outbox_${stream} BEGIN
          UPDATE outbox_stats SET records = records + 1, bytes = bytes + NEW.bytes WHERE stream = '${stream}';
        END;
        CREATE TRIGGER outbox_${stream}_delete AFTER DELETE ON outbox_${stream} BEGIN
          UPDATE outbox_stats SET records = records - 1, bytes = bytes - OLD.bytes WHERE stream = '${stream}';
        END;
      `);
    }
    db.exec(`
      -- Running totals kept by the triggers, so quota checks never scan a table.
      CREATE TABLE outbox_stats (
        stream  TEXT PRIMARY KEY,
        records INTEGER NOT NULL DEFAULT 0,
        bytes   INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO outbox_stats (stream) VALUES ('telemetry'), ('events'), ('logs');

      -- The last seq handed out, over all streams; only ever raised.
      CREATE TABLE outbox_seq (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        last INTEGER NOT NULL
      );
      INSERT INTO outbox_seq (id, last) VALUES (1, 0);

      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
    `);
  },
  (db) => {
    // One row per command id ever received (until pruned): a repeated id is answered from here and
    // never executed again, also after a restart. 'running' rows left by a crash are answered as failed
    // at the next start.
    db.exec(`
      CREATE TABLE command_journal (
        id          TEXT    PRIMARY KEY,
        cmd         TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        state       TEXT    NOT NULL CHECK (state IN ('running', 'done')),
        response    TEXT,
        finished_at INTEGER
      );
      CREATE INDEX command_journal_received_at ON command_journal (received_at);
    `);
  },
  (db) => {
    // The outbox forgets a record once the broker has it; the archive keeps recent logs and events
    // (already scrubbed: they are copies of outbox rows) for logs.query and logs.upload. Filled by
    // triggers, so a record and its copy commit together; bounded by the outbox (log-archive.ts).
    // The triggers fire only while an agent that prunes the archive runs (see READABLE_BY).
    // A plain copy: fields are read with json_extract when queried (rarely), not on every insert
    // (json_extract in the trigger cost serial capture a third of its rate).
    db.exec(`
      CREATE TABLE archive (
        seq    INTEGER PRIMARY KEY,
        stream TEXT    NOT NULL CHECK (stream IN ('events', 'logs')),
        ts     INTEGER NOT NULL,
        body   TEXT    NOT NULL,
        bytes  INTEGER NOT NULL
      );
      CREATE TABLE archive_stats (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        records INTEGER NOT NULL,
        bytes   INTEGER NOT NULL
      );
      INSERT INTO archive_stats (id, records, bytes) VALUES (1, 0, 0);
      CREATE TRIGGER archive_insert AFTER INSERT ON archive BEGIN
        UPDATE archive_stats SET records = records + 1, bytes = bytes + NEW.bytes WHERE id = 1;
      END;
      CREATE TRIGGER archive_delete AFTER DELETE ON archive BEGIN
        UPDATE archive_stats SET records = records - 1, bytes = bytes - OLD.bytes WHERE id = 1;
      END;
      CREATE TRIGGER outbox_logs_archive AFTER INSERT ON outbox_logs
      WHEN (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'runningSchema') >= 3 BEGIN
        INSERT INTO archive (seq, stream, ts, body, bytes) VALUES (NEW.seq, 'logs', NEW.ts, NEW.body, NEW.bytes);
      END;
      CREATE TRIGGER outbox_events_archive AFTER INSERT ON outbox_events
      WHEN (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'runningSchema') >= 3 BEGIN
        INSERT INTO archive (seq, stream, ts, body, bytes) VALUES (NEW.seq, 'events', NEW.ts, NEW.body, NEW.bytes);
      END;
      INSERT INTO archive (seq, stream, ts, body, bytes) SELECT seq, 'logs', ts, body, bytes FROM outbox_logs;
      INSERT INTO archive (seq, stream, ts, body, bytes) SELECT seq, 'events', ts, body, bytes FROM outbox_events;
    `);
  },
  (db) => {
    // Signed updates (src/updates). Which release is live is what `current` links to on disk; this
    // keeps what the disk cannot say: the job and its state, the security floor, and each installed
    // release's file list (delta bases are found by hash in it).
    db.exec(`
      CREATE TABLE update_jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        component    TEXT    NOT NULL,
        from_version TEXT,
        to_version   TEXT    NOT NULL,
        state        TEXT    NOT NULL,
        manifest     TEXT    NOT NULL,
        command_id   TEXT,
        restarts     INTEGER NOT NULL DEFAULT 0,
        code         TEXT,
        message      TEXT,
        progress     TEXT,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
      );
      CREATE INDEX update_jobs_component ON update_jobs (component, id);
      CREATE TABLE component_releases (
        component    TEXT    NOT NULL,
        version      TEXT    NOT NULL,
        files        TEXT    NOT NULL,
        installed_at INTEGER NOT NULL,
        PRIMARY KEY (component, version)
      );
      CREATE TABLE component_floors (
        component      TEXT    PRIMARY KEY,
        security_floor INTEGER NOT NULL
      );
    `);
  },
];

/**
 * The lowest schema version an agent must know to use this database safely. Steps from 3 on only add
 * tables, and triggers guarded by `runningSchema`, so an agent rolled back to an older release keeps
 * its outbox: it opens the newer file and the newer triggers stay quiet. Raise this with a step that
 * changes what older agents rely on.
 */
const READABLE_BY = 3;

export const SCHEMA_VERSION = STEPS.length;

export function migrate(db: Database): { from: number; to: number } {
  const from = db.pragma("user_version", { simple: true }) as number;
  if (from > STEPS.length) {
    const readableBy = readMeta(db, "schemaReadableBy");
    if (readableBy === undefined || readableBy > STEPS.length) {
      throw new Error(
        `database schema version ${from} is newer than this agent understands (${STEPS.length}); refusing to touch it`,
      );
    }
    setMeta(db, "runningSchema", STEPS.length);
    return { from, to: from };
  }
  for (let version = from; version < STEPS.length; version++) {
    const step = STEPS[version];
    if (step === undefined) break;
    db.transaction(() => {
      step(db);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
  db.transaction(() => {
    setMeta(db, "schemaReadableBy", READABLE_BY);
    setMeta(db, "runningSchema", STEPS.length);
  })();
  return { from, to: STEPS.length };
}

function readMeta(db: Database, key: string): number | undefined {
  const row = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?").get(key);
  const value = row === undefined ? Number.NaN : Number(row.value);
  return Number.isInteger(value) ? value : undefined;
}

function setMeta(db: Database, key: string, value: number): void {
  db.prepare<[string, string]>(
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  ).run(key, String(value));
}
