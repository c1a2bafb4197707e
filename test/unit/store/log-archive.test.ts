import { describe, expect, it } from "vitest";
import { createLogArchive } from "../../../src/store/log-archive.js";
import type { RecordInput } from "../../../src/store/outbox.js";
import { openTestOutbox } from "../../helpers/test-outbox.js";

const log = (ts: number, level: string, source: string, line: string): RecordInput => ({
  stream: "logs",
  ts,
  body: { source, level, line },
});

describe("log archive", () => {
  it("keeps logs and events after the outbox deleted them, and never telemetry", () => {
    const { db, outbox } = openTestOutbox("archive-keep");
    const archive = createLogArchive(db);
    const appended = outbox.append([
      log(1000, "error", "pinpad", "E/emv: card read failed"),
      { stream: "telemetry", ts: 1000, body: { metrics: { "cpu.loadPct": 3 } } },
      { stream: "events", ts: 1001, body: { type: "x", severity: "info", source: "printer" } },
    ]);
    outbox.removeMany([
      { stream: "logs", fromSeq: appended.firstSeq, toSeq: appended.lastSeq },
      { stream: "telemetry", fromSeq: appended.firstSeq, toSeq: appended.lastSeq },
      { stream: "events", fromSeq: appended.firstSeq, toSeq: appended.lastSeq },
    ]);
    expect(outbox.stats().records).toBe(0);
    const logs = archive.logs({}, 0, Number.MAX_SAFE_INTEGER, 10);
    expect(logs.map((row) => JSON.parse(row.body))).toEqual([
      { source: "pinpad", level: "error", line: "E/emv: card read failed" },
    ]);
    expect(archive.rowsAfter("events", 0, 0, 10)).toHaveLength(1);
    expect(archive.stats().records).toBe(2);
  });

  it("filters by time, level at least, source and text (ASCII case-insensitive)", () => {
    const { db, outbox } = openTestOutbox("archive-filter");
    const archive = createLogArchive(db);
    outbox.append([
      log(1000, "debug", "pinpad", "tick"),
      log(2000, "info", "pinpad", "Card inserted"),
      log(3000, "warn", "printer", "paper near end"),
      log(4000, "error", "pinpad", "CARD read failed"),
      log(5000, "error", "printer", "cutter jam"),
    ]);
    const lines = (filter: Parameters<typeof archive.logs>[0]) =>
      archive.logs(filter, 0, Number.MAX_SAFE_INTEGER, 100).map((row) => JSON.parse(row.body).line);
    expect(lines({ level: "warn" })).toEqual(["paper near end", "CARD read failed", "cutter jam"]);
    expect(lines({ source: "pinpad", level: "info" })).toEqual(["Card inserted", "CARD read failed"]);
    expect(lines({ text: "card" })).toEqual(["Card inserted", "CARD read failed"]);
    expect(lines({ since: 2000, until: 4000 })).toEqual([
      "Card inserted",
      "paper near end",
      "CARD read failed",
    ]);
    expect(lines({ text: "nothing like it" })).toEqual([]);
  });

  it("stays within its byte limit by dropping the oldest copies, whatever the outbox does", () => {
    const { db, outbox } = openTestOutbox("archive-bound", { maxBytes: 4 * 1024 * 1024 });
    const archive = createLogArchive(db);
    const line = "x".repeat(200);
    for (let batch = 0; batch < 40; batch++) {
      const records = Array.from({ length: 500 }, (_, i) =>
        log(batch * 1000 + i, "info", "app", `${batch}:${i} ${line}`),
      );
      const appended = outbox.append(records);
      outbox.removeMany([{ stream: "logs", fromSeq: appended.firstSeq, toSeq: appended.lastSeq }]);
    }
    const { bytes, records } = archive.stats();
    expect(bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(bytes).toBeGreaterThan(0.8 * 1024 * 1024);
    const range = archive.range();
    // The newest line is there; the first ones were pruned.
    const newest = archive.logs({}, (range?.last ?? 1) - 1, Number.MAX_SAFE_INTEGER, 1);
    expect(JSON.parse(newest[0]?.body ?? "{}").line).toBe(`39:499 ${line}`);
    expect(range?.first).toBeGreaterThan(1);
    expect(records).toBe((range?.last ?? 0) - (range?.first ?? 0) + 1);
  });

  it("picks the newest rows of a stream that fit a byte budget", () => {
    const { db, outbox } = openTestOutbox("archive-budget");
    const archive = createLogArchive(db);
    outbox.append(Array.from({ length: 100 }, (_, i) => log(i, "info", "app", `line ${i}`)));
    const all = archive.startForBudget("logs", 0, Number.MAX_SAFE_INTEGER);
    expect(all).toEqual({ after: 0, cut: false });
    const rowBytes = (db.prepare("SELECT bytes FROM archive WHERE seq = 100").get() as { bytes: number })
      .bytes;
    const some = archive.startForBudget("logs", 0, rowBytes * 10);
    expect(some.cut).toBe(true);
    expect(archive.rowsAfter("logs", some.after, 0, 1000)).toHaveLength(10);
  });

  it("gives its room to records not yet published: copies go before any record is dropped", () => {
    const maxBytes = 2 * 1024 * 1024;
    const { db, outbox } = openTestOutbox("archive-yields", { maxBytes });
    const archive = createLogArchive(db);
    const line = "z".repeat(300);
    const batch = (n: number) =>
      Array.from({ length: 100 }, (_, i) => log(n * 100 + i, "info", "app", `${n}:${i} ${line}`));
    // Online: published at once, the archive fills to its limit.
    for (let n = 0; n < 40; n++) {
      const appended = outbox.append(batch(n));
      outbox.removeMany([{ stream: "logs", fromSeq: appended.firstSeq, toSeq: appended.lastSeq }]);
    }
    const before = archive.stats().bytes;
    expect(before).toBeGreaterThan(0.8 * (maxBytes / 4));
    // Offline: nothing is published; the outbox grows past what the archive left free.
    let n = 40;
    while (outbox.stats().bytes < 0.85 * maxBytes && n < 1000) outbox.append(batch(n++));
    expect(outbox.stats().streams.logs.dropped).toBe(0);
    expect(archive.stats().bytes).toBeLessThan(before);
    expect(outbox.stats().bytes + archive.stats().bytes).toBeLessThanOrEqual(maxBytes);
  });
});
