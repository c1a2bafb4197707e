import { describe, expect, it } from "vitest";
import { parseJsonLine } from "../../../src/peripherals/protocols/jsonl.js";
import { compileLevelPatterns, type LogLevel } from "../../../src/peripherals/protocols/log-level.js";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0);

function value(line: string, options: Parameters<typeof parseJsonLine>[1] = {}) {
  const result = parseJsonLine(line, options);
  if (!result.ok) throw new Error(`expected ok, got: ${result.error}`);
  return result.value;
}

describe("parseJsonLine", () => {
  it.each<[unknown, LogLevel]>([
    ["error", "error"],
    ["ERR", "error"],
    ["Fatal", "error"],
    ["critical", "error"],
    ["warn", "warn"],
    ["WARNING", "warn"],
    ["info", "info"],
    ["notice", "info"],
    ["debug", "debug"],
    ["trace", "debug"],
    ["verbose", "debug"],
    ["E", "error"],
    // pino / bunyan numbers
    [10, "debug"],
    [20, "debug"],
    [30, "info"],
    [40, "warn"],
    [50, "error"],
    [60, "error"],
    ["50", "error"],
    // below 10: syslog severities
    [3, "error"],
    [4, "warn"],
    [6, "info"],
    [7, "debug"],
  ])("maps level %j to %s", (level, expected) => {
    expect(value(JSON.stringify({ level, msg: "x" })).level).toBe(expected);
  });

  it("takes msg, else message, as the line and leaves the other in fields", () => {
    expect(value('{"msg":"card read","message":"other"}')).toMatchObject({
      line: "card read",
      fields: { message: "other" },
    });
    expect(value('{"message":"card read"}')).toMatchObject({ line: "card read", fields: {} });
    expect(value('{"msg":{"code":7}}').line).toBe('{"code":7}');
  });

  it("uses the raw line as text when the object has no message, so such lines do not all look alike", () => {
    const line = ' {"level":"info","event":"card_inserted","slot":1} ';
    expect(value(line)).toEqual({
      level: "info",
      line: line.trim(),
      fields: { event: "card_inserted", slot: 1 },
    });
    expect(value('{"msg":"  ","level":"warn"}')).toEqual({
      level: "warn",
      line: '{"msg":"  ","level":"warn"}',
      fields: { msg: "  " },
    });
  });

  it.each<[string, unknown, number | undefined]>([
    ["ts", 1764134234123, 1764134234123],
    ["time", 1764134234, 1764134234000],
    ["timestamp", 1764134234.5, 1764134234500],
    ["ts", "2025-11-26T05:17:14.123Z", Date.UTC(2025, 10, 26, 5, 17, 14, 123)],
    ["time", "2025-11-26T06:17:14+01:00", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["time", "2025-11-26 05:17:14", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["time", "1764134234123", 1764134234123],
    ["time", "Nov 26 05:17:14", Date.UTC(2025, 10, 26, 5, 17, 14)],
    ["time", "2025-11-26T05:17:14Z and more", undefined],
    ["time", "yesterday", undefined],
    ["time", -5, undefined],
    ["time", true, undefined],
  ])("reads %s %j as ts %s", (key, raw, ts) => {
    const parsed = value(JSON.stringify({ msg: "x", [key]: raw }), { now: NOW });
    expect(parsed.ts).toBe(ts);
    // A time it could not read stays in fields, so nothing is lost.
    if (ts === undefined) expect(parsed.fields[key]).toEqual(raw);
    else expect(parsed.fields).not.toHaveProperty(key);
  });

  it("prefers ts over time over timestamp and keeps the others as fields", () => {
    const parsed = value('{"msg":"x","timestamp":1767225603,"time":1767225602,"ts":1767225601}');
    expect(parsed.ts).toBe(1_767_225_601_000);
    expect(parsed.fields).toEqual({ timestamp: 1767225603, time: 1767225602 });
  });

  it("keeps a time before 2000 or after 2090 as a field, not as the time", () => {
    const parsed = value('{"msg":"x","ts":1000,"time":4111111111111111}');
    expect(parsed.ts).toBeUndefined();
    expect(parsed.fields).toEqual({ ts: 1000, time: 4111111111111111 });
  });

  it("puts every other field, nested ones included, into fields", () => {
    const parsed = value(
      '{"level":30,"time":1764134234123,"pid":42,"hostname":"pp","msg":"ok","emv":{"aid":"A000000003"},"n":null}',
    );
    expect(parsed).toEqual({
      level: "info",
      line: "ok",
      ts: 1764134234123,
      fields: { pid: 42, hostname: "pp", emv: { aid: "A000000003" }, n: null },
    });
  });

  it("keeps an unknown level in fields and takes the level from the message text", () => {
    const parsed = value('{"level":"loud","msg":"E/PinPad: read failed"}');
    expect(parsed.level).toBe("error");
    expect(parsed.fields).toEqual({ level: "loud" });
    expect(value('{"msg":"card inserted"}').level).toBe("info");
  });

  it("uses the configured patterns on the message when the object has no level", () => {
    const patterns = compileLevelPatterns([{ level: "warn", regex: "^KBD" }]);
    expect(value('{"msg":"KBD stuck"}', { patterns }).level).toBe("warn");
    expect(value('{"msg":"KBD stuck","level":"debug"}', { patterns }).level).toBe("debug");
  });

  it("keeps a __proto__ key as data instead of setting the prototype of fields", () => {
    const parsed = value('{"msg":"x","__proto__":{"polluted":true}}');
    expect(Object.getPrototypeOf(parsed.fields)).toBe(Object.prototype);
    expect((parsed.fields as { polluted?: unknown }).polluted).toBeUndefined();
    expect(Object.hasOwn(parsed.fields, "__proto__")).toBe(true);
  });

  it.each<[string, RegExp]>([
    ["not json", /^invalid JSON/],
    ['{"msg":"cut off', /^invalid JSON/],
    ["", /^invalid JSON/],
    ["[1,2]", /not a JSON object but an array/],
    ["null", /not a JSON object but null/],
    ['"text"', /not a JSON object but a string/],
    ["42", /not a JSON object but a number/],
  ])("returns ok:false with a reason for %j", (line, reason) => {
    const result = parseJsonLine(line);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatch(reason);
  });
});
