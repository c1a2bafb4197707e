import { createReplySplitter, type EscPosReply } from "../protocols/escpos-replies.js";
import {
  dleEotRequest,
  ENABLE_ASB,
  type NormalisedStatus,
  statusFromAsb,
  statusFromDleEot,
  statusWithoutReply,
} from "../protocols/escpos-status.js";
import type { Driver, DriverContext, DriverPort } from "./driver.js";

export interface EscPosDriverOptions {
  pollIntervalMs: number;
  /** No answer to one DLE EOT request within this long means the printer is offline (REFERENCE 3). */
  replyTimeoutMs?: number;
}

const DEFAULT_REPLY_TIMEOUT_MS = 1000;
const TABLES = [1, 2, 3, 4] as const;
type Table = (typeof TABLES)[number];

/**
 * ESC/POS receipt printers: asks for Automatic Status Back when the port opens, and polls the four
 * DLE EOT tables every `pollIntervalMs`, one request in flight at a time. Replies are told apart by
 * their fixed bits, so an ASB frame arriving in the middle of a poll round is decoded as ASB.
 */
export function createEscPosDriver(context: DriverContext, options: EscPosDriverOptions): Driver {
  const replyTimeoutMs = Math.min(options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS, options.pollIntervalMs);
  const splitter = createReplySplitter();
  let generation = 0;
  let pollTimer: NodeJS.Timeout | undefined;
  let pending:
    | { table: Table; resolve: (byte: number | undefined) => void; timer: NodeJS.Timeout }
    | undefined;
  let polls = 0;
  let timeouts = 0;
  let asbFrames = 0;
  // What the printer last said; a silent printer keeps its known conditions (paper still out).
  let last: NormalisedStatus | undefined;

  function report(status: NormalisedStatus): void {
    last = status;
    context.status(status);
  }

  function onReply(reply: EscPosReply): void {
    if (reply.kind === "asb") {
      asbFrames += 1;
      report(statusFromAsb(reply.bytes));
      return;
    }
    const waiting = pending;
    if (waiting === undefined) return; // a late reply to a request that already timed out
    pending = undefined;
    clearTimeout(waiting.timer);
    waiting.resolve(reply.byte);
  }

  function request(target: DriverPort, table: Table): Promise<number | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pending = undefined;
        resolve(undefined);
      }, replyTimeoutMs);
      pending = { table, resolve, timer };
      target.write(dleEotRequest(table)).catch((error: unknown) => {
        context.log.debug({ err: error }, "status request not written");
      });
    });
  }

  async function pollRound(target: DriverPort, round: number): Promise<void> {
    polls += 1;
    const replies: Partial<Record<Table, number>> = {};
    for (const table of TABLES) {
      const byte = await request(target, table);
      if (round !== generation) return; // detached meanwhile
      if (byte === undefined) {
        timeouts += 1;
        report(statusWithoutReply(last));
        return;
      }
      replies[table] = byte;
    }
    report(statusFromDleEot(replies, last));
  }

  function schedule(target: DriverPort, round: number, delayMs: number): void {
    pollTimer = setTimeout(() => {
      pollRound(target, round)
        .catch((error: unknown) => context.log.error({ err: error }, "status poll failed"))
        .finally(() => {
          if (round === generation) schedule(target, round, options.pollIntervalMs);
        });
    }, delayMs);
  }

  function cancel(): void {
    generation += 1;
    clearTimeout(pollTimer);
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      pending.resolve(undefined);
      pending = undefined;
    }
    splitter.reset();
  }

  return {
    attach(next) {
      cancel();
      const round = generation;
      next.write(ENABLE_ASB).catch((error: unknown) => {
        context.log.warn({ err: error }, "could not enable Automatic Status Back");
      });
      // First round at once, so a printer that is out of paper at start is reported at start.
      schedule(next, round, 0);
    },
    data(chunk) {
      for (const reply of splitter.push(chunk)) onReply(reply);
    },
    detach() {
      cancel();
    },
    stop() {
      cancel();
    },
    counters() {
      return { polls, timeouts, asbFrames, discardedBytes: splitter.discarded };
    },
  };
}
