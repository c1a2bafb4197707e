import { describe, expect, it } from "vitest";
import { createTelemetryDownsampler } from "../../../src/store/downsample.js";
import { openTestOutbox } from "../../helpers/test-outbox.js";

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0);
const ALL = Number.MAX_SAFE_INTEGER;

function setup() {
  const { db, outbox, close } = openTestOutbox("downsample", { now: () => NOW, maxRecordBytes: 60 * 1024 });
  const downsampler = createTelemetryDownsampler({
    db,
    olderThanMs: HOUR,
    bucketMs: 300_000,
    maxRows: 10_000,
  });
  return { outbox, downsampler, close };
}

describe("telemetry downsampling in the outbox", () => {
  it("folds telemetry older than an hour into 5-minute aggregates, keeping recent samples and other streams", () => {
    const { outbox, downsampler, close } = setup();
    // Two hours of one sample a minute, with a log line in between.
    for (let minute = 120; minute > 0; minute--) {
      outbox.append([
        { stream: "telemetry", ts: NOW - minute * 60_000, body: { metrics: { "cpu.loadPct": minute } } },
      ]);
    }
    outbox.append([
      { stream: "logs", ts: NOW - 2 * HOUR, body: { source: "pinpad", level: "info", line: "kept" } },
    ]);
    const before = outbox.stats();

    const result = downsampler.run(NOW);
    expect(result.folded).toBe(60);
    expect(result.aggregates).toBe(12);
    expect(result.freedBytes).toBeGreaterThan(0);

    const after = outbox.stats();
    expect(after.streams.telemetry.records).toBe(before.streams.telemetry.records - 60 + 12);
    expect(after.streams.logs.records).toBe(1);
    expect(after.bytes).toBe(before.bytes - result.freedBytes);
    const rows = outbox.readAfter(0, ALL, ALL).filter((row) => row.stream === "telemetry");
    const first = JSON.parse(rows[0]?.body ?? "{}");
    // Minutes 120..116 before now: one 5-minute bucket, min/max/avg exact.
    expect(first).toEqual({
      metrics: { "cpu.loadPct": 118 },
      min: { "cpu.loadPct": 116 },
      max: { "cpu.loadPct": 120 },
      aggregate: { count: 5, fromSeq: 1, toSeq: 5, periodSec: 300 },
    });
    // The aggregate takes the seq of the last row it replaces, so a late PUBACK for the first ones cannot delete it.
    expect(rows[0]?.seq).toBe(5);
    // The last hour is untouched.
    expect(rows.filter((row) => !row.body.includes('"aggregate"'))).toHaveLength(60);
    // A second pass finds nothing more to fold.
    expect(downsampler.run(NOW).folded).toBe(0);
    close();
  });

  it("folds only whole buckets, each once, when it runs every minute under steady pressure", () => {
    const { outbox, downsampler, close } = setup();
    const start = NOW - 3 * HOUR;
    for (let minute = 0; minute < 180; minute++) {
      const now = start + minute * 60_000;
      outbox.append([{ stream: "telemetry", ts: now, body: { metrics: { "cpu.loadPct": minute } } }]);
      downsampler.run(now);
    }
    const rows = outbox
      .readAfter(0, ALL, ALL)
      .map((row) => JSON.parse(row.body) as { aggregate?: { count: number } });
    const aggregates = rows.filter((row) => row.aggregate !== undefined);
    // The last pass (a minute before NOW) folds what lies before the bucket boundary an hour back:
    // 115 minutes in 23 buckets of 5 samples, none of a split bucket; the last 65 minutes stay raw.
    expect(aggregates.map((row) => row.aggregate?.count)).toEqual(Array.from({ length: 23 }, () => 5));
    expect(rows.length - aggregates.length).toBe(65);
    close();
  });

  it("leaves a bucket alone when its aggregate would not be smaller than its rows", () => {
    const { outbox, downsampler, close } = setup();
    outbox.append([
      { stream: "telemetry", ts: NOW - 2 * HOUR, body: { metrics: { "cpu.loadPct": 1 } } },
      { stream: "telemetry", ts: NOW - 2 * HOUR + 60_000, body: { metrics: { "cpu.loadPct": 2 } } },
    ]);
    const before = outbox.stats();
    expect(downsampler.run(NOW)).toEqual({ folded: 0, aggregates: 0, freedBytes: 0 });
    expect(outbox.stats()).toEqual(before);
    close();
  });
});
