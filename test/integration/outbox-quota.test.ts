import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { silentLogger } from "../../src/shared/logger.js";
import { createCountersFile } from "../../src/store/counters-file.js";
import { COUNTERS_FILE, DATABASE_FILE, openDatabase, walLimitFor } from "../../src/store/database.js";
import { createOutbox, type RecordInput, rowCost, STREAMS, type Stream } from "../../src/store/outbox.js";
import { prng } from "../helpers/prng.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const MAX_BYTES = 4 * 1024 * 1024;
/** As src/main.ts derives it from the quota. */
const WAL_LIMIT_BYTES = walLimitFor(MAX_BYTES);
const BATCH = 100;
const ALL = Number.MAX_SAFE_INTEGER;

const METRICS = [
  "cpu.loadPct",
  "cpu.tempC",
  "mem.usedPct",
  "mem.availMb",
  "disk.usedPct",
  "disk.freeMb",
  "battery.pct",
  "battery.charging",
  "net.rssiDbm",
  "net.rxKbps",
  "net.txKbps",
  "agent.outbox.records",
];
const WORDS = [
  "EMV",
  "kernel",
  "APDU",
  "9000",
  "timeout",
  "retry",
  "card",
  "inserted",
  "removed",
  "reader",
  "contactless",
  "tap",
  "PIN",
  "entry",
  "cancelled",
  "printer",
  "paper",
  "low",
  "cover",
  "open",
  "usb",
  "reset",
  "link",
  "up",
  "down",
];
const SOURCES = ["pinpad", "printer", "scanner", "pos-app", "drawer"];
const SEVERITIES = ["critical", "high", "medium", "low", "info"];

function workload(random: () => number) {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const text = (min: number, max: number) => {
    const target = min + Math.floor(random() * (max - min + 1));
    let line = "";
    while (line.length < target) line += `${pick(WORDS)} `;
    return line.slice(0, target);
  };
  let ts = 1_767_225_600_000;
  return (): RecordInput => {
    ts += 1 + Math.floor(random() * 500);
    const roll = random();
    if (roll < 0.25) {
      const metrics: Record<string, number> = {};
      for (const name of METRICS) metrics[name] = Math.round(random() * 100_000) / 100;
      return { stream: "telemetry", ts, body: { metrics } };
    }
    if (roll < 0.9) {
      const source = pick(SOURCES);
      return {
        stream: "logs",
        ts,
        body: { source, level: pick(["error", "warn", "info", "debug"]), line: text(80, 300) },
      };
    }
    return {
      stream: "events",
      ts,
      body: {
        type: `peripheral.${pick(SOURCES)}.${pick(["paper_end", "disconnected", "error", "reconnected"])}`,
        severity: pick(SEVERITIES),
        source: pick(SOURCES),
        message: text(20, 120),
        details: { port: "/dev/ttyS0", code: Math.floor(random() * 256) },
      },
    };
  };
}

const sizeOf = (path: string) => (existsSync(path) ? statSync(path).size : 0);

describe("outbox quota on disk", () => {
  it("keeps agent.db plus its WAL within 110 % of maxBytes and drops in order when 3x the quota is appended", () => {
    const dir = makeTmpDir("outbox-quota");
    const opened = openDatabase({
      dataDir: dir,
      log: silentLogger,
      now: () => 1,
      walLimitBytes: WAL_LIMIT_BYTES,
    });
    onTestFinished(() => {
      if (opened.db.open) opened.db.close();
    });
    const outbox = createOutbox({
      db: opened.db,
      counters: createCountersFile(join(dir, COUNTERS_FILE)),
      maxBytes: MAX_BYTES,
      maxRecordBytes: 64 * 1024,
    });

    const next = workload(prng(4_242));
    const appended: Record<Stream, number[]> = { telemetry: [], logs: [], events: [] };
    const reported: Record<Stream, number> = { telemetry: 0, logs: 0, events: 0 };
    let appendedBytes = 0;
    let peakOnDisk = 0;
    while (appendedBytes < 3 * MAX_BYTES) {
      const batch = Array.from({ length: BATCH }, next);
      const inBatch: Record<Stream, number> = { telemetry: 0, logs: 0, events: 0 };
      const result = outbox.append(batch);
      expect(result.lastSeq - result.firstSeq + 1).toBe(BATCH);
      batch.forEach((record, index) => {
        appended[record.stream].push(result.firstSeq + index);
        inBatch[record.stream] += 1;
        appendedBytes += rowCost(Buffer.byteLength(JSON.stringify(record.body)));
      });
      for (const stream of STREAMS) reported[stream] += result.dropped[stream];

      const stats = outbox.stats();
      expect(stats.bytes).toBeLessThanOrEqual(MAX_BYTES);
      // A log goes only once no older telemetry is left; an event only once no older log is left either.
      if (result.dropped.logs > 0) expect(stats.streams.telemetry.records).toBe(inBatch.telemetry);
      if (result.dropped.events > 0) {
        expect(stats.streams.telemetry.records).toBe(inBatch.telemetry);
        expect(stats.streams.logs.records).toBe(inBatch.logs);
      }
      const file = join(dir, DATABASE_FILE);
      peakOnDisk = Math.max(peakOnDisk, sizeOf(file) + sizeOf(`${file}-wal`));
    }

    const stats = outbox.stats();
    const rows = outbox.readAfter(0, ALL, ALL);
    expect(stats.records).toBe(rows.length);
    expect(stats.bytes).toBe(rows.reduce((sum, row) => sum + rowCost(Buffer.byteLength(row.body)), 0));
    expect(stats.bytes).toBeGreaterThan(MAX_BYTES - 64 * 1024);

    for (const stream of STREAMS) {
      const remaining = rows.filter((row) => row.stream === stream).map((row) => row.seq);
      // Within a stream the oldest go first: what is left is the newest suffix of what was appended.
      expect(remaining).toEqual(appended[stream].slice(appended[stream].length - remaining.length));
      expect(stats.streams[stream].records).toBe(remaining.length);
      expect(stats.streams[stream].dropped).toBe(appended[stream].length - remaining.length);
      expect(stats.streams[stream].dropped).toBe(reported[stream]);
    }
    // This workload has fewer events than the quota holds: telemetry and logs paid for all of it.
    expect(stats.streams.events.dropped).toBe(0);
    expect(stats.streams.logs.dropped).toBeGreaterThan(0);
    expect(stats.streams.telemetry.dropped).toBeGreaterThan(0);

    const file = join(dir, DATABASE_FILE);
    const figures = {
      maxBytes: MAX_BYTES,
      walLimitBytes: WAL_LIMIT_BYTES,
      appendedBytes,
      dbBytes: sizeOf(file),
      walBytes: sizeOf(`${file}-wal`),
      peakOnDisk,
      pageSize: opened.db.pragma("page_size", { simple: true }),
      pageCount: opened.db.pragma("page_count", { simple: true }),
      freelistCount: opened.db.pragma("freelist_count", { simple: true }),
      statsBytes: stats.bytes,
      records: stats.records,
      bodyBytes: rows.reduce((sum, row) => sum + Buffer.byteLength(row.body), 0),
      streams: stats.streams,
    };
    const onDisk = figures.dbBytes + figures.walBytes;
    expect(onDisk, JSON.stringify(figures)).toBeLessThanOrEqual(1.1 * MAX_BYTES);
    expect(peakOnDisk, JSON.stringify(figures)).toBeLessThanOrEqual(1.1 * MAX_BYTES);
  });
});
