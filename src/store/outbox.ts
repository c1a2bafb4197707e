import type { Database, Statement } from "better-sqlite3";
import { AgentError, isDiskFull } from "../shared/errors.js";
import type { CountersFile } from "./counters-file.js";

export const STREAMS = ["telemetry", "events", "logs"] as const;
export type Stream = (typeof STREAMS)[number];

/** One number per stream, e.g. `countsPerStream(() => 0)`. */
export function countsPerStream(value: (stream: Stream) => number): Record<Stream, number> {
  return { telemetry: value("telemetry"), events: value("events"), logs: value("logs") };
}

/** When the quota is reached the oldest telemetry goes first, then logs, and events last (CONTRACT 4). */
export const DROP_ORDER: readonly Stream[] = ["telemetry", "logs", "events"];

const PAGE_SIZE = 4096;
/** A table leaf page holds at most this much of one row; the rest goes to overflow pages (SQLite file format 1.6). */
const MAX_LOCAL = PAGE_SIZE - 35;
const MIN_LOCAL = Math.floor(((PAGE_SIZE - 12) * 32) / 255) - 23;
/** Cell header, rowid, ts and bytes columns, and the 2-byte cell pointer. */
export const ROW_OVERHEAD_BYTES = 32;

/**
 * What a row costs on disk, so the quota holds for the file and not only for the JSON: the cell, the
 * space a page leaves unused when the next cell does not fit (half a cell per page on average, for an
 * append-only table), and whole overflow pages for rows larger than a page.
 */
export function rowCost(bodyBytes: number): number {
  const cell = bodyBytes + ROW_OVERHEAD_BYTES;
  if (cell <= MAX_LOCAL) return cell + Math.ceil((cell * cell) / (2 * PAGE_SIZE));
  const spill = MIN_LOCAL + ((cell - MIN_LOCAL) % (PAGE_SIZE - 4));
  const local = spill <= MAX_LOCAL ? spill : MIN_LOCAL;
  const overflowPages = Math.ceil((cell - local) / (PAGE_SIZE - 4));
  return local + Math.ceil((local * local) / (2 * PAGE_SIZE)) + overflowPages * PAGE_SIZE;
}

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
  /** A record whose JSON is larger than this could never be published inside one message. */
  maxRecordBytes: number;
  /**
   * Copies of logs and events kept after publishing (log-archive.ts), inside maxBytes: they use only
   * room the outbox does not need, at most this much; the oldest go first. Default: a quarter of maxBytes.
   */
  archiveMaxBytes?: number;
}

const SEQ_RESERVE_BLOCK = 100_000;
/** Below this the database's fixed pages (schema, meta) would dominate the disk/estimate ratio. */
const CALIBRATE_AFTER_BYTES = 256 * 1024;
const DROP_CHUNK = 256;
/** Pruning takes the archive this far below its limit, so it runs once per many appends, not each one. */
const ARCHIVE_PRUNE_TO = 0.9;

export type Outbox = ReturnType<typeof createOutbox>;

class OutboxFull extends Error {}

export function createOutbox(options: OutboxOptions) {
  const { db, counters, maxBytes, maxRecordBytes } = options;
  const archiveMaxBytes = options.archiveMaxBytes ?? Math.floor(maxBytes / 4);

  const perStream = (sql: (table: string) => string) =>
    Object.fromEntries(STREAMS.map((stream) => [stream, db.prepare(sql(`outbox_${stream}`))])) as Record<
      Stream,
      Statement
    >;
  const insert = perStream((t) => `INSERT INTO ${t} (seq, ts, body, bytes) VALUES (?, ?, ?, ?)`);
  const oldestOf = perStream((t) => `SELECT seq, bytes FROM ${t} ORDER BY seq LIMIT ?`);
  const deleteUpTo = perStream((t) => `DELETE FROM ${t} WHERE seq <= ?`);
  const deleteRange = perStream((t) => `DELETE FROM ${t} WHERE seq BETWEEN ? AND ?`);
  const sizesAfter = perStream((t) => `SELECT seq, bytes FROM ${t} WHERE seq > ? ORDER BY seq LIMIT ?`);
  const rowsBetween = perStream(
    (t) => `SELECT seq, ts, body FROM ${t} WHERE seq > ? AND seq <= ? ORDER BY seq`,
  );
  const addDropped = db.prepare<[number, string]>(
    "UPDATE outbox_stats SET dropped = dropped + ? WHERE stream = ?",
  );
  const totalBytes = db.prepare<[], { bytes: number }>("SELECT SUM(bytes) AS bytes FROM outbox_stats");
  const archiveBytesQuery = db.prepare<[], { bytes: number }>("SELECT bytes FROM archive_stats WHERE id = 1");
  const archiveOldest = db.prepare<[number], { seq: number; bytes: number }>(
    "SELECT seq, bytes FROM archive ORDER BY seq LIMIT ?",
  );
  const archiveDeleteUpTo = db.prepare<[number]>("DELETE FROM archive WHERE seq <= ?");
  const archiveBytes = () => archiveBytesQuery.get()?.bytes ?? 0;
  const lastSeqQuery = db.prepare<[], { last: number }>("SELECT last FROM outbox_seq WHERE id = 1");
  const setLastSeq = db.prepare<[number]>("UPDATE outbox_seq SET last = ? WHERE id = 1");

  const listeners = new Set<() => void>();
  const lastSeq = () => lastSeqQuery.get()?.last ?? 0;

  // A database that never handed out a seq, on a device whose counters file reserved some, was
  // recreated (quarantine, deletion, or a stop between creating it and the first append): continue
  // above the reservation so no seq comes back.
  if (lastSeq() === 0) {
    const reserved = counters.read().seqReserve;
    if (reserved > 0) setLastSeq.run(reserved);
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

  /**
   * How much more space the file takes than rowCost() counts. rowCost() is an estimate (page packing
   * depends on the mix of row sizes); the file's own page count is the truth. Only trusted once the
   * outbox fills enough pages for the ratio to mean something.
   */
  function diskRatio(accounted: number): number {
    if (accounted < CALIBRATE_AFTER_BYTES) return 1;
    const pages =
      (db.pragma("page_count", { simple: true }) as number) -
      (db.pragma("freelist_count", { simple: true }) as number);
    return Math.max(1, (pages * PAGE_SIZE) / accounted);
  }

  /** The quota in accounted bytes, corrected by the file's real size; the archive's copies count too. */
  function currentLimit(used: number): number {
    return maxBytes / diskRatio(used + archiveBytes());
  }

  /**
   * Drops oldest records in DROP_ORDER until `needed` more bytes fit, taking only from streams that
   * rank no higher than what is being added (telemetry never evicts an event). Archived copies yield
   * first: they only use room the outbox does not need. Inside the caller's transaction; returns the
   * limit it worked to, or undefined if there is no room even so.
   */
  function makeRoom(needed: number, rank: number, dropped: Record<Stream, number>): number | undefined {
    let used = totalBytes.get()?.bytes ?? 0;
    const limit = currentLimit(used);
    const archived = trimArchive(limit - used - needed, archiveBytes());
    for (const stream of DROP_ORDER.slice(0, rank + 1)) {
      while (used + needed + archived > limit) {
        const victims = oldestOf[stream].all(DROP_CHUNK) as Array<{ seq: number; bytes: number }>;
        if (victims.length === 0) break;
        let upTo = 0;
        let count = 0;
        for (const victim of victims) {
          upTo = victim.seq;
          used -= victim.bytes;
          count += 1;
          if (used + needed + archived <= limit) break;
        }
        deleteUpTo[stream].run(upTo);
        addDropped.run(count, stream);
        dropped[stream] += count;
      }
    }
    return used + needed + archived <= limit ? limit : undefined;
  }

  const appendTx = db.transaction(
    (rows: ReadonlyArray<{ stream: Stream; ts: number; json: string; bytes: number }>) => {
      const needed = rows.reduce((sum, row) => sum + row.bytes, 0);
      const rank = Math.max(...rows.map((row) => DROP_ORDER.indexOf(row.stream)));
      const dropped = countsPerStream(() => 0);
      const limit = makeRoom(needed, rank, dropped);
      if (limit === undefined) throw new OutboxFull();
      const firstSeq = lastSeq() + 1;
      let seq = firstSeq - 1;
      for (const row of rows) {
        seq += 1;
        insert[row.stream].run(seq, row.ts, row.json, row.bytes);
      }
      setLastSeq.run(seq);
      pruneArchive(limit);
      return { firstSeq, lastSeq: seq, dropped };
    },
  );

  /**
   * After an append: the batch's own copies may have taken the archive past its limit or past the room
   * the outbox leaves; the oldest copies go. Inside the append's transaction.
   */
  function pruneArchive(limit: number): void {
    const room = limit - (totalBytes.get()?.bytes ?? 0);
    const bytes = archiveBytes();
    if (bytes > archiveMaxBytes) trimArchive(Math.min(room, archiveMaxBytes * ARCHIVE_PRUNE_TO), bytes);
    else if (bytes > room) trimArchive(room, bytes);
  }

  /** Deletes the oldest archived copies until at most `target` bytes remain; returns what remains. */
  function trimArchive(target: number, archived: number): number {
    let bytes = archived;
    while (bytes > target) {
      const oldest = archiveOldest.all(DROP_CHUNK);
      if (oldest.length === 0) break;
      let upTo = 0;
      for (const row of oldest) {
        upTo = row.seq;
        bytes -= row.bytes;
        if (bytes <= target) break;
      }
      archiveDeleteUpTo.run(upTo);
    }
    return Math.max(0, bytes);
  }

  /** Records refused for want of room are lost all the same: they count as dropped. */
  const countRefused = db.transaction((rows: ReadonlyArray<{ stream: Stream }>) => {
    for (const stream of STREAMS) {
      const count = rows.filter((row) => row.stream === stream).length;
      if (count > 0) addDropped.run(count, stream);
    }
  });

  const removeManyTx = db.transaction(
    (ranges: ReadonlyArray<{ stream: Stream; fromSeq: number; toSeq: number }>) => {
      let removed = 0;
      for (const range of ranges)
        removed += deleteRange[range.stream].run(range.fromSeq, range.toSeq).changes;
      return removed;
    },
  );

  const discardTx = db.transaction((stream: Stream, fromSeq: number, toSeq: number) => {
    const removed = deleteRange[stream].run(fromSeq, toSeq).changes;
    addDropped.run(removed, stream);
    return removed;
  });

  return {
    /**
     * Commits records (all or none) and returns their seqs. Returns only after the commit is durable
     * (synchronous=FULL), so a caller may acknowledge its producer.
     */
    append(records: readonly RecordInput[]): AppendResult {
      if (records.length === 0) {
        return { firstSeq: 0, lastSeq: 0, dropped: countsPerStream(() => 0) };
      }
      let total = 0;
      const rows = records.map((record, index) => {
        const { seq: _seq, ts: _ts, historical: _historical, ...fields } = record.body;
        const json = JSON.stringify(fields);
        const size = Buffer.byteLength(json);
        if (size > maxRecordBytes) {
          throw new AgentError(
            "TOO_LARGE",
            `record [${index}] is ${size} bytes; the limit is ${maxRecordBytes}`,
            {
              details: { index, size, limit: maxRecordBytes },
            },
          );
        }
        const bytes = rowCost(size);
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
        if (error instanceof OutboxFull) {
          countRefused(rows);
          throw new AgentError(
            "DISK_FULL",
            `the outbox quota of ${maxBytes} bytes is taken by records of higher priority; ${rows.length} records refused`,
            { retryable: true },
          );
        }
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
     * Oldest first over all streams, after `afterSeq`, at most `limit` rows and about `maxBytes`
     * (always at least one row): the publisher pages through a backlog of any size with flat memory.
     */
    readAfter(afterSeq: number, limit: number, maxBytes: number): StoredRecord[] {
      const sizes = mergeBySeq(
        STREAMS.map(
          (stream) => sizesAfter[stream].all(afterSeq, limit) as Array<{ seq: number; bytes: number }>,
        ),
      );
      let upTo = afterSeq;
      let bytes = 0;
      let count = 0;
      for (const row of sizes) {
        if (count === limit || (upTo !== afterSeq && bytes + row.bytes > maxBytes)) break;
        bytes += row.bytes;
        upTo = row.seq;
        count += 1;
      }
      if (upTo === afterSeq) return [];
      return mergeBySeq(
        STREAMS.map((stream) =>
          (rowsBetween[stream].all(afterSeq, upTo) as Array<Omit<StoredRecord, "stream">>).map((row) => ({
            ...row,
            stream,
          })),
        ),
      );
    },

    /** Deletes acknowledged batches in one durable transaction; returns how many rows were still there. */
    removeMany(ranges: ReadonlyArray<{ stream: Stream; fromSeq: number; toSeq: number }>): number {
      return removeManyTx(ranges);
    },

    /** Deletes a batch the broker refused for good, counting it as dropped (never silently). */
    discard(stream: Stream, fromSeq: number, toSeq: number): number {
      return discardTx(stream, fromSeq, toSeq);
    },

    stats: createStatsReader(db),

    /**
     * How full the outbox is against the limit the drop order uses (the quota corrected by the file's
     * real size), 0 to 1: what downsampling and alerts should compare with, not the raw byte count.
     */
    pressure(): number {
      const used = totalBytes.get()?.bytes ?? 0;
      return used / currentLimit(used);
    },

    lastSeq,

    /** Called after every successful append (the publisher wakes up on it). */
    onAppend(listener: () => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Merges lists that are each sorted by seq into one sorted list. */
function mergeBySeq<T extends { seq: number }>(lists: ReadonlyArray<readonly T[]>): T[] {
  return lists.flat().sort((a, b) => a.seq - b.seq);
}

function readStats(
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

/**
 * The outbox's numbers from prepared statements; the daemon keeps one reader, and `pos-agent status`
 * makes one on a read-only connection beside the running daemon.
 */
export function createStatsReader(db: Database): () => OutboxStats {
  const totals = db.prepare<[], { stream: Stream } & StreamStats>(
    "SELECT stream, records, bytes, dropped FROM outbox_stats",
  );
  const oldest = STREAMS.map((stream) =>
    db.prepare<[], { seq: number; ts: number }>(`SELECT seq, ts FROM outbox_${stream} ORDER BY seq LIMIT 1`),
  );
  const last = db.prepare<[], { last: number }>("SELECT last FROM outbox_seq WHERE id = 1");
  return () => {
    let first: { seq: number; ts: number } | undefined;
    for (const statement of oldest) {
      const row = statement.get();
      if (row !== undefined && (first === undefined || row.seq < first.seq)) first = row;
    }
    return readStats(totals.all(), first?.ts, last.get()?.last ?? 0);
  };
}
