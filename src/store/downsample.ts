import type { Database } from "better-sqlite3";
import { rowCost } from "./outbox.js";
import { aggregateTelemetry, type TelemetryRow } from "./telemetry-aggregate.js";

export interface DownsampleOptions {
  db: Database;
  /** Only telemetry older than this is folded (the recent hour keeps its full resolution). */
  olderThanMs: number;
  bucketMs: number;
  /** Rows looked at per pass, so one pass never holds the writer (or the event loop) for long. */
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
 * - Only whole buckets are folded: the cutoff is aligned to a bucket boundary, and a bucket cut by
 *   the row limit waits for the next pass. A bucket folded once is never folded again.
 * - Rows already looked at are not read again (a watermark seq), and aggregates are left out in SQL,
 *   so a pass costs the new rows only.
 * - An aggregate replaces its rows only when it is smaller than they are (with `min` and `max` it is
 *   about three samples' worth: two-row buckets are not worth folding).
 * - An aggregate takes the seq of the LAST row it replaces: if the first rows of its bucket were
 *   already on their way to the broker, their late PUBACK deletes a range that ends before it, so it
 *   survives and is sent (the consumer may see some samples twice, and never loses one). The other
 *   seqs of the bucket become gaps that its `aggregate.fromSeq`/`toSeq` explain.
 */
export function createTelemetryDownsampler(options: DownsampleOptions) {
  const { db, bucketMs } = options;
  const select = db.prepare<
    [number, number, number],
    { seq: number; ts: number; body: string; bytes: number }
  >(
    `SELECT seq, ts, body, bytes FROM outbox_telemetry
     WHERE seq > ? AND ts < ? AND json_extract(body, '$.aggregate') IS NULL
     ORDER BY seq LIMIT ?`,
  );
  const remove = db.prepare<[number]>("DELETE FROM outbox_telemetry WHERE seq = ?");
  const insert = db.prepare<[number, number, string, number]>(
    "INSERT INTO outbox_telemetry (seq, ts, body, bytes) VALUES (?, ?, ?, ?)",
  );
  let watermark = 0;

  const pass = db.transaction((now: number): DownsampleResult => {
    const cutoff = Math.floor((now - options.olderThanMs) / bucketMs) * bucketMs;
    let selected = select.all(watermark, cutoff, options.maxRows);
    if (selected.length === options.maxRows) {
      // The limit may have cut the last bucket: leave it whole for the next pass.
      const lastBucket = Math.floor((selected.at(-1)?.ts ?? 0) / bucketMs);
      const kept = selected.filter((row) => Math.floor(row.ts / bucketMs) !== lastBucket);
      if (kept.length > 0) selected = kept;
    }
    const bytes = new Map<number, number>();
    const rows: TelemetryRow[] = [];
    for (const row of selected) {
      watermark = Math.max(watermark, row.seq);
      bytes.set(row.seq, row.bytes);
      try {
        rows.push({ seq: row.seq, ts: row.ts, body: JSON.parse(row.body) as Record<string, unknown> });
      } catch {
        // A row that is not JSON is left as it is; the publisher sends what it can.
      }
    }
    const result: DownsampleResult = { folded: 0, aggregates: 0, freedBytes: 0 };
    for (const aggregate of aggregateTelemetry(rows, bucketMs)) {
      const json = JSON.stringify(aggregate.body);
      const cost = rowCost(Buffer.byteLength(json));
      const replaced = aggregate.replaces.reduce((sum, seq) => sum + (bytes.get(seq) ?? 0), 0);
      if (cost >= replaced) continue;
      for (const seq of aggregate.replaces) remove.run(seq);
      insert.run(Math.max(...aggregate.replaces), aggregate.ts, json, cost);
      result.folded += aggregate.replaces.length;
      result.aggregates += 1;
      result.freedBytes += replaced - cost;
    }
    return result;
  });

  return {
    /** One pass over telemetry not looked at yet; call again while it still frees space. */
    run(now: number): DownsampleResult {
      return pass(now);
    },
  };
}
