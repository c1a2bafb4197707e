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
