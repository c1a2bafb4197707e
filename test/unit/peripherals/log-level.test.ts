import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  compileLevelPatterns,
  DEFAULT_LEVEL_PATTERNS,
  type LogLevel,
  matchLeadingTimestamp,
  parseLeadingTimestamp,
  parseLogLine,
} from "../../../src/peripherals/protocols/log-level.js";
import { AgentError } from "../../../src/shared/errors.js";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0); // 2025-11-26T12:00:00Z

describe("parseLogLine levels", () => {
  it.each<[string, LogLevel]>([
    // logcat brief / tag / time / threadtime
    ["E/PinPad( 1234): card read failed", "error"],
    ["F/libc: Fatal signal 11", "error"],
    ["A/DEBUG: assert", "error"],
    ["W/PinPad: low battery", "warn"],
    ["I/ActivityManager: Start proc", "info"],
    ["D/EmvKernel( 88): select AID", "debug"],
    ["V/Keypad: scan row 2", "debug"],
    ["11-26 05:17:14.123 W/PinPad( 123): battery 9%", "warn"],
    ["11-26 05:17:14.123  123  456 E PinPad: timeout", "error"],
    ["11-26 05:17:14.123  123  456 D PinPad: Error counter reset", "debug"],
    ["2025-11-26 05:17:14.123  123  456 I PinPad: ready", "info"],
    // syslog PRI: severity = PRI mod 8
    ["<0>kernel: panic", "error"],
    ["<3>pinpad: oops", "error"],
    ["<11>pinpad: facility 1, severity 3", "error"],
    ["<12>x", "warn"],
    ["<13>x", "info"],
    ["<134>Nov 26 05:17:14 host app: message", "info"],
    ["<15>x", "debug"],
    ["<191>x", "debug"],
    // level words and bracketed tags
    ["ERROR: card read failed", "error"],
    ["2025-11-26T05:17:14.123Z INFO pinpad started", "info"],
    ["[2025-11-26 05:17:14] warning: low battery", "warn"],
    ["[ERROR] x", "error"],
    ["[error] x", "error"],
    ["(Warning) x", "warn"],
    ["[E] x", "error"],
    ["[W] x", "warn"],
    ["<E> x", "error"],
    ["<D> x", "debug"],
    ["[I] x", "info"],
    ["keypad: FATAL flash write", "error"],
    ["keypad: CRIT temperature", "error"],
    ["keypad: ERR 42", "error"],
    ["keypad: WARNING tamper", "warn"],
    ["TRACE enter scan()", "debug"],
    ["Nov 26 05:17:14 host pinpad[12]: ERROR x", "error"],
    ["Nov 26 05:17:14 host pinpad[12]: reader error, retrying", "error"],
    ["I/O error on /dev/ttyS1", "error"],
    ["card inserted", "info"],
  ])("reads %j as %s", (line, level) => {
    expect(parseLogLine(line).level).toBe(level);
  });

  it.each<[string, LogLevel, string]>([
    ["I/ActivityManager: Error loading", "info", "a logcat letter beats a word in the message"],
    ["INFO: retrying after error", "info", "a level word heading the line beats a later one"],
    ["[main] INFO c.f.Bar - connection error", "info", "an upper-case level word beats a lower-case one"],
    ["2025-11-26 05:17:14,123+01:00 debug: x error", "debug", "the head may be a timestamp"],
    ["<14>ERROR in text", "info", "a syslog PRI beats any word"],
  ])("reads %j as %s because %s", (line, level) => {
    expect(parseLogLine(line).level).toBe(level);
  });

  it.each([
    "I/O done", // not logcat: "O done" is no tag
    "terror alert",
    "3 errors found",
    "ERR_TIMEOUT",
    "[A] list item",
    "<192>not a PRI",
    "<03>leading zero",
    "2025-11-26 informational",
  ])("does not take a level from %j when it only looks like one", (line) => {
    expect(parseLogLine(line, { defaultLevel: "debug" }).level).toBe("debug");
  });

  it("uses defaultLevel when nothing matches", () => {
    expect(parseLogLine("card inserted").level).toBe("info");
    expect(parseLogLine("card inserted", { defaultLevel: "warn" }).level).toBe("warn");
  });

  it("keeps the line text, timestamp included", () => {
    const line = "2025-11-26T05:17:14.123Z [ERROR] PinPad: x";
    expect(parseLogLine(line)).toEqual({ level: "error", line, ts: Date.UTC(2025, 10, 26, 5, 17, 14, 123) });
  });

  it("tries configured patterns in order and stops at the first match", () => {
    const patterns = compileLevelPatterns([
      { level: "warn", regex: "^KBD-\\d+ " },
      { level: "error", regex: "FAIL" },
      { level: "debug", regex: "KBD" },
    ]);
    expect(parseLogLine("KBD-7 FAIL", { patterns }).level).toBe("warn");
    expect(parseLogLine("KBD FAIL", { patterns }).level).toBe("error");
    expect(parseLogLine("KBD ok", { patterns }).level).toBe("debug");
    // Only the configured ones: the defaults are not appended.
    expect(parseLogLine("E/PinPad: x", { patterns }).level).toBe("info");
  });

  it("gives the same answer on every call when a configured pattern has the g flag", () => {
    const patterns = [{ level: "error" as const, pattern: /FAIL/g }];
    expect([1, 2, 3].map(() => parseLogLine("FAIL", { patterns }).level)).toEqual([
      "error",
      "error",
      "error",
    ]);
  });

  it("finishes in linear time on 8 KiB lines built to make a regex backtrack", () => {
    const hostile = [
      "1".repeat(8192),
      `11-26 05:17:14.123 ${" ".repeat(8000)}`,
      "2025-11-26 ".repeat(745),
      `E/${"a".repeat(8190)}`,
      `<${"1".repeat(8190)}`,
      "[".repeat(8192),
    ];
    const started = performance.now();
    for (const line of hostile) for (let i = 0; i < 20; i += 1) parseLogLine(line, { now: NOW });
    // Quadratic behaviour on these would take seconds; linear takes a few ms.
    expect(performance.now() - started).toBeLessThan(500);
  });

  it("never throws on arbitrary text", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 300 }),
        fc.integer({ min: 0, max: 4e12 }),
        (line, now) => {
          const parsed = parseLogLine(line, { now });
          expect(["error", "warn", "info", "debug"]).toContain(parsed.level);
          expect(parsed.line).toBe(line);
          if (parsed.ts !== undefined) expect(Number.isFinite(parsed.ts)).toBe(true);
        },
      ),
    );
  });

  it("has four tiers of four levels in the default list", () => {
    expect(DEFAULT_LEVEL_PATTERNS.map((p) => p.level)).toEqual(
      Array.from({ length: 4 }, () => ["error", "warn", "info", "debug"]).flat(),
    );
  });
});

describe("timestamps", () => {
  it.each<[string, number | undefined]>([
    ["2025-11-26T05:17:14.123Z x", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["2025-11-26T05:17:14Z x", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["2025-11-26T06:17:14.5+01:00 x", Date.UTC(2025, 10, 26, 5, 17, 14, 500)],
    ["2025-11-26T00:17:14.123456-0500 x", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["2025-11-26 05:17:14,123 INFO x", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["2025-11-26 05:17:14 x", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["[2025-11-26 05:17:14.123] x", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["<13>1 2025-11-26T05:17:14.123Z host app - - - msg", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["Nov 26 05:17:14 host app: x", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["Nov  6 05:17:14 host app: x", Date.UTC(2025, 10, 6, 5, 17, 14)],
    ["<30>Nov 26 05:17:14 host app: x", Date.UTC(2025, 10, 26, 5, 17, 14)],
    // December seen in November is last December, not next month.
    ["Dec 31 23:59:59 host app: x", Date.UTC(2024, 11, 31, 23, 59, 59)],
    ["11-26 05:17:14.123  123  456 E PinPad: x", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["2025-02-30T05:17:14Z impossible date", undefined],
    ["2025-11-26T25:17:14Z impossible hour", undefined],
    ["card inserted at 2025-11-26T05:17:14Z", undefined],
    ["12345 boot", undefined],
  ])("reads %j as %s", (line, ts) => {
    expect(parseLogLine(line, { now: NOW }).ts).toBe(ts);
  });

  it("gives no ts for a stamp without a year when no reference time is passed", () => {
    expect(parseLogLine("Nov 26 05:17:14 host app: x").ts).toBeUndefined();
    expect(parseLogLine("11-26 05:17:14.123  1  2 I T: x").ts).toBeUndefined();
    expect(parseLogLine("2025-11-26T05:17:14Z x").ts).toBe(Date.UTC(2025, 10, 26, 5, 17, 14));
  });

  it("omits the ts key rather than setting it undefined when there is no stamp", () => {
    expect(Object.keys(parseLogLine("card inserted", { now: NOW }))).toEqual(["level", "line"]);
  });

  it("reports where the stamp ends so callers can require a whole-string stamp", () => {
    expect(matchLeadingTimestamp("2025-11-26T05:17:14Z rest")).toEqual({
      ms: Date.UTC(2025, 10, 26, 5, 17, 14),
      end: 20,
    });
  });

  it("takes 29 February from the year before when this year has none, and gives up after that", () => {
    expect(parseLeadingTimestamp("Feb 29 10:00:00 x", Date.UTC(2024, 2, 1))).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseLeadingTimestamp("Feb 29 10:00:00 x", Date.UTC(2025, 2, 1))).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseLeadingTimestamp("Feb 29 10:00:00 x", Date.UTC(2026, 2, 1))).toBeUndefined();
  });
});

describe("compileLevelPatterns", () => {
  it("compiles the source without flags, as the config schema does", () => {
    const [first] = compileLevelPatterns([{ level: "error", regex: "^E\\d+" }]);
    expect(first?.level).toBe("error");
    expect(first?.pattern.flags).toBe("");
    expect(first?.pattern.test("E42 x")).toBe(true);
  });

  it("throws an error naming the entry and the bad regex when one does not compile", () => {
    const compile = () =>
      compileLevelPatterns([
        { level: "warn", regex: "ok" },
        { level: "error", regex: "(unclosed" },
      ]);
    expect(compile).toThrow(AgentError);
    expect(compile).toThrow(/level pattern 1 \(error\): invalid regular expression "\(unclosed"/);
  });

  it("throws naming the level when it is not one of the four", () => {
    expect(() => compileLevelPatterns([{ level: "fatal" as LogLevel, regex: "x" }])).toThrow(
      /unknown level "fatal"/,
    );
  });
});
