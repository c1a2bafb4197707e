export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Never wait less than this between attempts (at most one connect a second). */
  floorMs: number;
  random: () => number;
}

/**
 * Exponential backoff with "equal jitter": half the step is fixed, half random, so a fleet that lost
 * its broker at once does not come back at once, and no attempt follows the previous one sooner than
 * `floorMs`.
 */
export function createBackoff(options: BackoffOptions) {
  let attempt = 0;
  return {
    next(): number {
      const step = Math.min(options.maxMs, options.initialMs * 2 ** attempt);
      attempt += 1;
      const delay = step / 2 + options.random() * (step / 2);
      return Math.max(options.floorMs, Math.round(delay));
    },
    reset(): void {
      attempt = 0;
    },
  };
}
export type Backoff = ReturnType<typeof createBackoff>;
