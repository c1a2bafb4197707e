import type { Database } from "better-sqlite3";

/**
 * The archive of recent logs and events (migration step 3): copies of outbox rows, written by
 * triggers in the same transaction, kept after the broker has the originals, pruned by the outbox to
 * its own byte limit. Bodies are the outbox's, so they were scrubbed of card data before they got here.
 */

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogFilter {
  /** ms since the epoch, inclusive. */
  since?: number;
  /** ms since the epoch, inclusive. */
  until?: number;
  /** This level and the more severe ones. */
  level?: LogLevel;
  source?: string;
  /** Substring of the line, ASCII case-insensitive. */
  text?: string;
}

export interface ArchivedRow {
  seq: number;
  ts: number;
  /** The record's JSON fields other than seq and ts. */
  body: string;
}

export type ArchiveStream = "logs" | "events";

export type LogArchive = ReturnType<typeof createLogArchive>;

export function createLogArchive(db: Database) {
  const matching = db.prepare<
    {
      after: number;
      upTo: number;
      since: number;
      until: number;
      level: number;
      source: string | null;
      text: string | null;
      limit: number;
    },
    ArchivedRow
  >(`
    SELECT seq, ts, body FROM archive
    WHERE seq > :after AND seq <= :upTo AND stream = 'logs'
      AND ts >= :since AND ts <= :until
      AND (:level >= 3 OR (CASE json_extract(body, '$.level')
            WHEN 'error' THEN 0 WHEN 'warn' THEN 1 WHEN 'info' THEN 2 ELSE 3 END) <= :level)
      AND (:source IS NULL OR json_extract(body, '$.source') = :source)
      AND (:text IS NULL OR instr(lower(json_extract(body, '$.line')), :text) > 0)
    ORDER BY seq LIMIT :limit`);
  const newest = db.prepare<[], { seq: number | null }>("SELECT MAX(seq) AS seq FROM archive");
  const oldest = db.prepare<[], { seq: number | null }>("SELECT MIN(seq) AS seq FROM archive");
  const sizesDescending = db.prepare<[ArchiveStream, number, number, number], { seq: number; bytes: number }>(
    "SELECT seq, bytes FROM archive WHERE stream = ? AND seq < ? AND ts >= ? ORDER BY seq DESC LIMIT ?",
  );
  const rowsAscending = db.prepare<[ArchiveStream, number, number, number], ArchivedRow>(
    "SELECT seq, ts, body FROM archive WHERE stream = ? AND seq > ? AND ts >= ? ORDER BY seq LIMIT ?",
  );
  const stats = db.prepare<[], { records: number; bytes: number }>(
    "SELECT records, bytes FROM archive_stats WHERE id = 1",
  );

  return {
    /**
     * Log rows matching the filter with seq in (after, upTo], oldest first, at most `limit`. Callers
     * page through the archive a window of seqs at a time, so no single call scans it all.
     */
    logs(filter: LogFilter, after: number, upTo: number, limit: number): ArchivedRow[] {
      return matching.all({
        after,
        upTo,
        since: filter.since ?? Number.MIN_SAFE_INTEGER,
        until: filter.until ?? Number.MAX_SAFE_INTEGER,
        level: LOG_LEVELS.indexOf(filter.level ?? "debug"),
        source: filter.source ?? null,
        text: filter.text === undefined ? null : asciiLower(filter.text),
        limit,
      });
    },

    /** The seq range held, or undefined when empty. */
    range(): { first: number; last: number } | undefined {
      const first = oldest.get()?.seq;
      const last = newest.get()?.seq;
      return first === null || first === undefined || last === null || last === undefined
        ? undefined
        : { first, last };
    },

    /**
     * Where to start so that the newest rows of a stream since `since` fit in `budgetBytes` (counted
     * as stored): the seq to read after, and whether older rows were left out.
     */
    startForBudget(
      stream: ArchiveStream,
      since: number,
      budgetBytes: number,
    ): { after: number; cut: boolean } {
      let before = Number.MAX_SAFE_INTEGER;
      let used = 0;
      for (;;) {
        const rows = sizesDescending.all(stream, before, since, 1024);
        for (const row of rows) {
          if (used + row.bytes > budgetBytes) return { after: row.seq, cut: true };
          used += row.bytes;
          before = row.seq;
        }
        if (rows.length < 1024) return { after: 0, cut: false };
      }
    },

    /** Up to `limit` rows of a stream after `after` with ts ≥ since, oldest first. */
    rowsAfter(stream: ArchiveStream, after: number, since: number, limit: number): ArchivedRow[] {
      return rowsAscending.all(stream, after, since, limit);
    },

    stats(): { records: number; bytes: number } {
      return stats.get() ?? { records: 0, bytes: 0 };
    },
  };
}

/** SQLite's lower() folds ASCII only; the needle must be folded the same way to match. */
function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}
