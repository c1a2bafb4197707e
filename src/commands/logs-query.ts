import { setImmediate as nextTurn } from "node:timers/promises";
import { z } from "zod";
import { LOG_LEVELS, type LogArchive, type LogFilter } from "../store/log-archive.js";
import type { CommandHandler } from "./command.js";

/** A time as ms since the epoch or an ISO 8601 string. */
const Time = z.union([z.int().min(0), z.iso.datetime({ offset: true }).transform((iso) => Date.parse(iso))]);

export const LogsQueryArgs = z
  .strictObject({
    since: Time.optional(),
    until: Time.optional(),
    level: z.enum(LOG_LEVELS).optional(),
    source: z.string().min(1).max(128).optional(),
    text: z.string().min(1).max(256).optional(),
    limit: z.int().min(1).max(1000).default(100),
    /** `nextCursor` of the previous answer; opaque to the caller. */
    cursor: z
      .string()
      .regex(/^\d{1,16}$/, "must be the nextCursor of an earlier answer")
      .optional(),
  })
  .refine((args) => args.since === undefined || args.until === undefined || args.since <= args.until, {
    message: "must not be before since",
    path: ["until"],
  });
export type LogsQueryArgs = z.infer<typeof LogsQueryArgs>;

/**
 * Room the response keeps for everything but the records: `{"v","id" (≤128),"deviceId" (≤64),"status",
 * "ts","result":{"records":[…],"nextCursor"}}` is under 400 bytes. A record body is at most
 * maxMessageBytes − 512 (transport/batch.ts), so any one record always fits on its own.
 */
const RESPONSE_RESERVE = 440;
/** Seqs looked at per SQLite call; the event loop runs between calls. */
const WINDOW = 4096;
/** An answer with nothing found yet stops scanning after this long and hands back a cursor. */
const SCAN_BUDGET_MS = 1500;

/**
 * `logs.query`: archived log lines matching the filters, oldest first, as many as fit in one response
 * message. `nextCursor` is present while more may follow; pass it back to continue.
 */
export function createLogsQueryHandler(deps: {
  archive: Pick<LogArchive, "logs" | "range">;
  maxMessageBytes: number;
  monotonic: () => number;
}): CommandHandler<LogsQueryArgs> {
  const budget = deps.maxMessageBytes - RESPONSE_RESERVE;
  return {
    name: "logs.query",
    args: LogsQueryArgs,
    async run(args, context) {
      const filter: LogFilter = {
        ...(args.since === undefined ? {} : { since: args.since }),
        ...(args.until === undefined ? {} : { until: args.until }),
        ...(args.level === undefined ? {} : { level: args.level }),
        ...(args.source === undefined ? {} : { source: args.source }),
        ...(args.text === undefined ? {} : { text: args.text }),
      };
      const range = deps.archive.range();
      const records: string[] = [];
      let used = 0;
      let after = args.cursor === undefined ? 0 : Number(args.cursor);
      const startedAt = deps.monotonic();
      let more = range !== undefined && after < range.last;
      while (more && records.length < args.limit && range !== undefined) {
        context.signal.throwIfAborted();
        const upTo = Math.min(Math.max(after, range.first - 1) + WINDOW, range.last);
        const rows = deps.archive.logs(filter, after, upTo, args.limit - records.length);
        let full = false;
        for (const row of rows) {
          const json = recordJson(row);
          const size = Buffer.byteLength(json) + 1;
          if (records.length > 0 && used + size > budget) {
            full = true;
            break;
          }
          records.push(json);
          used += size;
          after = row.seq;
        }
        if (full || records.length === args.limit) break;
        after = upTo;
        more = after < range.last;
        if (more && records.length === 0 && deps.monotonic() - startedAt > SCAN_BUDGET_MS) break;
        if (more) await nextTurn();
      }
      more = range !== undefined && after < range.last;
      // Parsed back so the dispatcher sends one JSON document; each record is at most one message.
      return {
        records: records.map((json) => JSON.parse(json) as unknown),
        ...(more ? { nextCursor: String(after) } : {}),
      };
    },
  };
}

function recordJson(row: { seq: number; ts: number; body: string }): string {
  const head = `{"seq":${row.seq},"ts":${row.ts}`;
  return row.body === "{}" ? `${head}}` : `${head},${row.body.slice(1)}`;
}
