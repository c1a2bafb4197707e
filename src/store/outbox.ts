import type { Database } from "better-sqlite3";
import { AgentError, isDiskFull } from "../shared/errors.js";
import type { CountersFile } from "./counters-file.js";

export const STREAMS = ["telemetry", "events", "logs"] as const;
export type Stream = (typeof STREAMS)[number];

/** When the quota is reached the oldest telemetry goes first, then logs, and events last (CONTRACT 4). */
export const DROP_ORDER: readonly Stream[] = ["telemetry", "logs", "events"];

/**
 * Bytes a row costs on disk beyond its JSON body: rowid, ts, stream, bytes, cell pointer and the
 * (stream, seq) index entry. Measured with test/integration/outbox-quota.test.ts against real files.
 */
export const ROW_OVERHEAD_BYTES = 64;

export interface RecordInput {
  stream: Stream;
  ts: number;
  /** The record's fields other than seq and ts; stored as JSON text. */
  body: Record<string, unknown>;
}

export interface StoredRecord {
  seq: number;
  stream: Stream;
  ts: number;
  /** JSON object text without seq and ts. */
  body: string;
}

export interface AppendResult {
  firstSeq: number;
  lastSeq: number;
  /** Records dropped by this append to make room, per stream. */
  dropped: Record<Stream, number>;
}

export interface StreamStats {
  records: number;
  bytes: number;
  dropped: number;
}

export interface OutboxStats {
  records: number;
  bytes: number;
  oldestTs: number | undefined;
  lastSeq: number;
  streams: Record<Stream, StreamStats>;
}

export interface OutboxOptions {
  db: Database;
  counters: CountersFile;
  maxBytes: number;
  /** A record larger than this could never be published inside one message. */
  maxRecordBytes: number;
  /** Fresh database on a device that already handed out seqs: continue above the reservation. */
  continueSeqFrom?: number;
}

const SEQ_RESERVE_BLOCK = 100_000;
const DROP_CHUNK = 256;

export type Outbox = ReturnType<typeof createOutbox>;

export function createOutbox(options: OutboxOptions) {
  const { db, counters, maxBytes, maxRecordBytes } = options;

  const insert = db.prepare<[string, number, string, number]>(
    "INSERT INTO outbox (stream, ts, body, bytes) VALUES (?, ?, ?, ?)",
  );
  const oldestOfStream = db.prepare<[string, number], { seq: number; bytes: number }>(
    "SELECT seq, bytes FROM outbox WHERE stream = ? ORDER BY seq LIMIT ?",
  );
  const deleteUpTo = db.prepare<[string, number]>("DELETE FROM outbox WHERE stream = ? AND seq <= ?");
  const addDropped = db.prepare<[number, string]>(
    "UPDATE outbox_stats SET dropped = dropped + ? WHERE stream = ?",
  );
  const totalBytes = db.prepare<[], { bytes: number }>("SELECT SUM(bytes) AS bytes FROM outbox_stats");
  const streamStats = db.prepare<[], { stream: Stream } & StreamStats>(
    "SELECT stream, records, bytes, dropped FROM outbox_stats",
  );
  const oldest = db.prepare<[], { ts: number }>("SELECT ts FROM outbox ORDER BY seq LIMIT 1");
  const lastSeqQuery = db.prepare<[], { seq: number }>(
    "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
  );
  const pageSizes = db.prepare<[number, number], { seq: number; bytes: number }>(
    "SELECT seq, bytes FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
  );
  const pageRows = db.prepare<[number, number], StoredRecord>(
    "SELECT seq, stream, ts, body FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq",
  );
  const deleteRange = db.prepare<[string, number, number]>(
    "DELETE FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ?",
  );

  const listeners = new Set<() => void>();

  const lastSeq = () => lastSeqQuery.get()?.seq ?? 0;

  if (options.continueSeqFrom !== undefined && options.continueSeqFrom > lastSeq()) {
    db.prepare("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)").run(
      options.continueSeqFrom,
    );
  }
  let reserve = Math.max(counters.read().seqReserve, lastSeq());

  /** The reservation on disk always covers every seq the database may hand out. */
  function reserveSeqs(count: number): void {
    const needed = lastSeq() + count;
    if (needed <= reserve) return;
    const state = counters.read();
    reserve = needed + SEQ_RESERVE_BLOCK;
    counters.write({ ...state, seqReserve: reserve });
  }

  /** Drops oldest records in DROP_ORDER until `needed` more bytes fit; inside the caller's transaction. */
  function makeRoom(needed: number, dropped: Record<Stream, number>): void {
    let used = totalBytes.get()?.bytes ?? 0;
    for (const stream of DROP_ORDER) {
      while (used + needed > maxBytes) {
        const victims = oldestOfStream.all(stream, DROP_CHUNK);
        if (victims.length === 0) break;
        let upTo = 0;
        let count = 0;
        for (const victim of victims) {
          upTo = victim.seq;
          used -= victim.bytes;
          count += 1;
          if (used + needed <= maxBytes) break;
        }
        deleteUpTo.run(stream, upTo);
        addDropped.run(count, stream);
        dropped[stream] += count;
      }
    }
  }

  const appendTx = db.transaction(
    (rows: ReadonlyArray<{ stream: Stream; ts: number; json: string; bytes: number }>) => {
      const needed = rows.reduce((sum, row) => sum + row.bytes, 0);
      const dropped: Record<Stream, number> = { telemetry: 0, events: 0, logs: 0 };
      makeRoom(needed, dropped);
      let firstSeq = 0;
      let last = 0;
      for (const row of rows) {
        last = Number(insert.run(row.stream, row.ts, row.json, row.bytes).lastInsertRowid);
        if (firstSeq === 0) firstSeq = last;
      }
      return { firstSeq, lastSeq: last, dropped };
    },
  );

  return {
    /**
     * Commits records (all or none) and returns their seqs. Returns only after the commit is durable
     * (synchronous=FULL), so a caller may acknowledge its producer.
     */
    append(records: readonly RecordInput[]): AppendResult {
      if (records.length === 0) {
        return { firstSeq: 0, lastSeq: 0, dropped: { telemetry: 0, events: 0, logs: 0 } };
      }
      let total = 0;
      const rows = records.map((record, index) => {
        const { seq: _seq, ts: _ts, historical: _historical, ...fields } = record.body;
        const json = JSON.stringify(fields);
        const bytes = Buffer.byteLength(json) + ROW_OVERHEAD_BYTES;
        if (bytes > maxRecordBytes) {
          throw new AgentError(
            "TOO_LARGE",
            `record [${index}] is ${bytes} bytes; the limit is ${maxRecordBytes}`,
            {
              details: { index },
            },
          );
        }
        total += bytes;
        return { stream: record.stream, ts: record.ts, json, bytes };
      });
      if (total > maxBytes) {
        throw new AgentError(
          "TOO_LARGE",
          `batch of ${total} bytes exceeds the outbox quota of ${maxBytes} bytes`,
        );
      }
      let result: AppendResult;
      try {
        reserveSeqs(rows.length);
        result = appendTx(rows);
      } catch (error) {
        if (isDiskFull(error)) {
          throw new AgentError("DISK_FULL", "the disk is full; records were not stored", {
            retryable: true,
            cause: error,
          });
        }
        throw error;
      }
      for (const listener of listeners) listener();
      return result;
    },

    /**
     * Oldest first, after `afterSeq`, at most `limit` rows and about `maxBytes` (always at least one
     * row): the publisher pages through a backlog of any size with flat memory.
     */
    readAfter(afterSeq: number, limit: number, maxBytes: number): StoredRecord[] {
      const sizes = pageSizes.all(afterSeq, limit);
      let upTo = afterSeq;
      let bytes = 0;
      for (const row of sizes) {
        if (upTo !== afterSeq && bytes + row.bytes > maxBytes) break;
        bytes += row.bytes;
        upTo = row.seq;
      }
      return upTo === afterSeq ? [] : pageRows.all(afterSeq, upTo);
    },

    /** Deletes a published batch; returns how many rows were still there (quota drops may have won). */
    remove(stream: Stream, fromSeq: number, toSeq: number): number {
      return deleteRange.run(stream, fromSeq, toSeq).changes;
    },

    /** Several acknowledged batches in one durable transaction. */
    removeMany: db.transaction(
      (ranges: ReadonlyArray<{ stream: Stream; fromSeq: number; toSeq: number }>) => {
        let removed = 0;
        for (const range of ranges)
          removed += deleteRange.run(range.stream, range.fromSeq, range.toSeq).changes;
        return removed;
      },
    ),

    /** Deletes a batch the broker refused for good, counting it as dropped (never silently). */
    discard: db.transaction((stream: Stream, fromSeq: number, toSeq: number) => {
      const removed = deleteRange.run(stream, fromSeq, toSeq).changes;
      addDropped.run(removed, stream);
      return removed;
    }),

    stats(): OutboxStats {
      return readStats(streamStats.all(), oldest.get()?.ts, lastSeq());
    },

    lastSeq,

    /** Called after every successful append (the publisher wakes up on it). */
    onAppend(listener: () => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export function readStats(
  rows: ReadonlyArray<{ stream: Stream } & StreamStats>,
  oldestTs: number | undefined,
  lastSeq: number,
): OutboxStats {
  const streams: Record<Stream, StreamStats> = {
    telemetry: { records: 0, bytes: 0, dropped: 0 },
    events: { records: 0, bytes: 0, dropped: 0 },
    logs: { records: 0, bytes: 0, dropped: 0 },
  };
  let records = 0;
  let bytes = 0;
  for (const row of rows) {
    streams[row.stream] = { records: row.records, bytes: row.bytes, dropped: row.dropped };
    records += row.records;
    bytes += row.bytes;
  }
  return { records, bytes, oldestTs, lastSeq, streams };
}

/** The same numbers from a read-only connection, for `pos-agent status` beside a running daemon. */
export function readOutboxStats(db: Database): OutboxStats {
  const rows = db
    .prepare<[], { stream: Stream } & StreamStats>("SELECT stream, records, bytes, dropped FROM outbox_stats")
    .all();
  const oldestRow = db.prepare<[], { ts: number }>("SELECT ts FROM outbox ORDER BY seq LIMIT 1").get();
  const seqRow = db
    .prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
    .get();
  return readStats(rows, oldestRow?.ts, seqRow?.seq ?? 0);
}
