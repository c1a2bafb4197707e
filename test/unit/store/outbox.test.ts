import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { AgentError } from "../../../src/shared/errors.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCountersFile } from "../../../src/store/counters-file.js";
import { COUNTERS_FILE, DATABASE_FILE, openDatabase } from "../../../src/store/database.js";
import {
  createOutbox,
  type Outbox,
  type RecordInput,
  rowCost,
  STREAMS,
  type Stream,
} from "../../../src/store/outbox.js";
import { prng } from "../../helpers/prng.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

/** Every record built by `sized` has a JSON body of this length, so each costs exactly RECORD_BYTES. */
const BODY_BYTES = 168;
const RECORD_BYTES = rowCost(BODY_BYTES);
const ALL = Number.MAX_SAFE_INTEGER;

const FIELDS: Record<Stream, Record<string, unknown>> = {
  telemetry: { metrics: { "cpu.loadPct": 31.2 } },
  logs: { source: "pinpad", level: "info", line: "ok" },
  events: { type: "peripheral.printer.paper_end", severity: "critical" },
};

function sized(stream: Stream, ts = 1_767_225_600_000, bodyBytes = BODY_BYTES): RecordInput {
  const fields = FIELDS[stream];
  const base = Buffer.byteLength(JSON.stringify({ ...fields, pad: "" }));
  if (base > bodyBytes)
    throw new Error(`cannot build a ${stream} body of ${bodyBytes} bytes (minimum ${base})`);
  return { stream, ts, body: { ...fields, pad: "x".repeat(bodyBytes - base) } };
}

const T = (): RecordInput => sized("telemetry");
const L = (): RecordInput => sized("logs");
const E = (): RecordInput => sized("events");

interface StoreOptions {
  maxBytes?: number;
  maxRecordBytes?: number;
}

function openStore(dir: string, options: StoreOptions = {}) {
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: () => 1_000,
    walLimitBytes: 1024 * 1024,
  });
  onTestFinished(() => {
    if (opened.db.open) opened.db.close();
  });
  const counters = createCountersFile(join(dir, COUNTERS_FILE));
  const outbox = createOutbox({
    db: opened.db,
    counters,
    maxBytes: options.maxBytes ?? 1024 * 1024,
    maxRecordBytes: options.maxRecordBytes ?? 64 * 1024,
  });
  return { opened, counters, outbox, close: () => opened.db.close() };
}

function seqsOf(outbox: Outbox, stream?: Stream): number[] {
  return outbox
    .readAfter(0, ALL, ALL)
    .filter((row) => stream === undefined || row.stream === stream)
    .map((row) => row.seq);
}

function droppedOf(outbox: Outbox): Record<Stream, number> {
  const { streams } = outbox.stats();
  return { telemetry: streams.telemetry.dropped, logs: streams.logs.dropped, events: streams.events.dropped };
}

describe("outbox seq", () => {
  it("hands out strictly increasing seqs when batches are appended one after another", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    expect(outbox.append([T(), L(), E()])).toMatchObject({ firstSeq: 1, lastSeq: 3 });
    expect(outbox.append([L(), L()])).toMatchObject({ firstSeq: 4, lastSeq: 5 });
    expect(outbox.append([E()])).toMatchObject({ firstSeq: 6, lastSeq: 6 });
    expect(seqsOf(outbox)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(outbox.lastSeq()).toBe(6);
    expect(outbox.stats().lastSeq).toBe(6);
  });

  it("continues above the last seq when the database is closed and reopened", () => {
    const dir = makeTmpDir("outbox");
    const first = openStore(dir);
    first.outbox.append([T(), L(), E()]);
    first.close();

    const second = openStore(dir);
    expect(second.outbox.lastSeq()).toBe(3);
    expect(second.outbox.append([L(), E()])).toMatchObject({ firstSeq: 4, lastSeq: 5 });
    expect(seqsOf(second.outbox)).toEqual([1, 2, 3, 4, 5]);
  });

  it("never hands out a seq again when every row was deleted, before and after a reopen", () => {
    const dir = makeTmpDir("outbox");
    const first = openStore(dir);
    first.outbox.append([T(), L(), E()]);
    expect(first.outbox.removeMany(STREAMS.map((stream) => ({ stream, fromSeq: 1, toSeq: 3 })))).toBe(3);
    expect(first.outbox.stats().records).toBe(0);
    expect(first.outbox.append([L()])).toMatchObject({ firstSeq: 4, lastSeq: 4 });
    expect(first.outbox.removeMany([{ stream: "logs", fromSeq: 4, toSeq: 4 }])).toBe(1);
    first.close();

    const second = openStore(dir);
    expect(second.outbox.stats()).toMatchObject({ records: 0, lastSeq: 4 });
    expect(second.outbox.append([E()])).toMatchObject({ firstSeq: 5, lastSeq: 5 });
  });

  it("raises the counters file's reservation before handing out a seq beyond it", () => {
    const dir = makeTmpDir("outbox");
    createCountersFile(join(dir, COUNTERS_FILE)).write({ sessionId: 7, seqReserve: 3 });
    const { outbox, counters } = openStore(dir);
    outbox.append([T(), L(), E(), L(), L()]);
    const state = counters.read();
    expect(state.sessionId).toBe(7);
    expect(outbox.lastSeq()).toBeGreaterThan(3);
    expect(state.seqReserve).toBeGreaterThanOrEqual(outbox.lastSeq());
  });

  it("continues above the counters file's reservation when the database was lost and recreated", () => {
    const dir = makeTmpDir("outbox");
    const old = openStore(dir);
    old.outbox.append([T(), L(), E(), L(), T()]);
    const oldSeqs = seqsOf(old.outbox);
    old.close();
    const reserve = createCountersFile(join(dir, COUNTERS_FILE)).read().seqReserve;
    expect(reserve).toBeGreaterThanOrEqual(5);

    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dir, DATABASE_FILE + suffix), { force: true });

    const fresh = openStore(dir);
    expect(fresh.opened.created).toBe(true);
    const result = fresh.outbox.append([L(), E()]);
    expect(result).toMatchObject({ firstSeq: reserve + 1, lastSeq: reserve + 2 });
    expect(result.firstSeq).toBeGreaterThan(Math.max(...oldSeqs));
    expect(fresh.counters.read().seqReserve).toBeGreaterThanOrEqual(reserve + 2);
    fresh.close();

    // The next start finds the database again (created: false) and keeps counting from it.
    const again = openStore(dir);
    expect(again.opened.created).toBe(false);
    expect(again.outbox.append([T()])).toMatchObject({ firstSeq: reserve + 3, lastSeq: reserve + 3 });
  });

  it("continues above the reservation when the agent stopped between recreating the database and its first append", () => {
    const dir = makeTmpDir("outbox");
    const old = openStore(dir);
    old.outbox.append([T(), L(), E()]);
    old.close();
    const reserve = createCountersFile(join(dir, COUNTERS_FILE)).read().seqReserve;
    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dir, DATABASE_FILE + suffix), { force: true });

    // First start after the loss: the schema is created, then the process dies before createOutbox.
    const interrupted = openDatabase({
      dataDir: dir,
      log: silentLogger,
      now: () => 1,
      walLimitBytes: 1024 * 1024,
    });
    expect(interrupted.created).toBe(true);
    interrupted.db.close();

    // Next start: the schema exists (created: false) but no seq was ever handed out from it.
    const opened = openDatabase({
      dataDir: dir,
      log: silentLogger,
      now: () => 1,
      walLimitBytes: 1024 * 1024,
    });
    onTestFinished(() => {
      opened.db.close();
    });
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const outbox = createOutbox({
      db: opened.db,
      counters,
      maxBytes: 1024 * 1024,
      maxRecordBytes: 64 * 1024,
    });
    expect(outbox.append([L()]).firstSeq).toBeGreaterThan(reserve);
  });
});

describe("outbox append", () => {
  it("throws TOO_LARGE and stores nothing when one record of a batch is over maxRecordBytes", () => {
    const bigBody = BODY_BYTES + 100;
    const limit = bigBody;
    const { outbox, counters } = openStore(makeTmpDir("outbox"), { maxRecordBytes: limit });
    outbox.append([L()]);
    const reserveBefore = counters.read().seqReserve;

    let caught: unknown;
    try {
      outbox.append([L(), E(), sized("logs", 1, bigBody + 1), T()]);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AgentError);
    expect(caught).toMatchObject({ code: "TOO_LARGE", retryable: false, details: { index: 2 } });
    expect((caught as Error).message).toBe(`record [2] is ${bigBody + 1} bytes; the limit is ${limit}`);

    expect(outbox.stats()).toMatchObject({ records: 1, bytes: RECORD_BYTES, lastSeq: 1 });
    expect(counters.read().seqReserve).toBe(reserveBefore);
    expect(outbox.append([sized("logs", 1, bigBody)])).toMatchObject({ firstSeq: 2, lastSeq: 2 });
  });

  it("throws TOO_LARGE and drops nothing when a batch is larger than the whole quota", () => {
    const { outbox } = openStore(makeTmpDir("outbox"), { maxBytes: 10 * RECORD_BYTES });
    outbox.append([T(), T(), L(), E(), T()]);
    expect(() => outbox.append(Array.from({ length: 11 }, L))).toThrow(
      expect.objectContaining({ code: "TOO_LARGE" }),
    );
    expect(seqsOf(outbox)).toEqual([1, 2, 3, 4, 5]);
    expect(droppedOf(outbox)).toEqual({ telemetry: 0, logs: 0, events: 0 });
  });

  it("stores nothing and returns zero seqs when the batch is empty", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    expect(outbox.append([])).toEqual({
      firstSeq: 0,
      lastSeq: 0,
      dropped: { telemetry: 0, events: 0, logs: 0 },
    });
    expect(outbox.stats()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it("stores the body without seq, ts and historical when the producer passed them", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([
      { stream: "logs", ts: 42, body: { seq: 99, ts: 7, historical: true, source: "app", line: "é" } },
    ]);
    const [row] = outbox.readAfter(0, 10, ALL);
    expect(row).toEqual({ seq: 1, stream: "logs", ts: 42, body: '{"source":"app","line":"é"}' });
    expect(outbox.stats().bytes).toBe(rowCost(Buffer.byteLength('{"source":"app","line":"é"}')));
  });
});

describe("outbox quota", () => {
  it("drops the oldest telemetry first, then logs, then events when the quota is full", () => {
    const { outbox } = openStore(makeTmpDir("outbox"), { maxBytes: 10 * RECORD_BYTES });

    // seqs 1..10: T1 L2 E3 T4 L5 E6 T7 L8 E9 T10 fill the quota exactly.
    expect(outbox.append([T(), L(), E(), T(), L(), E(), T(), L(), E(), T()]).dropped).toEqual({
      telemetry: 0,
      logs: 0,
      events: 0,
    });
    expect(outbox.stats().bytes).toBe(10 * RECORD_BYTES);

    expect(outbox.append([L()]).dropped).toEqual({ telemetry: 1, logs: 0, events: 0 }); // L11 drops T1
    expect(seqsOf(outbox)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

    expect(outbox.append([E(), E()]).dropped).toEqual({ telemetry: 2, logs: 0, events: 0 }); // drops T4 T7
    expect(seqsOf(outbox)).toEqual([2, 3, 5, 6, 8, 9, 10, 11, 12, 13]);

    // E14 E15: the last telemetry (T10) is not enough, so the oldest log (L2) goes too.
    expect(outbox.append([E(), E()]).dropped).toEqual({ telemetry: 1, logs: 1, events: 0 });
    expect(seqsOf(outbox)).toEqual([3, 5, 6, 8, 9, 11, 12, 13, 14, 15]);

    // Three telemetry records: none left to drop, and telemetry never evicts a log or an event, so
    // they are refused (and counted); nothing else moves.
    const full = expect.objectContaining({ code: "DISK_FULL" }) as unknown as Error;
    expect(() => outbox.append([T(), T(), T()])).toThrow(full);
    expect(seqsOf(outbox)).toEqual([3, 5, 6, 8, 9, 11, 12, 13, 14, 15]);

    // Four logs: the three older logs would not make room for four, and logs never evict events: the
    // batch is refused whole, nothing is evicted for it, and its four lines count as dropped.
    expect(() => outbox.append([L(), L(), L(), L()])).toThrow(full);
    expect(seqsOf(outbox)).toEqual([3, 5, 6, 8, 9, 11, 12, 13, 14, 15]);

    // One log evicts the oldest log.
    expect(outbox.append([L()]).dropped).toEqual({ telemetry: 0, logs: 1, events: 0 });
    expect(seqsOf(outbox)).toEqual([3, 6, 8, 9, 11, 12, 13, 14, 15, 16]);

    // Events may evict anything: the logs go first, then the oldest events.
    expect(outbox.append([E(), E()]).dropped).toEqual({ telemetry: 0, logs: 2, events: 0 });
    expect(outbox.append([E(), E(), E()]).dropped).toEqual({ telemetry: 0, logs: 1, events: 2 });
    expect(seqsOf(outbox)).toEqual([9, 12, 13, 14, 15, 17, 18, 19, 20, 21]);
    expect(seqsOf(outbox, "logs")).toEqual([]);

    const stats = outbox.stats();
    expect(stats.streams).toEqual({
      telemetry: { records: 0, bytes: 0, dropped: 7 },
      logs: { records: 0, bytes: 0, dropped: 9 },
      events: { records: 10, bytes: 10 * RECORD_BYTES, dropped: 2 },
    });
    expect(stats).toMatchObject({ records: 10, bytes: 10 * RECORD_BYTES, lastSeq: 21 });
  });

  it("refuses telemetry rather than evict an event, and counts it as dropped", () => {
    const { outbox } = openStore(makeTmpDir("outbox"), { maxBytes: 3 * RECORD_BYTES });
    outbox.append([E(), E(), E()]);
    expect(() => outbox.append([T()])).toThrow(
      expect.objectContaining({ code: "DISK_FULL" }) as unknown as Error,
    );
    expect(seqsOf(outbox)).toEqual([1, 2, 3]);
    expect(outbox.stats().streams.telemetry.dropped).toBe(1);
    expect(outbox.stats().streams.events.dropped).toBe(0);
  });

  it("keeps the drop counters and byte totals when the database is closed and reopened", () => {
    const dir = makeTmpDir("outbox");
    const first = openStore(dir, { maxBytes: 4 * RECORD_BYTES });
    first.outbox.append([T(), L(), E(), T()]);
    first.outbox.append([L(), L(), L()]); // drops T1 T4 L2
    first.outbox.discard("events", 3, 3);
    const before = first.outbox.stats();
    expect(before.streams).toEqual({
      telemetry: { records: 0, bytes: 0, dropped: 2 },
      logs: { records: 3, bytes: 3 * RECORD_BYTES, dropped: 1 },
      events: { records: 0, bytes: 0, dropped: 1 },
    });
    first.close();

    const second = openStore(dir, { maxBytes: 4 * RECORD_BYTES });
    expect(second.outbox.stats()).toEqual(before);
  });

  it("never lets stats().bytes pass maxBytes and counts every drop when a long mixed run overflows", () => {
    const maxBytes = 6_000;
    const { outbox } = openStore(makeTmpDir("outbox"), { maxBytes });
    const random = prng(20_260_101);
    const appended: Record<Stream, number> = { telemetry: 0, logs: 0, events: 0 };
    const reported: Record<Stream, number> = { telemetry: 0, logs: 0, events: 0 };
    let refusals = 0;
    for (let round = 0; round < 300; round++) {
      const batch: RecordInput[] = [];
      const size = 1 + Math.floor(random() * 8);
      for (let i = 0; i < size; i++) {
        const stream: Stream = random() < 0.4 ? "telemetry" : random() < 0.8 ? "logs" : "events";
        batch.push(sized(stream, round, 76 + Math.floor(random() * 500)));
        appended[stream] += 1;
      }
      try {
        const result = outbox.append(batch);
        for (const stream of STREAMS) reported[stream] += result.dropped[stream];
      } catch (error) {
        // Refused whole (no room without evicting a higher stream): the batch counts as dropped.
        expect(error).toMatchObject({ code: "DISK_FULL" });
        for (const record of batch) reported[record.stream] += 1;
        refusals += 1;
      }

      const stats = outbox.stats();
      expect(stats.bytes).toBeLessThanOrEqual(maxBytes);
      const rows = outbox.readAfter(0, ALL, ALL);
      expect(stats.records).toBe(rows.length);
      expect(stats.bytes).toBe(rows.reduce((sum, row) => sum + rowCost(Buffer.byteLength(row.body)), 0));
    }
    const stats = outbox.stats();
    for (const stream of STREAMS) {
      expect(stats.streams[stream].dropped).toBe(reported[stream]);
      expect(stats.streams[stream].dropped).toBe(appended[stream] - stats.streams[stream].records);
    }
    expect(reported.logs).toBeGreaterThan(0);
    expect(refusals).toBeGreaterThan(0);
  });
});

describe("outbox readAfter", () => {
  it("pages through every row in seq order when the limit is smaller than the backlog", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([T(), L(), E(), L(), L(), T(), E(), L(), T(), E()]);
    const pages: number[][] = [];
    let after = 0;
    for (;;) {
      const page = outbox.readAfter(after, 4, ALL);
      if (page.length === 0) break;
      pages.push(page.map((row) => row.seq));
      after = page[page.length - 1]?.seq ?? after;
    }
    expect(pages).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10],
    ]);
  });

  it("stops before the row that would pass maxBytes and includes one that lands exactly on it", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([L(), L(), L(), L()]);
    expect(outbox.readAfter(0, 100, 2 * RECORD_BYTES).map((row) => row.seq)).toEqual([1, 2]);
    expect(outbox.readAfter(0, 100, 3 * RECORD_BYTES - 1).map((row) => row.seq)).toEqual([1, 2]);
    expect(outbox.readAfter(1, 2, ALL).map((row) => row.seq)).toEqual([2, 3]);
  });

  it("returns exactly one row when the first row alone is larger than maxBytes", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([L(), L()]);
    expect(outbox.readAfter(0, 100, 1).map((row) => row.seq)).toEqual([1]);
    expect(outbox.readAfter(1, 100, 0).map((row) => row.seq)).toEqual([2]);
  });

  it("returns nothing when no row follows the given seq", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    expect(outbox.readAfter(0, 100, ALL)).toEqual([]);
    outbox.append([L(), L()]);
    expect(outbox.readAfter(2, 100, ALL)).toEqual([]);
  });

  it("skips deleted seqs and returns stream, ts and body when rows were removed in between", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([sized("logs", 10), sized("telemetry", 20), sized("logs", 30), sized("events", 40)]);
    outbox.removeMany([{ stream: "telemetry", fromSeq: 2, toSeq: 2 }]);
    const rows = outbox.readAfter(0, 2, ALL);
    expect(rows.map(({ seq, stream, ts }) => ({ seq, stream, ts }))).toEqual([
      { seq: 1, stream: "logs", ts: 10 },
      { seq: 3, stream: "logs", ts: 30 },
    ]);
    expect(JSON.parse(rows[0]?.body ?? "")).toEqual(sized("logs").body);
  });
});

describe("outbox remove, removeMany and discard", () => {
  it("deletes only the given stream's rows when other streams share the seq range", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([T(), L(), T(), L(), T(), L(), E()]); // T1 L2 T3 L4 T5 L6 E7
    expect(outbox.removeMany([{ stream: "telemetry", fromSeq: 1, toSeq: 5 }])).toBe(3);
    expect(seqsOf(outbox)).toEqual([2, 4, 6, 7]);

    expect(
      outbox.removeMany([
        { stream: "logs", fromSeq: 2, toSeq: 2 },
        { stream: "logs", fromSeq: 6, toSeq: 7 },
        { stream: "telemetry", fromSeq: 1, toSeq: 7 },
      ]),
    ).toBe(2);
    expect(seqsOf(outbox)).toEqual([4, 7]);
    expect(droppedOf(outbox)).toEqual({ telemetry: 0, logs: 0, events: 0 });
    expect(outbox.stats()).toMatchObject({ records: 2, bytes: 2 * RECORD_BYTES });
  });

  it("returns 0 when the range was already deleted", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([L(), L()]);
    expect(outbox.removeMany([{ stream: "logs", fromSeq: 1, toSeq: 2 }])).toBe(2);
    expect(outbox.removeMany([{ stream: "logs", fromSeq: 1, toSeq: 2 }])).toBe(0);
    expect(outbox.removeMany([{ stream: "logs", fromSeq: 1, toSeq: 2 }])).toBe(0);
  });

  it("counts a discarded batch as dropped when the broker refused it for good", () => {
    const { outbox } = openStore(makeTmpDir("outbox"));
    outbox.append([T(), L(), T(), L(), T(), L()]);
    expect(outbox.discard("logs", 1, 6)).toBe(3);
    expect(seqsOf(outbox)).toEqual([1, 3, 5]);
    expect(droppedOf(outbox)).toEqual({ telemetry: 0, logs: 3, events: 0 });
    expect(outbox.discard("logs", 1, 6)).toBe(0);
    expect(droppedOf(outbox)).toEqual({ telemetry: 0, logs: 3, events: 0 });
  });
});
