// One JSON object a line (pino, bunyan, winston, logrus, zap and most embedded "structured" loggers).
// When this returns ok:false the driver stores the raw line as a plain text log line instead (levels
// from parseLogLine), so a device mixing JSON and text, or a line cut by noise, loses nothing.
import { isPlausibleTime } from "../../shared/clock.js";
import type { Result } from "../../shared/result.js";
import {
  type LevelPattern,
  type LogLevel,
  matchLeadingTimestamp,
  type ParsedLogLine,
  parseLogLine,
} from "./log-level.js";

export interface ParseJsonLineOptions {
  /** Reference time for timestamps without a year; see matchLeadingTimestamp. */
  now?: number;
  /** Used on the message text when the object has no usable level. Default: DEFAULT_LEVEL_PATTERNS. */
  patterns?: readonly LevelPattern[];
}

export type JsonLogLine = ParsedLogLine & { fields: Record<string, unknown> };

const LEVEL_NAMES: Readonly<Record<string, LogLevel>> = {
  error: "error",
  err: "error",
  fatal: "error",
  critical: "error",
  crit: "error",
  emerg: "error",
  emergency: "error",
  alert: "error",
  panic: "error",
  severe: "error",
  warn: "warn",
  warning: "warn",
  info: "info",
  information: "info",
  notice: "info",
  debug: "debug",
  trace: "debug",
  verbose: "debug",
  fine: "debug",
  // Single letters, as logcat and glog print them.
  e: "error",
  f: "error",
  w: "warn",
  i: "info",
  d: "debug",
  v: "debug",
};
const MESSAGE_KEYS = ["msg", "message"] as const;
const TIME_KEYS = ["ts", "time", "timestamp"] as const;
// Below this a number is seconds since epoch (1e11 s is the year 5138; 1e11 ms is 1973).
const SECONDS_LIMIT = 1e11;

export function parseJsonLine(line: string, options: ParseJsonLineOptions = {}): Result<JsonLogLine, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    return { ok: false, error: `invalid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    const kind = parsed === null ? "null" : Array.isArray(parsed) ? "an array" : `a ${typeof parsed}`;
    return { ok: false, error: `not a JSON object but ${kind}` };
  }
  const object = parsed as Record<string, unknown>;
  const used = new Set<string>();

  const level = mapLevel(object.level);
  if (level !== undefined) used.add("level");

  const messageKey = MESSAGE_KEYS.find((key) => {
    const message = object[key];
    return (
      message !== undefined && message !== null && !(typeof message === "string" && message.trim() === "")
    );
  });
  let text: string;
  if (messageKey === undefined) {
    // Without a message the raw line is the text: an empty `line` would make every such record look
    // identical to the storm filter and collapse them into one. The fields are kept all the same.
    text = line.trim();
  } else {
    used.add(messageKey);
    const message = object[messageKey];
    text = typeof message === "string" ? message : JSON.stringify(message);
  }

  let ts: number | undefined;
  for (const key of TIME_KEYS) {
    if (!Object.hasOwn(object, key)) continue;
    ts = toEpochMs(object[key], options.now);
    // An unreadable time stays in `fields`; the next key may still give one.
    if (ts !== undefined) {
      used.add(key);
      break;
    }
  }

  // Object.fromEntries defines own properties, so a "__proto__" key stays data, not a prototype.
  const fields = Object.fromEntries(Object.entries(object).filter(([key]) => !used.has(key)));
  const resolved =
    level ?? parseLogLine(text, options.patterns === undefined ? {} : { patterns: options.patterns }).level;
  const value: JsonLogLine = { level: resolved, line: text, fields };
  if (ts !== undefined) value.ts = ts;
  return { ok: true, value };
}

/** Level names in any case; numbers as pino/bunyan (10 trace … 60 fatal) or, below 10, syslog severities. */
function mapLevel(value: unknown): LogLevel | undefined {
  if (typeof value === "string") {
    const name = LEVEL_NAMES[value.trim().toLowerCase()];
    if (name !== undefined) return name;
    const numeric = value.trim() === "" ? Number.NaN : Number(value);
    return Number.isFinite(numeric) ? mapLevel(numeric) : undefined;
  }
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  if (value < 10) {
    if (!Number.isInteger(value) || value > 7) return undefined;
    return value <= 3 ? "error" : value === 4 ? "warn" : value <= 6 ? "info" : "debug";
  }
  if (value >= 50) return "error";
  if (value >= 40) return "warn";
  if (value >= 30) return "info";
  return "debug";
}

function toEpochMs(value: unknown, now: number | undefined): number | undefined {
  if (typeof value === "string") {
    const trimmed = value.trim();
    if (/^\d+(?:\.\d+)?$/.test(trimmed)) return toEpochMs(Number(trimmed), now);
    const stamp = matchLeadingTimestamp(trimmed, now);
    // The whole string must be the stamp: "2025-11-26 05:17:14 and then some" is not a time.
    return stamp !== undefined && stamp.end === trimmed.length ? stamp.ms : undefined;
  }
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  const ms = Math.round(value < SECONDS_LIMIT ? value * 1000 : value);
  // Anything else stays in `fields`, where it is scrubbed: a card number in `ts` is not a time.
  return isPlausibleTime(ms) ? ms : undefined;
}
