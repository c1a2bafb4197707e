// Level and timestamp of one text log line. Runs on every captured line, so every default pattern
// is anchored or a plain word scan (no nested quantifiers: linear time on the 8 KiB lines the
// framer lets through).
import { AgentError } from "../../shared/errors.js";

export type LogLevel = "error" | "warn" | "info" | "debug";

export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

export interface LevelPattern {
  level: LogLevel;
  pattern: RegExp;
}

export interface ParsedLogLine {
  level: LogLevel;
  /** The line as received: a leading timestamp stays in the text. */
  line: string;
  /** ms since epoch, when the line starts with a recognisable timestamp. */
  ts?: number;
}

export interface ParseLogLineOptions {
  /** Tested in order, first match wins. Default: DEFAULT_LEVEL_PATTERNS. */
  patterns?: readonly LevelPattern[];
  /** Level of a line no pattern matches. Default "info". */
  defaultLevel?: LogLevel;
  /** Reference time for stamps without a year (syslog, logcat); without it they give no `ts`. */
  now?: number;
}

// Android logcat priorities: V D I W E F (A = assert, older F). Bracketed tags ([E], <W>) leave
// A out: "[A]" is a list marker far more often than an assert.
const LOGCAT_LETTERS: Record<LogLevel, string> = { error: "EFA", warn: "W", info: "I", debug: "DV" };
const TAG_LETTERS: Record<LogLevel, string> = { error: "EF", warn: "W", info: "I", debug: "DV" };
const WORDS: Record<LogLevel, readonly string[]> = {
  error: ["error", "err", "fatal", "crit", "critical", "emerg", "panic", "severe"],
  warn: ["warn", "warning"],
  info: ["info", "notice"],
  debug: ["debug", "trace", "verbose"],
};
// Syslog (RFC 5424 section 6.2.1): PRI = facility * 8 + severity, 0..191, no leading zeros.
const SEVERITIES: Record<LogLevel, readonly number[]> = {
  error: [0, 1, 2, 3],
  warn: [4],
  info: [5, 6],
  debug: [7],
};
// logcat threadtime `11-26 05:17:14.123  123  456 E Tag: msg` (optionally with a year) and the
// time/brief/tag formats `11-26 05:17:14.123 E/Tag( 123): msg`, `E/Tag( 123): msg`, `E/Tag: msg`.
// The tag must be followed by ":" or "(" so that "I/O error" is not read as logcat info.
const LOGCAT_TIME = String.raw`(?:\d{4}-)?\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+`;
// A head of digits, spaces, punctuation and the T/Z of ISO stamps: "2025-11-26T05:17:14Z ", "[12:00:01] ".
const HEAD = String.raw`^(?:[\d\s:.,/+\-\[\]()]|[TZ](?![A-Za-z]))*`;

function priAlternation(severities: readonly number[]): string {
  const values: string[] = [];
  for (let pri = 0; pri < 192; pri += 1) if (severities.includes(pri % 8)) values.push(String(pri));
  return values.join("|");
}

/** "err" → "[eE][rR][rR]": JavaScript (Node 20) has no inline case-insensitive group. */
function anyCase(word: string): string {
  return word.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`);
}

function buildDefaults(): LevelPattern[] {
  const out: LevelPattern[] = [];
  // 1. Structural: the device said so in a fixed position.
  for (const level of LOG_LEVELS) {
    const l = `[${LOGCAT_LETTERS[level]}]`;
    const brief = String.raw`${l}/[^\s:(]+\s*[:(]`;
    const source = String.raw`^(?:<(?:${priAlternation(SEVERITIES[level])})>|${LOGCAT_TIME}(?:\d+\s+\d+\s+${l}\s|${brief})|${brief})`;
    out.push({ level, pattern: new RegExp(source) });
  }
  // 2. A level word heading the line, after at most a timestamp: "2025-11-26T05:17:14Z INFO …",
  //    "[error] …". It beats any later word, so "INFO: retrying after error" is info.
  for (const level of LOG_LEVELS) {
    out.push({ level, pattern: new RegExp(`${HEAD}(?:${WORDS[level].join("|")})\\b`, "i") });
  }
  // 3. An UPPER-CASE level word or a bracketed tag anywhere: "[main] INFO c.f.Bar - …", "[W]", "<E>",
  //    "(warning)". Loggers print levels in capitals; prose uses lower case.
  for (const level of LOG_LEVELS) {
    const upper = WORDS[level].map((w) => w.toUpperCase()).join("|");
    const bracketed = WORDS[level].map(anyCase).join("|");
    const source = String.raw`\b(?:${upper})\b|[\[<(](?:${bracketed})[\]>):]|[\[<][${TAG_LETTERS[level]}][\]>]`;
    out.push({ level, pattern: new RegExp(source) });
  }
  // 4. A level word in any case anywhere: "card read error, retrying". Weakest evidence, last.
  for (const level of LOG_LEVELS) {
    out.push({ level, pattern: new RegExp(`\\b(?:${WORDS[level].join("|")})\\b`, "i") });
  }
  return out;
}

/**
 * The default level detection, in the order it is tried (first match wins):
 * 1. structural: syslog `<PRI>` at the start (severity = PRI mod 8: 0-3 error, 4 warn, 5-6 info,
 *    7 debug), the logcat priority letter of the threadtime, time, brief and tag formats;
 * 2. a level word heading the line, after at most a timestamp (any case);
 * 3. an UPPER-CASE level word or a bracketed tag (`[ERROR]`, `[E]`, `<W>`) anywhere;
 * 4. a level word in any case anywhere.
 * Inside each tier: error, warn, info, debug. Words are whole words only (`\b`): "errors" and
 * "ERR_TIMEOUT" do not count.
 */
export const DEFAULT_LEVEL_PATTERNS: readonly LevelPattern[] = Object.freeze(buildDefaults());

/**
 * Configured patterns, same semantics as the config schema: the string is a RegExp source, no
 * flags (case-insensitive matching needs character classes like `[Ee]rror`). Throws naming the
 * entry and the regex.
 */
export function compileLevelPatterns(config: readonly { level: LogLevel; regex: string }[]): LevelPattern[] {
  return config.map(({ level, regex }, index) => {
    if (!LOG_LEVELS.includes(level)) {
      throw new AgentError("BAD_REQUEST", `level pattern ${index}: unknown level ${JSON.stringify(level)}`);
    }
    try {
      return { level, pattern: new RegExp(regex) };
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new AgentError(
        "BAD_REQUEST",
        `level pattern ${index} (${level}): invalid regular expression ${JSON.stringify(regex)}: ${reason}`,
        { cause },
      );
    }
  });
}

export function parseLogLine(line: string, options: ParseLogLineOptions = {}): ParsedLogLine {
  const patterns = options.patterns ?? DEFAULT_LEVEL_PATTERNS;
  let level = options.defaultLevel ?? "info";
  for (const { level: candidate, pattern } of patterns) {
    // A /g or /y pattern remembers where it stopped; start every line from the beginning.
    if (pattern.global || pattern.sticky) pattern.lastIndex = 0;
    if (pattern.test(line)) {
      level = candidate;
      break;
    }
  }
  const ts = parseLeadingTimestamp(line, options.now);
  return ts === undefined ? { level, line } : { level, line, ts };
}

// ---- timestamps ----

// `2025-11-26T05:17:14.123Z`, `2025-11-26 05:17:14,123+01:00`, `2025-11-26 05:17:14` (no zone).
const ISO = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d(?::?\d\d)?)?(?!\d)/i;
// BSD syslog (RFC 3164) `Nov 26 05:17:14`, day space-padded; no year.
const SYSLOG =
  /^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?!\d)/;
// logcat `11-26 05:17:14.123`; no year.
const LOGCAT = /^(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d)\.(\d{1,9})(?!\d)/;
// What may come before the stamp: a syslog PRI with an optional RFC 5424 version, or a bracket.
const PREFIX = /^(?:<\d{1,3}>(?:1 )?|\[)/;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
// A stamp without a year that would lie further ahead of `now` than this is from last year.
const FUTURE_SLACK_MS = 24 * 3600 * 1000;

/**
 * ms since epoch of a timestamp at the start of `text`, or undefined.
 *
 * Stamps without a zone are taken as UTC: the agent cannot know a peripheral's clock zone, and a
 * wrong fixed offset is easier to correct downstream than a guess that changes with the terminal's
 * own settings. Stamps without a year (syslog, logcat) take the year of `now`, or the year before
 * when that would put them more than a day in the future (December lines read in January); with
 * no `now` they give undefined, so the function stays pure.
 */
export function parseLeadingTimestamp(text: string, now?: number): number | undefined {
  return matchLeadingTimestamp(text, now)?.ms;
}

/** parseLeadingTimestamp, plus where the stamp ends in `text` (for callers that need all of it). */
export function matchLeadingTimestamp(text: string, now?: number): { ms: number; end: number } | undefined {
  const prefix = PREFIX.exec(text);
  const skip = prefix === null ? 0 : prefix[0].length;
  const rest = skip === 0 ? text : text.slice(skip);
  const first = rest.charCodeAt(0);
  let match: RegExpExecArray | null = null;
  let ms: number | undefined;
  if (first >= 0x30 && first <= 0x39) {
    match = ISO.exec(rest);
    if (match !== null) {
      const m = match;
      const utc = utcMs(num(m[1]), num(m[2]), num(m[3]), num(m[4]), num(m[5]), num(m[6]), m[7]);
      const offset = zoneOffsetMs(m[8]);
      ms = utc === undefined || offset === undefined ? undefined : utc - offset;
    } else if (now !== undefined) {
      match = LOGCAT.exec(rest);
      const m = match;
      if (m !== null) {
        ms = withInferredYear(now, (year) =>
          utcMs(year, num(m[1]), num(m[2]), num(m[3]), num(m[4]), num(m[5]), m[6]),
        );
      }
    }
  } else if (now !== undefined) {
    match = SYSLOG.exec(rest);
    const m = match;
    if (m !== null) {
      const month = MONTHS.indexOf(m[1] as string) + 1;
      ms = withInferredYear(now, (year) =>
        utcMs(year, month, num(m[2]), num(m[3]), num(m[4]), num(m[5]), m[6]),
      );
    }
  }
  return match === null || ms === undefined ? undefined : { ms, end: skip + match[0].length };
}

function num(text: string | undefined): number {
  return Number(text);
}

function utcMs(
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number,
  second: number,
  fraction: string | undefined,
): number | undefined {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, "0"));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // Rejects 31 November and 29 February of common years instead of rolling them over.
  if (date.getUTCMonth() !== month - 1) return undefined;
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

function zoneOffsetMs(zone: string | undefined): number | undefined {
  if (zone === undefined || zone === "Z" || zone === "z") return 0;
  const digits = zone.slice(1).replace(":", "");
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
  if (hours > 14 || minutes > 59) return undefined;
  const sign = zone[0] === "-" ? -1 : 1;
  return sign * (hours * 60 + minutes) * 60_000;
}

function withInferredYear(now: number, at: (year: number) => number | undefined): number | undefined {
  const year = new Date(now).getUTCFullYear();
  const guess = at(year);
  if (guess !== undefined && guess <= now + FUTURE_SLACK_MS) return guess;
  // In the future (or 29 February of a common year): one year back.
  const previous = at(year - 1);
  return previous ?? guess;
}
