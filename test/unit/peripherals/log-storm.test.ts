import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createLogStormFilter, lineShape, type StormRecord } from "../../../src/peripherals/log-storm.js";

const T0 = 1_764_134_234_000;

function rec(line: string, ts: number, level: StormRecord["level"] = "error"): StormRecord {
  return { line, level, ts };
}

/** Occurrences a list of records stands for. */
function weight(records: readonly StormRecord[]): number {
  return records.reduce((sum, r) => sum + (r.repeat ?? 1), 0);
}

describe("lineShape", () => {
  it.each([
    ["timeout after 123 ms", "timeout after # ms"],
    ["row 1 col 22", "row # col #"],
    ["key deadbeef01 ok", "key # ok"],
    ["id 0x7fa3c0de99", "id #x#"],
    ["AID A0000000031010", "AID #"],
    ["abc", "abc"],
  ])("turns %j into %j", (line, shape) => {
    expect(lineShape(line)).toBe(shape);
  });
});

describe("createLogStormFilter", () => {
  it("returns one record, then one with repeat 9 999 at window end, and drops nothing when one line storms", () => {
    const filter = createLogStormFilter();
    const out: StormRecord[] = [];
    for (let i = 0; i < 10_000; i += 1)
      out.push(...filter.offer(rec("E/Keypad: scan timeout", T0 + i / 10), T0 + i / 10));
    expect(out).toEqual([rec("E/Keypad: scan timeout", T0)]);
    expect(filter.tick(T0 + 9_999)).toEqual([]);
    expect(filter.tick(T0 + 10_000)).toEqual([
      { ...rec("E/Keypad: scan timeout", T0 + 999.9), repeat: 9_999 },
    ]);
    expect(filter.tick(T0 + 20_000)).toEqual([]);
    expect(filter.dropped).toBe(0);
  });

  it("rate-limits and counts drops when varying lines of one shape storm", () => {
    const filter = createLogStormFilter();
    let returned = 0;
    for (let i = 0; i < 10_000; i += 1) {
      const now = T0 + i / 10; // 10 000 lines in one second
      returned += filter.offer(rec(`card read failed: timeout after ${i} ms`, now), now).length;
    }
    // The burst of 200 plus about one second of refill at 50/s.
    expect(returned).toBeGreaterThanOrEqual(249);
    expect(returned).toBeLessThanOrEqual(251);
    expect(filter.dropped).toBe(10_000 - returned);
  });

  it("lets exactly the burst through when a same-shape storm arrives in one instant", () => {
    const filter = createLogStormFilter({ burst: 200 });
    let returned = 0;
    for (let i = 0; i < 1_000; i += 1) returned += filter.offer(rec(`timeout after ${i} ms`, T0), T0).length;
    expect(returned).toBe(200);
    expect(filter.dropped).toBe(800);
    // One second later the bucket holds 50 tokens again.
    for (let i = 5_000; i < 5_100; i += 1) {
      returned += filter.offer(rec(`timeout after ${i} ms`, T0 + 1_000), T0 + 1_000).length;
    }
    expect(returned).toBe(250);
  });

  it("returns a new distinct line at once when it comes in the middle of a one-line storm", () => {
    const filter = createLogStormFilter();
    for (let i = 0; i < 5_000; i += 1) filter.offer(rec("E/Keypad: scan timeout", T0 + i / 10), T0 + i / 10);
    const news = rec("W/PinPad: battery low", T0 + 500);
    expect(filter.offer(news, T0 + 500)).toEqual([news]);
  });

  it("returns a new distinct line at once when the bucket is empty in a same-shape storm", () => {
    const filter = createLogStormFilter();
    for (let i = 0; i < 5_000; i += 1) filter.offer(rec(`timeout after ${i} ms`, T0), T0);
    expect(filter.dropped).toBe(4_800);
    const news = rec("E/PinPad: tamper switch open", T0);
    expect(filter.offer(news, T0)).toEqual([news]);
    // The same shape at another level is another shape.
    expect(filter.offer(rec("timeout after 1 ms", T0, "warn"), T0)).toHaveLength(1);
    // A known shape with new numbers is not news: it waits for tokens like the rest of its storm.
    expect(filter.offer(rec("timeout after 77777 ms", T0), T0)).toEqual([]);
    expect(filter.dropped).toBe(4_801);
  });

  it("lets a shape through for free again when its window has ended", () => {
    const filter = createLogStormFilter({ windowMs: 10_000, ratePerSec: 0.001, burst: 1 });
    expect(filter.offer(rec("timeout after 1 ms", T0), T0)).toHaveLength(1);
    expect(filter.offer(rec("timeout after 2 ms", T0 + 1), T0 + 1)).toEqual([]);
    expect(filter.offer(rec("timeout after 3 ms", T0 + 10_000), T0 + 10_000)).toHaveLength(1);
  });

  it("flushes an ended collapse before returning the same line as a new first occurrence", () => {
    const filter = createLogStormFilter({ windowMs: 1_000 });
    filter.offer(rec("x", T0), T0);
    filter.offer(rec("x", T0 + 100), T0 + 100);
    filter.offer(rec("x", T0 + 200), T0 + 200);
    expect(filter.offer(rec("x", T0 + 1_500), T0 + 1_500)).toEqual([
      { ...rec("x", T0 + 200), repeat: 2 },
      rec("x", T0 + 1_500),
    ]);
  });

  it("emits nothing at window end when a line came only once", () => {
    const filter = createLogStormFilter({ windowMs: 1_000 });
    filter.offer(rec("once", T0), T0);
    expect(filter.tick(T0 + 5_000)).toEqual([]);
    expect(filter.flushAll(T0 + 5_000)).toEqual([]);
  });

  it("keeps level apart: the same text at two levels is two lines", () => {
    const filter = createLogStormFilter();
    expect(filter.offer(rec("x", T0, "warn"), T0)).toHaveLength(1);
    expect(filter.offer(rec("x", T0, "error"), T0)).toHaveLength(1);
    expect(filter.offer(rec("x", T0, "warn"), T0)).toEqual([]);
  });

  it("returns a batch in ts order when several windows end in one tick", () => {
    const filter = createLogStormFilter({ windowMs: 1_000 });
    filter.offer(rec("a", T0), T0);
    filter.offer(rec("b", T0 + 10), T0 + 10);
    filter.offer(rec("a", T0 + 900), T0 + 900); // a's last occurrence is later than b's
    filter.offer(rec("b", T0 + 20), T0 + 20);
    const out = filter.tick(T0 + 2_000);
    expect(out.map((r) => [r.line, r.ts, r.repeat])).toEqual([
      ["b", T0 + 20, 1],
      ["a", T0 + 900, 1],
    ]);
  });

  it("carries the extra payload through, taking it from the last occurrence for a summary", () => {
    const filter = createLogStormFilter({ windowMs: 1_000 });
    const first = { ...rec("x", T0), extra: { pid: 1 } };
    expect(filter.offer(first, T0)).toEqual([first]);
    filter.offer({ ...rec("x", T0 + 5), extra: { pid: 2 } }, T0 + 5);
    expect(filter.flushAll(T0 + 10)).toEqual([{ ...rec("x", T0 + 5), extra: { pid: 2 }, repeat: 1 }]);
    expect(filter.flushAll(T0 + 10)).toEqual([]);
  });

  it("counts an offered record with repeat as that many occurrences", () => {
    const filter = createLogStormFilter({ ratePerSec: 1, burst: 1 });
    filter.offer({ ...rec("x", T0), repeat: 3 }, T0);
    filter.offer({ ...rec("x", T0), repeat: 4 }, T0);
    expect(filter.flushAll(T0)).toEqual([{ ...rec("x", T0), repeat: 4 }]);
    filter.offer(rec("timeout after 1 ms", T0), T0); // new shape, passes
    filter.offer({ ...rec("timeout after 2 ms", T0), repeat: 5 }, T0); // no token: dropped
    expect(filter.dropped).toBe(5);
  });

  it("reports the oldest collapse early instead of growing when maxKeys lines are pending", () => {
    const filter = createLogStormFilter({ maxKeys: 2, windowMs: 10_000 });
    filter.offer(rec("a", T0), T0);
    filter.offer(rec("a", T0 + 1), T0 + 1);
    filter.offer(rec("b", T0 + 2), T0 + 2);
    expect(filter.offer(rec("c", T0 + 3), T0 + 3)).toEqual([
      { ...rec("a", T0 + 1), repeat: 1 },
      rec("c", T0 + 3),
    ]);
    // "a" is no longer collapsing: it comes back as a first occurrence.
    expect(filter.offer(rec("a", T0 + 4), T0 + 4)).toEqual([rec("a", T0 + 4)]);
  });

  it("gives no free pass to a new shape when maxKeys shapes are still in their window", () => {
    const filter = createLogStormFilter({ maxKeys: 2, burst: 1, ratePerSec: 0.001, windowMs: 10_000 });
    expect(filter.offer(rec("alpha", T0), T0)).toHaveLength(1); // token
    expect(filter.offer(rec("beta", T0), T0)).toHaveLength(1); // free: new shape
    expect(filter.offer(rec("gamma", T0), T0)).toEqual([]); // both shapes still in window
    expect(filter.dropped).toBe(1);
    expect(filter.offer(rec("delta", T0 + 10_000), T0 + 10_000)).toHaveLength(1); // alpha's window ended
  });

  it("does not refill the bucket or reopen windows when the clock steps back", () => {
    const filter = createLogStormFilter({ burst: 1, ratePerSec: 1, windowMs: 1_000 });
    filter.offer(rec("n 1", T0), T0);
    filter.offer(rec("x", T0), T0);
    expect(filter.offer(rec("n 2", T0 - 60_000), T0 - 60_000)).toEqual([]);
    filter.offer(rec("x", T0 + 500), T0 + 500);
    expect(filter.tick(T0 - 5_000)).toEqual([]);
    expect(filter.tick(T0 + 1_000)).toEqual([{ ...rec("x", T0 + 500), repeat: 1 }]);
  });

  it("starts a shape's window at the latest time seen when a line arrives with an earlier now", () => {
    const filter = createLogStormFilter({ burst: 1, ratePerSec: 0.001, windowMs: 1_000 });
    filter.offer(rec("first", T0), T0); // spends the only token
    expect(filter.offer(rec("n 1", T0 - 60_000), T0 - 60_000)).toHaveLength(1); // new shape, free
    // Its window runs from T0, not from an hour ago: "n #" is still known, so no free pass.
    expect(filter.offer(rec("n 2", T0 + 100), T0 + 100)).toEqual([]);
  });

  it("returns the summaries an offer flushes in ts order, before the new line", () => {
    const filter = createLogStormFilter({ windowMs: 1_000 });
    filter.offer(rec("a", T0), T0);
    filter.offer(rec("b", T0 + 10), T0 + 10);
    filter.offer(rec("a", T0 + 900), T0 + 900);
    filter.offer(rec("b", T0 + 20), T0 + 20);
    const out = filter.offer(rec("c", T0 + 2_000), T0 + 2_000);
    expect(out.map((r) => [r.line, r.ts])).toEqual([
      ["b", T0 + 20],
      ["a", T0 + 900],
      ["c", T0 + 2_000],
    ]);
  });

  it("accounts for every occurrence: returned (weighted by repeat) plus dropped equals offered", () => {
    const lineArb = fc.oneof(
      fc.constantFrom("card inserted", "E/Keypad: scan timeout", "tamper"),
      fc.nat({ max: 50 }).map((n) => `timeout after ${n} ms`),
      fc.nat({ max: 5 }).map((n) => `battery ${n}%`),
    );
    const stepArb = fc.record({
      line: lineArb,
      level: fc.constantFrom<StormRecord["level"]>("error", "info"),
      dt: fc.nat({ max: 400 }),
      tick: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(stepArb, { maxLength: 400 }),
        fc.record({
          windowMs: fc.integer({ min: 1, max: 3_000 }),
          ratePerSec: fc.integer({ min: 1, max: 100 }),
          burst: fc.integer({ min: 1, max: 20 }),
          maxKeys: fc.integer({ min: 1, max: 8 }),
        }),
        (steps, options) => {
          const filter = createLogStormFilter(options);
          const out: StormRecord[] = [];
          // A model of the shapes given a free pass, to check the promise about new lines.
          const freeShapes = new Map<string, number>();
          const offered = new Set<string>();
          let now = T0;
          for (const step of steps) {
            now += step.dt;
            if (step.tick) out.push(...filter.tick(now));
            const record = rec(step.line, now, step.level);
            const returned = filter.offer(record, now);
            out.push(...returned);
            const shape = `${step.level}|${lineShape(step.line)}`;
            const since = freeShapes.get(shape);
            const inPlay = [...freeShapes.values()].filter((t) => now < t + options.windowMs).length;
            const free = (since === undefined || now >= since + options.windowMs) && inPlay < options.maxKeys;
            const key = `${step.level}|${step.line}`;
            // Never seen before and its shape not in the window: it comes back at once, tokens or not.
            if (!offered.has(key) && free) expect(returned).toContainEqual(record);
            if (free && returned.includes(record)) freeShapes.set(shape, now);
            offered.add(key);
          }
          out.push(...filter.flushAll(now));
          expect(weight(out) + filter.dropped).toBe(steps.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses options that would disable it", () => {
    expect(() => createLogStormFilter({ windowMs: 0 })).toThrow(/windowMs/);
    expect(() => createLogStormFilter({ ratePerSec: -1 })).toThrow(/ratePerSec/);
    expect(() => createLogStormFilter({ maxKeys: 1.5 })).toThrow(/maxKeys/);
  });
});
