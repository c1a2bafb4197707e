/** A telemetry record as the outbox stores it; `body` is parsed from the JSON text. */
export interface TelemetryRow {
  seq: number;
  ts: number;
  body: Record<string, unknown>;
}

export interface AggregateBody {
  /** Average of each metric over the folded rows that carried it. */
  metrics: Record<string, number>;
  min: Record<string, number>;
  max: Record<string, number>;
  aggregate: { count: number; fromSeq: number; toSeq: number; periodSec: number };
}

/** One aggregate that replaces the rows listed in `replaces` (ascending seqs, its own seq among them). */
export interface AggregateRow {
  seq: number;
  ts: number;
  body: AggregateBody;
  replaces: number[];
}

interface MetricTally {
  sum: number;
  count: number;
  min: number;
  max: number;
}

/**
 * Groups rows into buckets of bucketMs by ts (aligned to multiples of bucketMs since epoch), one aggregate
 * per bucket with ≥ 2 rows; `metrics` holds the average of each metric over the rows that had it; the
 * aggregate takes the seq and ts of its first row (lowest seq). Results come in ascending seq.
 *
 * Left alone (never folded, never returned):
 * - rows that are already aggregates (`body.aggregate` present). An aggregate is never re-aggregated: its
 *   average could only be merged exactly with per-metric counts it does not carry. A bucket that holds an
 *   aggregate still gets its plain rows folded into a second aggregate, because that is what happens when
 *   an earlier pass cut the bucket in two (the "older than an hour" cutoff is not bucket-aligned), and
 *   skipping the bucket would keep those rows at full size for good, which is what disk pressure cannot afford;
 * - rows whose body has no `metrics` object, or whose ts is not finite: not telemetry we understand, so we
 *   do not delete them;
 * - buckets left with one row: replacing a row by itself saves nothing.
 *
 * Only `metrics` survives folding; other body keys of plain rows are dropped. Non-numeric or non-finite
 * metric values are ignored; a folded row that carried none still counts in `aggregate.count`.
 * Seqs are assumed unique (they are the outbox key).
 */
export function aggregateTelemetry(rows: readonly TelemetryRow[], bucketMs: number): AggregateRow[] {
  if (!Number.isFinite(bucketMs) || bucketMs <= 0) throw new RangeError("bucketMs must be a positive number");

  const buckets = new Map<number, TelemetryRow[]>();
  for (const row of rows) {
    if (!Number.isFinite(row.ts) || isAggregate(row.body) || metricsOf(row.body) === undefined) continue;
    const key = Math.floor(row.ts / bucketMs);
    const bucket = buckets.get(key);
    if (bucket === undefined) buckets.set(key, [row]);
    else bucket.push(row);
  }

  const out: AggregateRow[] = [];
  for (const bucket of buckets.values()) {
    if (bucket.length < 2) continue;
    bucket.sort((a, b) => a.seq - b.seq);
    out.push(fold(bucket, bucketMs));
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** `bucket` holds at least two rows, sorted by seq. */
function fold(bucket: readonly TelemetryRow[], bucketMs: number): AggregateRow {
  const tallies = new Map<string, MetricTally>();
  for (const row of bucket) {
    for (const [name, value] of Object.entries(metricsOf(row.body) ?? {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      const tally = tallies.get(name);
      if (tally === undefined) {
        tallies.set(name, { sum: value, count: 1, min: value, max: value });
      } else {
        tally.sum += value;
        tally.count += 1;
        if (value < tally.min) tally.min = value;
        if (value > tally.max) tally.max = value;
      }
    }
  }

  const metrics: Record<string, number> = {};
  const min: Record<string, number> = {};
  const max: Record<string, number> = {};
  for (const [name, tally] of tallies) {
    metrics[name] = tally.sum / tally.count;
    min[name] = tally.min;
    max[name] = tally.max;
  }

  const first = bucket[0] as TelemetryRow;
  const last = bucket[bucket.length - 1] as TelemetryRow;
  return {
    seq: first.seq,
    ts: first.ts,
    body: {
      metrics,
      min,
      max,
      aggregate: { count: bucket.length, fromSeq: first.seq, toSeq: last.seq, periodSec: bucketMs / 1000 },
    },
    replaces: bucket.map((row) => row.seq),
  };
}

function isAggregate(body: Record<string, unknown>): boolean {
  return Object.hasOwn(body, "aggregate") && body.aggregate !== undefined;
}

function metricsOf(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const metrics = body.metrics;
  if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) return undefined;
  return metrics as Record<string, unknown>;
}
