/** Time comes in through deps so tests control it. */
export interface Clock {
  /** Wall clock, ms since epoch. May be wrong on a terminal that booted without network time. */
  now(): number;
  /** Monotonic ms, for durations and timeouts only. */
  monotonic(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

/**
 * Times a device or an app may hand us, in ms: from 2000 to 2090. The bound is also a card-data
 * guard: every 14 to 19-digit number, and every 13-digit one from 4 000 000 000 000 (13-digit Visa),
 * lies above it, so a card number put in a time field is refused there instead of stored as a time.
 */
export const PLAUSIBLE_TIME_MS = { min: Date.UTC(2000, 0, 1), max: Date.UTC(2090, 0, 1) } as const;

export function isPlausibleTime(ms: number): boolean {
  return ms >= PLAUSIBLE_TIME_MS.min && ms < PLAUSIBLE_TIME_MS.max;
}
