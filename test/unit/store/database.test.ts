import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCountersFile } from "../../../src/store/counters-file.js";
import {
  COUNTERS_FILE,
  DATABASE_FILE,
  type OpenedDatabase,
  openDatabase,
} from "../../../src/store/database.js";
import { SCHEMA_VERSION } from "../../../src/store/migrations.js";
import { createOutbox } from "../../../src/store/outbox.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const NOW = 1_767_225_600_000;
const WAL_LIMIT = 256 * 1024;

function open(dir: string): OpenedDatabase {
  const opened = openDatabase({ dataDir: dir, log: silentLogger, now: () => NOW, walLimitBytes: WAL_LIMIT });
  onTestFinished(() => {
    if (opened.db.open) opened.db.close();
  });
  return opened;
}

function outboxOf(dir: string, opened: OpenedDatabase) {
  return createOutbox({
    db: opened.db,
    counters: createCountersFile(join(dir, COUNTERS_FILE)),
    maxBytes: 1024 * 1024,
    maxRecordBytes: 64 * 1024,
  });
}

/** A closed database with enough rows to span many pages. */
function populatedDatabase(dir: string): string {
  const opened = open(dir);
  const outbox = outboxOf(dir, opened);
  for (let i = 0; i < 20; i++) {
    outbox.append(
      Array.from({ length: 50 }, (_, j) => ({
        stream: "logs" as const,
        ts: NOW + i * 50 + j,
        body: { source: "pinpad", level: "info", line: `line ${i}/${j} ${"x".repeat(100)}` },
      })),
    );
  }
  opened.db.close();
  return opened.file;
}

function overwrite(file: string, offset: number, length: number): Buffer {
  const garbage = Buffer.alloc(length, 0xa5);
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, garbage, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return readFileSync(file);
}

describe("openDatabase", () => {
  it("sets WAL, synchronous=FULL and the checkpoint limits when it opens a database", () => {
    const dir = makeTmpDir("database");
    const opened = open(dir);
    expect(opened.file).toBe(join(dir, DATABASE_FILE));
    expect(opened.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(opened.db.pragma("synchronous", { simple: true })).toBe(2);
    expect(opened.db.pragma("busy_timeout", { simple: true })).toBe(5000);
    expect(opened.db.pragma("wal_autocheckpoint", { simple: true })).toBe(WAL_LIMIT / 4096);
    expect(opened.db.pragma("journal_size_limit", { simple: true })).toBe(WAL_LIMIT);
    expect(opened.db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
  });

  it("reports created and no quarantine when the database is new, and neither when it is reopened", () => {
    const dir = makeTmpDir("database");
    const first = open(dir);
    expect(first.created).toBe(true);
    expect(first.quarantine).toBeUndefined();
    outboxOf(dir, first).append([{ stream: "events", ts: NOW, body: { type: "t", severity: "info" } }]);
    first.db.close();

    const second = open(dir);
    expect(second.created).toBe(false);
    expect(second.quarantine).toBeUndefined();
    expect(outboxOf(dir, second).stats().records).toBe(1);
  });

  it("quarantines the file and starts fresh when the header is garbage", () => {
    const dir = makeTmpDir("database");
    const file = populatedDatabase(dir);
    const corrupt = overwrite(file, 0, 100);

    const opened = open(dir);
    const movedTo = `${file}.corrupt-${NOW}`;
    expect(opened.quarantine?.movedTo).toBe(movedTo);
    expect(opened.quarantine?.reason).not.toBe("");
    expect(readFileSync(movedTo).equals(corrupt)).toBe(true);
    expect(opened.created).toBe(true);

    const outbox = outboxOf(dir, opened);
    expect(outbox.stats().records).toBe(0);
    outbox.append([{ stream: "logs", ts: NOW, body: { line: "fresh" } }]);
    expect(outbox.readAfter(0, 10, 1e9).map((row) => row.body)).toEqual(['{"line":"fresh"}']);
    expect(opened.db.pragma("quick_check", { simple: true })).toBe("ok");
  });

  it("quarantines the file and starts fresh when pages after the first are garbage", () => {
    const dir = makeTmpDir("database");
    const file = populatedDatabase(dir);
    const size = statSync(file).size;
    expect(size).toBeGreaterThan(20 * 4096);
    const corrupt = overwrite(file, 4096, size - 4096);

    const opened = open(dir);
    const movedTo = `${file}.corrupt-${NOW}`;
    expect(opened.quarantine?.movedTo).toBe(movedTo);
    expect(existsSync(movedTo)).toBe(true);
    expect(readFileSync(movedTo).equals(corrupt)).toBe(true);
    expect(opened.created).toBe(true);
    expect(opened.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(opened.db.pragma("synchronous", { simple: true })).toBe(2);

    const outbox = outboxOf(dir, opened);
    expect(outbox.stats().records).toBe(0);
    outbox.append([{ stream: "logs", ts: NOW, body: { line: "fresh" } }]);
    expect(outbox.stats().records).toBe(1);
  });

  it("does not quarantine anything when the file cannot be opened for another reason than damage", () => {
    const dir = makeTmpDir("database");
    // A directory where the database should be: SQLITE_CANTOPEN, not corruption.
    mkdirSync(join(dir, DATABASE_FILE));
    expect(() => open(dir)).toThrow();
    expect(readdirSync(dir).filter((name) => name.includes("corrupt"))).toEqual([]);
    expect(statSync(join(dir, DATABASE_FILE)).isDirectory()).toBe(true);
  });

  it("refuses a database and leaves it in place when its schema version is newer than the code knows", () => {
    const dir = makeTmpDir("database");
    const first = open(dir);
    outboxOf(dir, first).append([{ stream: "logs", ts: NOW, body: { line: "keep me" } }]);
    first.db.pragma(`user_version = ${SCHEMA_VERSION + 98}`);
    first.db
      .prepare("UPDATE meta SET value = ? WHERE key = 'schemaReadableBy'")
      .run(String(SCHEMA_VERSION + 50));
    first.db.close();

    expect(() => open(dir)).toThrow(
      `database schema version ${SCHEMA_VERSION + 98} is newer than this agent understands (${SCHEMA_VERSION})`,
    );
    expect(readdirSync(dir).filter((name) => name.includes(".corrupt-"))).toEqual([]);
    expect(existsSync(join(dir, DATABASE_FILE))).toBe(true);
  });

  it("opens a newer database whose added steps it may ignore, keeping its outbox (an agent rolled back)", () => {
    const dir = makeTmpDir("database");
    const first = open(dir);
    outboxOf(dir, first).append([{ stream: "logs", ts: NOW, body: { line: "keep me" } }]);
    first.db.pragma(`user_version = ${SCHEMA_VERSION + 2}`);
    first.db.close();

    const again = open(dir);
    expect(again.db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION + 2);
    expect(outboxOf(dir, again).stats().streams.logs.records).toBe(1);
  });

  it("keeps the archive triggers quiet while an agent that does not prune the archive runs", () => {
    const dir = makeTmpDir("database");
    const opened = open(dir);
    const outbox = outboxOf(dir, opened);
    const archived = () => (opened.db.prepare("SELECT COUNT(*) AS n FROM archive").get() as { n: number }).n;
    outbox.append([{ stream: "logs", ts: NOW, body: { line: "copied" } }]);
    expect(archived()).toBe(1);
    opened.db.prepare("UPDATE meta SET value = '2' WHERE key = 'runningSchema'").run();
    outbox.append([{ stream: "logs", ts: NOW, body: { line: "not copied" } }]);
    expect(archived()).toBe(1);
  });

  it.skipIf(!existsSync("/proc/self/fd"))(
    "closes the file again when it refuses a database whose schema version is newer",
    () => {
      const dir = makeTmpDir("database");
      const first = open(dir);
      first.db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      first.db
        .prepare("UPDATE meta SET value = ? WHERE key = 'schemaReadableBy'")
        .run(String(SCHEMA_VERSION + 1));
      first.db.close();

      expect(() => open(dir)).toThrow(/newer than this agent understands/);
      expect(openFilesUnder(dir)).toEqual([]);
    },
  );
});

/** Paths under `dir` this process still holds open (Linux). */
function openFilesUnder(dir: string): string[] {
  const paths: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${dir}/`)) paths.push(target);
    } catch {
      // The fd used to list the directory is gone by the time it is read.
    }
  }
  return paths.sort();
}
