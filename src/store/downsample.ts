import type { Database } from "better-sqlite3";
import { rowCost } from "./outbox.js";
import { aggregateTelemetry, type TelemetryRow } from "./telemetry-aggregate.js";

export interface DownsampleOptions {
  db: Database;
  /** Only telemetry older than this is folded (the recent hour keeps its full resolution). */
  olderThanMs: number;
  bucketMs: number;
  /** Rows looked at per pass, so one pass never holds the writer for long. */
  maxRows: number;
}

export interface DownsampleResult {
  folded: number;
  aggregates: number;
  freedBytes: number;
}

/**
 * Telemetry under disk pressure: old samples are folded into aggregates (min/max/avg per metric over
 * a bucket) so a long outage keeps its shape instead of losing its oldest hours to the drop order.
 *
 * An aggregate takes the seq of the LAST row it replaces: if the first rows of its bucket were already
 * on their way to the broker, their late PUBACK deletes a range that ends before the aggregate, so
 * the aggregate survives and is sent (the consumer sees some samples twice, never loses one).
 */
export function createTelemetryDownsampler(options: DownsampleOptions) {
  const { db } = options;
  const select = db.prepare<[number, number], { seq: number; ts: number; body: string }>(
    "SELECT seq, ts, body FROM outbox_telemetry WHERE ts < ? ORDER BY seq LIMIT ?",
  );
  const remove = db.prepare<[number]>("DELETE FROM outbox_telemetry WHERE seq = ?");
  const insert = db.prepare<[number, number, string, number]>(
    "INSERT INTO outbox_telemetry (seq, ts, body, bytes) VALUES (?, ?, ?, ?)",
  );
  const bytesOf = db.prepare<[], { bytes: number }>(
    "SELECT bytes FROM outbox_stats WHERE stream = 'telemetry'",
  );

  const pass = db.transaction((now: number): DownsampleResult => {
    const before = bytesOf.get()?.bytes ?? 0;
    const rows: TelemetryRow[] = [];
    for (const row of select.all(now - options.olderThanMs, options.maxRows)) {
      try {
        rows.push({ seq: row.seq, ts: row.ts, body: JSON.parse(row.body) as Record<string, unknown> });
      } catch {
        // A row that is not JSON is left as it is; the publisher sends what it can.
      }
    }
    let folded = 0;
    const aggregates = aggregateTelemetry(rows, options.bucketMs);
    for (const aggregate of aggregates) {
      const seq = Math.max(...aggregate.replaces);
      for (const replaced of aggregate.replaces) remove.run(replaced);
      const json = JSON.stringify(aggregate.body);
      insert.run(seq, aggregate.ts, json, rowCost(Buffer.byteLength(json)));
      folded += aggregate.replaces.length;
    }
    return { folded, aggregates: aggregates.length, freedBytes: before - (bytesOf.get()?.bytes ?? 0) };
  });

  return {
    /** One pass over the oldest telemetry; call again while it still frees space. */
    run(now: number): DownsampleResult {
      return pass(now);
    },
  };
}
