import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { aggregateTelemetry, type TelemetryRow } from "../../../src/store/telemetry-aggregate.js";

const FIVE_MIN = 300_000;
/** A bucket boundary: 1 700 000 100 000 is a multiple of five minutes. */
const T0 = 1_700_000_100_000;

const row = (seq: number, ts: number, metrics: Record<string, unknown>): TelemetryRow => ({
  seq,
  ts,
  body: { metrics },
});

describe("aggregateTelemetry", () => {
  it("keeps min, max and average of each metric exactly", () => {
    const result = aggregateTelemetry(
      [
        row(1, T0, { "cpu.loadPct": 10, "mem.usedPct": 0.5 }),
        row(2, T0 + 60_000, { "cpu.loadPct": 30, "mem.usedPct": 1.5 }),
        row(3, T0 + 120_000, { "cpu.loadPct": 20, "mem.usedPct": 1 }),
      ],
      FIVE_MIN,
    );
    expect(result).toEqual([
      {
        seq: 1,
        ts: T0,
        body: {
          metrics: { "cpu.loadPct": 20, "mem.usedPct": 1 },
          min: { "cpu.loadPct": 10, "mem.usedPct": 0.5 },
          max: { "cpu.loadPct": 30, "mem.usedPct": 1.5 },
          aggregate: { count: 3, fromSeq: 1, toSeq: 3, periodSec: 300 },
        },
        replaces: [1, 2, 3],
      },
    ]);
  });

  it("averages each metric over the rows that carried it when some rows lack it", () => {
    const [aggregate] = aggregateTelemetry(
      [
        row(1, T0, { a: 1, b: 10 }),
        row(2, T0 + 1, { a: 3 }),
        row(3, T0 + 2, { a: 5, b: 20 }),
        row(4, T0 + 3, {}),
      ],
      FIVE_MIN,
    );
    expect(aggregate?.body.metrics).toEqual({ a: 3, b: 15 });
    expect(aggregate?.body.min).toEqual({ a: 1, b: 10 });
    expect(aggregate?.body.max).toEqual({ a: 5, b: 20 });
    expect(aggregate?.body.aggregate.count).toBe(4);
    expect(aggregate?.replaces).toEqual([1, 2, 3, 4]);
  });

  it("ignores non-numeric and non-finite metric values", () => {
    const [aggregate] = aggregateTelemetry(
      [
        row(1, T0, { a: 2, b: "high", c: null }),
        row(2, T0 + 1, { a: Number.NaN, b: true, c: Number.POSITIVE_INFINITY }),
        row(3, T0 + 2, { a: 4, c: { nested: 1 } }),
      ],
      FIVE_MIN,
    );
    expect(aggregate?.body).toEqual({
      metrics: { a: 3 },
      min: { a: 2 },
      max: { a: 4 },
      aggregate: { count: 3, fromSeq: 1, toSeq: 3, periodSec: 300 },
    });
  });

  it("aligns buckets to multiples of bucketMs since the epoch", () => {
    const result = aggregateTelemetry(
      [
        row(1, T0 - 2, { a: 1 }),
        row(2, T0 - 1, { a: 3 }), // last millisecond of the previous bucket
        row(3, T0, { a: 10 }), // first millisecond of the next one
        row(4, T0 + FIVE_MIN - 1, { a: 20 }),
        row(5, T0 + FIVE_MIN, { a: 100 }),
      ],
      FIVE_MIN,
    );
    expect(result.map((r) => [r.seq, r.ts, r.replaces, r.body.metrics])).toEqual([
      [1, T0 - 2, [1, 2], { a: 2 }],
      [3, T0, [3, 4], { a: 15 }],
    ]);
  });

  it("orders by seq and takes the seq and ts of the first row, whatever the input order", () => {
    const result = aggregateTelemetry(
      [
        row(9, T0 + FIVE_MIN + 5, { a: 1 }),
        row(12, T0 + 40, { a: 4 }),
        row(7, T0 + 50, { a: 2 }), // clock stepped back between seq 7 and 8
        row(8, T0 + 10, { a: 6 }),
        row(10, T0 + FIVE_MIN + 6, { a: 3 }),
      ],
      FIVE_MIN,
    );
    expect(result.map((r) => [r.seq, r.ts, r.replaces, r.body.aggregate])).toEqual([
      [7, T0 + 50, [7, 8, 12], { count: 3, fromSeq: 7, toSeq: 12, periodSec: 300 }],
      [9, T0 + FIVE_MIN + 5, [9, 10], { count: 2, fromSeq: 9, toSeq: 10, periodSec: 300 }],
    ]);
  });

  it("leaves single-row buckets alone", () => {
    expect(aggregateTelemetry([row(1, T0, { a: 1 }), row(2, T0 + FIVE_MIN, { a: 2 })], FIVE_MIN)).toEqual([]);
    expect(aggregateTelemetry([], FIVE_MIN)).toEqual([]);
  });

  it("never re-aggregates an aggregate, and folds the plain rows beside it", () => {
    const earlier = aggregateTelemetry([row(1, T0, { a: 1 }), row(2, T0 + 1, { a: 3 })], FIVE_MIN)[0];
    if (earlier === undefined) throw new Error("expected an aggregate");
    const stored: TelemetryRow = {
      seq: earlier.seq,
      ts: earlier.ts,
      body: earlier.body as unknown as Record<string, unknown>,
    };
    // Aggregate and one plain row: nothing to gain.
    expect(aggregateTelemetry([stored, row(3, T0 + 2, { a: 5 })], FIVE_MIN)).toEqual([]);
    // Aggregate and two plain rows: the plain rows get their own aggregate; the old one is untouched.
    const result = aggregateTelemetry(
      [stored, row(3, T0 + 2, { a: 5 }), row(4, T0 + 3, { a: 7 }), { ...stored, seq: 0, ts: T0 + FIVE_MIN }],
      FIVE_MIN,
    );
    expect(result.map((r) => [r.seq, r.replaces, r.body.metrics])).toEqual([[3, [3, 4], { a: 6 }]]);
  });

  it("leaves rows without a metrics object alone", () => {
    const odd: TelemetryRow[] = [
      { seq: 1, ts: T0, body: {} },
      { seq: 2, ts: T0 + 1, body: { metrics: [1, 2] } },
      { seq: 3, ts: T0 + 2, body: { metrics: null } },
      { seq: 4, ts: Number.NaN, body: { metrics: { a: 1 } } },
      row(5, T0 + 3, { a: 1 }),
    ];
    expect(aggregateTelemetry(odd, FIVE_MIN)).toEqual([]);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])("refuses bucketMs %s", (bucketMs) => {
    expect(() => aggregateTelemetry([], bucketMs)).toThrow(RangeError);
  });

  it("matches a naive computation for any rows", () => {
    const names = ["a", "b", "c"] as const;
    const value = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: -1_000, max: 1_000 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, "x", null, Number.NaN) },
    );
    const rowArb = fc.record({
      ts: fc.integer({ min: T0 - 2 * FIVE_MIN, max: T0 + 3 * FIVE_MIN }),
      a: value,
      b: value,
      c: value,
      isAggregate: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    });
    fc.assert(
      fc.property(
        fc.array(rowArb, { maxLength: 60 }),
        fc.constantFrom(60_000, FIVE_MIN, 3_600_000),
        (specs, bucketMs) => {
          // Unique seqs in an order unrelated to ts.
          const rows: TelemetryRow[] = specs.map((spec, i) => {
            const metrics: Record<string, unknown> = {};
            for (const name of names) if (spec[name] !== undefined) metrics[name] = spec[name];
            const body: Record<string, unknown> = { metrics };
            if (spec.isAggregate) body.aggregate = { count: 2, fromSeq: 0, toSeq: 0, periodSec: 300 };
            return { seq: (i * 7919) % 1_000_003, ts: spec.ts, body };
          });
          const result = aggregateTelemetry(rows, bucketMs);

          const plain = rows.filter((r) => r.body.aggregate === undefined);
          const keys = [...new Set(plain.map((r) => Math.floor(r.ts / bucketMs)))];
          const expected = keys
            .map((key) =>
              plain.filter((r) => Math.floor(r.ts / bucketMs) === key).sort((x, y) => x.seq - y.seq),
            )
            .filter((bucket) => bucket.length >= 2)
            .map((bucket) => {
              const metrics: Record<string, number> = {};
              const min: Record<string, number> = {};
              const max: Record<string, number> = {};
              for (const name of names) {
                const values = bucket
                  .map((r) => (r.body.metrics as Record<string, unknown>)[name])
                  .filter((v): v is number => typeof v === "number" && Number.isFinite(v));
                if (values.length === 0) continue;
                metrics[name] = values.reduce((s, v) => s + v, 0) / values.length;
                min[name] = Math.min(...values);
                max[name] = Math.max(...values);
              }
              const first = bucket[0] as TelemetryRow;
              const seqs = bucket.map((r) => r.seq);
              return {
                seq: first.seq,
                ts: first.ts,
                body: {
                  metrics,
                  min,
                  max,
                  aggregate: {
                    count: bucket.length,
                    fromSeq: first.seq,
                    toSeq: Math.max(...seqs),
                    periodSec: bucketMs / 1000,
                  },
                },
                replaces: seqs,
              };
            })
            .sort((x, y) => x.seq - y.seq);
          expect(result).toEqual(expected);
        },
      ),
    );
  });
});
