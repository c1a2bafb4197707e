import { type Findings, findingsFor } from "./card-findings.js";

/** EMV TLV hex dumps (rule 3 of card-scrubber.ts): the values of the card tags become `X`. */

export function isTagStart(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  const n = text.charCodeAt(i + 1) | 0x20; // lower-cases letters; digits keep their codes
  if (c === 53) return n === 97 || n === 102 || n === 54 || n === 55; // 5a 5f 56 57
  return n === 102; // 9f
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 0x20;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

type ValueFormat = "pan" | "track2" | "digits" | "ascii";
interface TagRule {
  tagBytes: 1 | 2;
  min: number;
  max: number;
  format: ValueFormat;
}

/**
 * EMV Book 3 Annex A: formats and lengths of the tags we redact. Minimums come from the smallest
 * real value (a 12-digit PAN; a track 2 with PAN, separator, expiry and service code) and keep random
 * hex (hashes, keys) from passing for a dump. All fit the one-byte length form (< 0x80).
 */
const TAG_RULES = new Map<number, TagRule>([
  [0x5a, { tagBytes: 1, min: 6, max: 10, format: "pan" }], // PAN
  [0x57, { tagBytes: 1, min: 10, max: 19, format: "track2" }], // Track 2 Equivalent Data
  [0x56, { tagBytes: 1, min: 16, max: 76, format: "ascii" }], // Track 1 Data
  [0x9f6b, { tagBytes: 2, min: 10, max: 19, format: "track2" }], // Track 2 Data
  [0x5f20, { tagBytes: 2, min: 2, max: 26, format: "ascii" }], // Cardholder Name
  [0x9f1f, { tagBytes: 2, min: 1, max: 76, format: "ascii" }], // Track 1 Discretionary Data
  [0x9f20, { tagBytes: 2, min: 1, max: 16, format: "digits" }], // Track 2 Discretionary Data
]);

/** Byte `k` of a hex region at nibble alignment `a`, or -1 when its two nibbles are not adjacent. */
function byteAt(text: string, hex: number[], a: number, k: number): number {
  const p = hex[a + 2 * k] ?? -2;
  const q = hex[a + 2 * k + 1] ?? -2;
  if (q !== p + 1) return -1;
  return hexValue(text.charCodeAt(p)) * 16 + hexValue(text.charCodeAt(q));
}

function nibbleFits(nibble: number, format: ValueFormat, padded: boolean): boolean {
  if (nibble === 15) return format !== "ascii"; // F: BCD padding
  if (padded && format === "pan") return false; // a PAN's F padding only trails
  if (nibble <= 9) return true;
  return format === "track2" && nibble === 13; // D: the track 2 field separator
}

function valueFits(text: string, hex: number[], a: number, from: number, len: number, format: ValueFormat) {
  let padded = false;
  for (let k = from; k < from + len; k++) {
    const b = byteAt(text, hex, a, k);
    if (b < 0) return false;
    if (format === "ascii") {
      if (b < 0x20 || b > 0x7e) return false;
      continue;
    }
    const high = b >> 4;
    if (!nibbleFits(high, format, padded)) return false;
    padded ||= high === 15;
    const low = b & 15;
    if (!nibbleFits(low, format, padded)) return false;
    padded ||= low === 15;
  }
  return true;
}

/**
 * The TLV heuristic. A hex region is hex digits with at most one space or `:` between two of them;
 * a byte is two adjacent hex digits, read at both nibble alignments (a dump may follow a stray hex
 * letter, as in `ID5A08…`). At every byte: a tag of interest, then a one-byte length inside the
 * tag's range whose value still fits in the rest of the region, then a value of the tag's format
 * (BCD with `F` padding, track 2 nibbles with `D`, or printable ASCII). Only then is it a dump, and
 * the value's hex digits are masked; scanning resumes after the value. No full BER parse: dumps are
 * logged cut, prefixed and concatenated. Not recognised: long-form lengths (`81 xx`, never needed
 * below 128 bytes) and bytes split by other separators (`-`, `,`).
 */
function maskTlvRegion(text: string, hex: number[], found: Findings | undefined): Findings | undefined {
  for (let a = 0; a < 2; a++) {
    const bytes = (hex.length - a) >> 1;
    let k = 0;
    while (k < bytes) {
      const b0 = byteAt(text, hex, a, k);
      let rule = TAG_RULES.get(b0);
      if (b0 === 0x9f || b0 === 0x5f) rule = TAG_RULES.get((b0 << 8) | byteAt(text, hex, a, k + 1));
      if (rule === undefined) {
        k++;
        continue;
      }
      const lengthAt = k + rule.tagBytes;
      const len = lengthAt < bytes ? byteAt(text, hex, a, lengthAt) : -1;
      const from = lengthAt + 1;
      if (
        len < rule.min ||
        len > rule.max ||
        from + len > bytes ||
        !valueFits(text, hex, a, from, len, rule.format)
      ) {
        k++;
        continue;
      }
      found = findingsFor(text, found);
      const first = a + 2 * from;
      const last = a + 2 * (from + len) - 1;
      for (let h = first; h <= last; h++) found.mask[hex[h] ?? 0] = 1;
      found.spans.push(hex[first] ?? 0, (hex[last] ?? 0) + 1);
      k = from + len;
    }
  }
  return found;
}

/** The smallest dump we redact: a two-byte tag, a length and a one-byte value. */
const MIN_REGION_NIBBLES = 8;

export function maskTlv(text: string, found: Findings | undefined): Findings | undefined {
  const hex: number[] = [];
  let i = 0;
  while (i < text.length) {
    if (hexValue(text.charCodeAt(i)) < 0) {
      i++;
      continue;
    }
    hex.length = 0;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (hexValue(c) >= 0) hex.push(i);
      else if (!((c === 32 || c === 58) && hexValue(text.charCodeAt(i + 1)) >= 0)) break;
      i++;
    }
    if (hex.length >= MIN_REGION_NIBBLES) found = maskTlvRegion(text, hex, found);
  }
  return found;
}
