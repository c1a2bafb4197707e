import { describe, expect, it } from "vitest";
import { createBackoff } from "../../../src/shared/backoff.js";
import { prng } from "../../helpers/prng.js";

const BASE = { initialMs: 1_000, maxMs: 30_000, floorMs: 1_000 };

function take(backoff: { next(): number }, count: number): number[] {
  return Array.from({ length: count }, () => backoff.next());
}

describe("createBackoff", () => {
  it("waits half of each doubling step, never under the floor, when random() is 0", () => {
    const backoff = createBackoff({ ...BASE, random: () => 0 });
    expect(take(backoff, 8)).toEqual([1_000, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
  });

  it("waits the whole doubling step, capped at maxMs, when random() is 1", () => {
    const backoff = createBackoff({ ...BASE, random: () => 1 });
    expect(take(backoff, 8)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("doubles each delay until the cap when random() is constant", () => {
    const backoff = createBackoff({ initialMs: 500, maxMs: 64_000, floorMs: 0, random: () => 0.5 });
    expect(take(backoff, 10)).toEqual([
      375, 750, 1_500, 3_000, 6_000, 12_000, 24_000, 48_000, 48_000, 48_000,
    ]);
  });

  it("raises a delay to floorMs when the step is smaller than the floor", () => {
    const backoff = createBackoff({ initialMs: 100, maxMs: 30_000, floorMs: 1_000, random: () => 1 });
    expect(take(backoff, 6)).toEqual([1_000, 1_000, 1_000, 1_000, 1_600, 3_200]);
  });

  it("starts again from the first step when reset() is called", () => {
    const backoff = createBackoff({ ...BASE, random: () => 1 });
    take(backoff, 5);
    backoff.reset();
    expect(take(backoff, 3)).toEqual([1_000, 2_000, 4_000]);
  });

  it("stays between the floor and maxMs and inside each step's jitter band when random() is uniform", () => {
    const random = prng(7);
    const backoff = createBackoff({ ...BASE, random });
    for (let attempt = 0; attempt < 200; attempt++) {
      const step = Math.min(BASE.maxMs, BASE.initialMs * 2 ** attempt);
      const delay = backoff.next();
      expect(delay).toBeGreaterThanOrEqual(BASE.floorMs);
      expect(delay).toBeLessThanOrEqual(BASE.maxMs);
      expect(delay).toBeGreaterThanOrEqual(Math.max(BASE.floorMs, step / 2));
      expect(delay).toBeLessThanOrEqual(Math.max(BASE.floorMs, step));
      expect(Number.isInteger(delay)).toBe(true);
    }
  });

  it("still returns maxMs when so many attempts failed that 2^attempt overflows", () => {
    const backoff = createBackoff({ ...BASE, random: () => 1 });
    take(backoff, 1_100);
    expect(backoff.next()).toBe(30_000);
  });
});
