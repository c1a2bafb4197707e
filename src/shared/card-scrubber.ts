/**
 * Masks card data in text before it is stored or published (REFERENCE 4; PCI DSS 3.3.1, 3.5.1, 10.x).
 *
 * Three detectors run over one string; each finding is a span, and overlapping spans count as one
 * redaction:
 * 1. PAN windows. A run is digits with at most one separator (space, `-`, `.`, NBSP) between two
 *    digits. Every window of 12–19 consecutive digits of a run that passes Luhn has its digits
 *    replaced by `X`; separators stay. No brand-prefix filter: prefix lists miss 2-series Mastercard.
 *    IMEIs (Luhn-valid, 15 digits) and about a quarter of epoch-ms timestamps are masked too: accepted.
 * 2. Track data (ISO 7813; Luhn not required). A run of 12+ digits followed by `^` is track 1: masked
 *    from its first digit up to the end sentinel `?` or the end of the line, name and discretionary
 *    data included (`%`, the format code `B` and `?` stay). 12+ unbroken digits followed by `=`/`D`
 *    and 4 digits are track 2: the digits, the separator and every following digit are masked; after
 *    a `;` start sentinel the mask goes on to `?` or the end of the line.
 * 3. EMV TLV hex dumps: the hex digits of the VALUE of tags 5A, 57, 56, 9F6B, 5F20, 9F1F, 9F20 become
 *    `X`; tag and length stay, unless their digits are part of a rule 1 window or of the digits in
 *    front of a track 2 `D` (an unspaced `5713…D…` loses its tag too).
 *
 * Every mask replaces one UTF-16 unit with one `X`, so the output always has the input's length.
 * Only ASCII digits count as digits. The text is returned as the same string when nothing matched.
 */

import { applyMask, countSpans, type Findings, findingsFor, isDigitCode, maskAll } from "./card-findings.js";
import { isTagStart, maskTlv } from "./card-tlv.js";
import { AgentError } from "./errors.js";

export interface ScrubResult {
  text: string;
  /** Distinct masked spans (a PAN window, a track, a TLV value); overlapping findings count once. */
  redactions: number;
}

export interface ScrubValueResult<T> {
  value: T | unknown;
  redactions: number;
}

const MIN_PAN = 12;
const MAX_PAN = 19;
const LUHN_DOUBLE: readonly number[] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];

function isRunSeparator(c: number): boolean {
  return c === 32 || c === 45 || c === 46 || c === 0xa0;
}

/** Index of the end sentinel `?` (kept) or of the end of the line, searching from `from`. */
function trackEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 63 || c === 10 || c === 13) return i;
  }
  return text.length;
}

/** Luhn over every 12–19-digit window of the run [start, last] holding `count` digits. */
function maskLuhnWindows(
  text: string,
  start: number,
  last: number,
  count: number,
  found: Findings | undefined,
): Findings | undefined {
  const pos = new Int32Array(count);
  const plain = new Uint8Array(count);
  const doubled = new Uint8Array(count);
  for (let i = start, k = 0; i <= last; i++) {
    const c = text.charCodeAt(i);
    if (!isDigitCode(c)) continue;
    const v = c - 48;
    pos[k] = i;
    plain[k] = v;
    doubled[k] = LUHN_DOUBLE[v] ?? 0;
    k++;
  }
  // Merged windows as flat [first, last] digit-index pairs, ends ascending. Only the longest valid
  // window ending at a digit matters: it contains the shorter ones with the same end. A new window
  // can only overlap a suffix of the stack, so merging is amortised O(1): the run costs O(19 n).
  const merged: number[] = [];
  for (let end = MIN_PAN - 1; end < count; end++) {
    const low = Math.max(0, end - MAX_PAN + 1);
    let sum = 0;
    let best = 0;
    for (let j = end, len = 1; j >= low; j--, len++) {
      sum += ((len & 1) === 0 ? doubled[j] : plain[j]) ?? 0;
      if (len >= MIN_PAN && sum % 10 === 0) best = len;
    }
    if (best === 0) continue;
    let first = end - best + 1;
    while (merged.length > 0 && (merged[merged.length - 1] ?? -1) >= first) {
      first = Math.min(first, merged[merged.length - 2] ?? first);
      merged.length -= 2;
    }
    merged.push(first, end);
  }
  if (merged.length === 0) return found;
  const out = findingsFor(text, found);
  for (let m = 0; m < merged.length; m += 2) {
    const from = merged[m] ?? 0;
    const to = merged[m + 1] ?? 0;
    for (let k = from; k <= to; k++) out.mask[pos[k] ?? 0] = 1;
    out.spans.push(pos[from] ?? 0, (pos[to] ?? 0) + 1);
  }
  return out;
}

/**
 * Track 1 (`…^`) or track 2 (`…=YYMM…`, `…DYYMM…`) right after the run [start, last], as the span
 * [first, end) to mask. Track 1 takes the whole run (ISO 7813 lets its PAN hold spaces); track 2, as
 * `\d{12,19}[=D]` reads, only the unbroken digits before `=`/`D` (all of them when there are more
 * than 19), so the spaced tag and length in front of a TLV 57 value stay readable.
 */
function findTrack(text: string, start: number, last: number): readonly [number, number] | undefined {
  const next = last + 1;
  const c = text.charCodeAt(next);
  if (c === 94) return [start, trackEnd(text, next)];
  if (c !== 61 && c !== 68 && c !== 100) return undefined;
  let first = last;
  while (first > start && isDigitCode(text.charCodeAt(first - 1))) first--;
  if (next - first < MIN_PAN) return undefined;
  for (let k = next + 1; k <= next + 4; k++) if (!isDigitCode(text.charCodeAt(k))) return undefined;
  let end = next + 5;
  while (isDigitCode(text.charCodeAt(end))) end++;
  if (first > 0 && text.charCodeAt(first - 1) === 59) end = trackEnd(text, end);
  return [first, end];
}

/** Could a TLV tag of interest start at `i` (a `5` or `9`)? Gates the hex pass. */
const NEXT_DIGIT = /[0-9]/g;

/** Masks card numbers, track data and EMV card tags in `text` (the rule at the top of this file). */
export function scrubCardData(text: string): ScrubResult {
  const n = text.length;
  let found: Findings | undefined;
  let maybeTlv = false;
  let i = 0;
  while (i < n) {
    if (!isDigitCode(text.charCodeAt(i))) {
      // Most of a log line is not digits: the regex engine skips to the next one faster than a loop.
      NEXT_DIGIT.lastIndex = i;
      i = NEXT_DIGIT.test(text) ? NEXT_DIGIT.lastIndex - 1 : n;
      continue;
    }
    const start = i;
    let last = i;
    let digits = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        digits++;
        last = i;
        if (!maybeTlv && (c === 53 || c === 57)) maybeTlv = isTagStart(text, i);
      } else if (!(isRunSeparator(c) && isDigitCode(text.charCodeAt(i + 1)))) {
        break;
      }
      i++;
    }
    i = last + 1;
    if (digits < MIN_PAN) continue;
    found = maskLuhnWindows(text, start, last, digits, found);
    const track = findTrack(text, start, last);
    if (track === undefined) continue;
    found = findingsFor(text, found);
    maskAll(found, track[0], track[1]);
    // All of the track is masked: skipping it keeps a line of many tracks linear. The skipped part
    // was not looked at for TLV tags, so the TLV pass runs.
    i = Math.max(i, track[1]);
    maybeTlv = true;
  }
  if (maybeTlv) found = maskTlv(text, found);
  if (found === undefined) return { text, redactions: 0 };
  return { text: applyMask(text, found), redactions: countSpans(found.spans) };
}

/** State of one `scrubValue` walk. */
interface Walk {
  redactions: number;
  ancestors: Set<object>;
}

function scrubNumberText(digitsText: string, original: unknown, walk: Walk): unknown {
  const result = scrubCardData(digitsText);
  if (result.redactions === 0) return original;
  walk.redactions += result.redactions;
  return result.text;
}

function isPlainObject(value: object): value is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  // A "__proto__" key (JSON.parse makes one) must stay a key, not become the prototype.
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function walkValue(value: unknown, walk: Walk): unknown {
  if (typeof value === "string") {
    const result = scrubCardData(value);
    walk.redactions += result.redactions;
    return result.text;
  }
  if (typeof value === "number") {
    const size = Math.abs(value);
    if (!Number.isInteger(value) || size < 1e11 || size >= 1e19) return value;
    // Above 2^53 JSON.parse has already rounded the digits, so Luhn says nothing: mask it whole.
    if (!Number.isSafeInteger(value)) {
      walk.redactions += 1;
      return "X".repeat(String(value).length);
    }
    return scrubNumberText(String(value), value, walk);
  }
  if (typeof value === "bigint") {
    const size = value < 0n ? -value : value;
    if (size < 100_000_000_000n || size >= 10_000_000_000_000_000_000n) return value;
    return scrubNumberText(value.toString(), value, walk);
  }
  if (typeof value !== "object" || value === null) return value;
  const isArray = Array.isArray(value);
  if (!isArray && !isPlainObject(value)) return value;
  if (walk.ancestors.has(value)) throw new AgentError("INTERNAL", "scrubValue: the value contains a cycle");
  walk.ancestors.add(value);
  try {
    return isArray ? walkArray(value, walk) : walkObject(value as Record<string, unknown>, walk);
  } finally {
    walk.ancestors.delete(value);
  }
}

function walkArray(value: readonly unknown[], walk: Walk): unknown {
  let copy: unknown[] | undefined;
  for (let i = 0; i < value.length; i++) {
    const item = value[i];
    const scrubbed = walkValue(item, walk);
    if (scrubbed !== item && copy === undefined) copy = value.slice(0, i);
    copy?.push(scrubbed);
  }
  return copy ?? value;
}

function walkObject(value: Record<string, unknown>, walk: Walk): unknown {
  const entries: [string, unknown][] = [];
  let changed = false;
  for (const key of Object.keys(value)) {
    const item = value[key];
    const keyResult = scrubCardData(key);
    walk.redactions += keyResult.redactions;
    const scrubbed = walkValue(item, walk);
    changed ||= keyResult.text !== key || scrubbed !== item;
    entries.push([keyResult.text, scrubbed]);
  }
  if (!changed) return value;
  const copy = Object.create(Object.getPrototypeOf(value) as object | null) as Record<string, unknown>;
  // Two keys masked to the same text keep the later value, as JSON.parse does with duplicate keys.
  for (const [key, item] of entries) setOwn(copy, key, item);
  return copy;
}

/**
 * Scrubs every string in a JSON-like value (objects, arrays, strings; object keys too); integers
 * whose decimal form has 12–19 digits are scrubbed as text and, if masked, replaced by the masked
 * string. Returns the same object identity when nothing changed. Never mutates the input. Only arrays
 * and plain objects are entered: other objects (Date, Map, class instances) are returned as they are.
 * Throws on a cycle (and, like JSON.stringify, on nesting deeper than the stack): the caller fails
 * closed.
 */
export function scrubValue(value: unknown): ScrubValueResult<unknown> {
  const walk: Walk = { redactions: 0, ancestors: new Set() };
  const scrubbed = walkValue(value, walk);
  return { value: scrubbed, redactions: walk.redactions };
}
