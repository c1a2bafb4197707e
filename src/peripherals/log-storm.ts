// Keeps a misbehaving peripheral from flooding the outbox: identical lines inside a window collapse
// into one record with `repeat`, and a token bucket caps the rest, counting what it drops (drops
// follow a stated policy and are counted, never silent: REFERENCE.md section 2). One filter per
// source. Pure: the caller passes the time.
//
// What a caller sees, per line offered:
// - The first occurrence of a (level, text) pair comes back at once; it is never held back.
// - Identical lines within `windowMs` of that first one are counted, not returned. When the window
//   ends (noticed by tick, offer or flushAll) one record comes back for them: the last occurrence
//   (its ts and extra) with `repeat` = how many occurrences it stands for, i.e. the suppressed ones,
//   not counting the first. So over all records, the sum of (repeat ?? 1) plus `dropped` equals
//   the occurrences offered (an offered record with `repeat: r` counts as r occurrences).
// - Returned lines spend tokens (ratePerSec, burst). With no token left a line is dropped and
//   counted, unless its shape (digits and long hex runs blanked) was not seen in the current window:
//   such a line always passes, so "a new kind of message" shows up even in the middle of a storm.
// - Shapes are kept for at most `maxKeys` windows at a time. When all `maxKeys` of them are still in
//   their window, a further new shape gets no free pass and goes through the bucket like any line:
//   otherwise noise (a wrong baud rate makes every line a new shape) would pass the cap unlimited.
//   That is the one case where a new line can be dropped: more than maxKeys shapes in one window.
// - Collapse summaries always come back (at most one per key and window, and at most maxKeys keys);
//   they spend a token when there is one.
// - Time order: a batch is sorted by ts. A summary carries the ts of its last occurrence, which can
//   be earlier than records returned before it; storage order (seq) is the order of return.
import type { LogLevel } from "./protocols/log-level.js";

export interface StormOptions {
  windowMs: number;
  ratePerSec: number;
  burst: number;
  maxKeys: number;
}

export interface StormRecord {
  line: string;
  level: LogLevel;
  ts: number;
  repeat?: number;
  /** Any other payload (e.g. JSON fields); passes through untouched. */
  extra?: Record<string, unknown>;
}

export interface LogStormFilter {
  /** Records to store now: 0, 1 or more (offering can also flush collapses whose window ended). */
  offer(record: StormRecord, now: number): StormRecord[];
  /** Flush collapses whose window has ended; call it every second or so. */
  tick(now: number): StormRecord[];
  /** Flush every pending collapse (on stop). */
  flushAll(now: number): StormRecord[];
  /** Occurrences dropped by the rate cap, cumulative. */
  readonly dropped: number;
}

export const DEFAULT_STORM_OPTIONS: Readonly<StormOptions> = Object.freeze({
  windowMs: 10_000,
  ratePerSec: 50,
  burst: 200,
  maxKeys: 1024,
});

interface Collapse {
  start: number;
  /** Occurrences suppressed since the first. */
  count: number;
  last: StormRecord;
}

// Hex runs first: "deadbeef01" must become one "#", not "deadbeef#".
const VARIABLE = /[0-9A-Fa-f]{8,}|\d+/g;

/** The line with every digit run and every hex run of 8 or more characters replaced by "#". */
export function lineShape(line: string): string {
  return line.replace(VARIABLE, "#");
}

function weight(record: StormRecord): number {
  const repeat = record.repeat;
  return repeat !== undefined && Number.isFinite(repeat) && repeat >= 1 ? Math.floor(repeat) : 1;
}

function byTs(a: StormRecord, b: StormRecord): number {
  return a.ts - b.ts;
}

export function createLogStormFilter(options: Partial<StormOptions> = {}): LogStormFilter {
  const { windowMs, ratePerSec, burst, maxKeys } = { ...DEFAULT_STORM_OPTIONS, ...options };
  for (const [name, value] of Object.entries({ windowMs, ratePerSec, burst, maxKeys })) {
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number`);
  }
  if (!Number.isInteger(maxKeys)) throw new RangeError("maxKeys must be an integer");

  // Insertion order is window-start order (an entry is re-inserted when its window restarts), so
  // the entries whose window has ended are always at the front.
  const collapses = new Map<string, Collapse>();
  const shapes = new Map<string, number>();
  let tokens = burst;
  let clock = Number.NEGATIVE_INFINITY;
  let dropped = 0;

  // A clock that steps back (NTP, a test) must not refill the bucket or reopen windows.
  function advance(now: number): number {
    if (now > clock) {
      if (clock !== Number.NEGATIVE_INFINITY)
        tokens = Math.min(burst, tokens + ((now - clock) * ratePerSec) / 1000);
      clock = now;
    }
    return clock;
  }

  function summary(entry: Collapse): StormRecord {
    if (tokens >= 1) tokens -= 1;
    return { ...entry.last, repeat: entry.count };
  }

  function expire(now: number, out: StormRecord[]): void {
    for (const [key, entry] of collapses) {
      if (now < entry.start + windowMs) break;
      collapses.delete(key);
      if (entry.count > 0) out.push(summary(entry));
    }
  }

  /** True when the shape had not been seen in its current window (and now is). */
  function claimNewShape(shape: string, now: number): boolean {
    const start = shapes.get(shape);
    if (start !== undefined && now < start + windowMs) return false;
    if (start !== undefined) shapes.delete(shape);
    if (shapes.size >= maxKeys) {
      const oldest = shapes.entries().next().value;
      if (oldest === undefined || now < oldest[1] + windowMs) return false;
      shapes.delete(oldest[0]);
    }
    shapes.set(shape, now);
    return true;
  }

  function admit(record: StormRecord, key: string, now: number, out: StormRecord[]): void {
    const newShape = claimNewShape(`${record.level}\u0000${lineShape(record.line)}`, now);
    if (tokens >= 1) tokens -= 1;
    else if (!newShape) {
      dropped += weight(record);
      return;
    }
    if (collapses.size >= maxKeys) {
      // Full: the oldest collapse reports early rather than memory growing.
      const oldest = collapses.entries().next().value;
      if (oldest !== undefined) {
        collapses.delete(oldest[0]);
        if (oldest[1].count > 0) out.push(summary(oldest[1]));
      }
    }
    collapses.set(key, { start: now, count: 0, last: record });
    out.push(record);
  }

  return {
    offer(record, now) {
      const t = advance(now);
      const out: StormRecord[] = [];
      expire(t, out);
      const key = `${record.level}\u0000${record.line}`;
      const entry = collapses.get(key);
      if (entry === undefined) admit(record, key, t, out);
      else {
        entry.count += weight(record);
        entry.last = record;
      }
      return out.sort(byTs);
    },
    tick(now) {
      const out: StormRecord[] = [];
      expire(advance(now), out);
      return out.sort(byTs);
    },
    flushAll(now) {
      advance(now);
      const out: StormRecord[] = [];
      for (const entry of collapses.values()) if (entry.count > 0) out.push(summary(entry));
      collapses.clear();
      return out.sort(byTs);
    },
    get dropped() {
      return dropped;
    },
  };
}
