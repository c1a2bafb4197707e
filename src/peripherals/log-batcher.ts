import { isAgentError } from "../shared/errors.js";
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
    let records = waiting;
    waiting = [];
    // The append is all or none; one line too large for a message must not take the others with it.
    for (;;) {
      try {
        options.append(records);
        return;
      } catch (error) {
        const index = isAgentError(error) && error.code === "TOO_LARGE" ? error.details?.index : undefined;
        if (typeof index === "number" && records.length > 1) {
          failed += 1;
          options.log.warn(
            { bytes: error instanceof Error ? error.message : "" },
            "captured line too large for one message; dropped",
          );
          records = records.filter((_, i) => i !== index);
          continue;
        }
        // A full quota is counted by the outbox as dropped; anything else is counted here.
        if (!(isAgentError(error) && error.code === "DISK_FULL")) failed += records.length;
        options.log.error({ err: error, records: records.length }, "could not store captured lines");
        return;
      }
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
