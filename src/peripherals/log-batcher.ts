import type { Logger } from "../shared/logger.js";

export interface LogRecord {
  ts: number;
  body: Record<string, unknown>;
}

export interface LogBatcherOptions {
  /** Commits records all or none (the outbox); throws on a full disk or quota. */
  append(records: readonly LogRecord[]): void;
  maxRecords: number;
  maxDelayMs: number;
  log: Logger;
}

/**
 * Group commit for captured lines: with `synchronous=FULL` every commit is an fsync, and a chatty
 * peripheral can write thousands of lines a second. Lines wait at most `maxDelayMs` (or until
 * `maxRecords` are waiting) and go in one transaction. A crash loses at most that window, which the
 * device never saw acknowledged anyway; a failed append is logged and counted, never retried forever.
 */
export function createLogBatcher(options: LogBatcherOptions) {
  let waiting: LogRecord[] = [];
  let timer: NodeJS.Timeout | undefined;
  let failed = 0;

  function flush(): void {
    clearTimeout(timer);
    timer = undefined;
    if (waiting.length === 0) return;
    const records = waiting;
    waiting = [];
    try {
      options.append(records);
    } catch (error) {
      // The outbox counts what it refuses for quota; this is the count of the lines we lost here.
      failed += records.length;
      options.log.error({ err: error, records: records.length }, "could not store captured lines");
    }
  }

  return {
    add(record: LogRecord): void {
      waiting.push(record);
      if (waiting.length >= options.maxRecords) flush();
      else timer ??= setTimeout(flush, options.maxDelayMs);
    },
    flush,
    get failed(): number {
      return failed;
    },
  };
}
export type LogBatcher = ReturnType<typeof createLogBatcher>;
