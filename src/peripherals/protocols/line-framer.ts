// Splits a serial byte stream into log lines with a hard memory bound. serialport's own
// Delimiter/Readline parsers buffer without limit when the delimiter never comes (wrong baud rate,
// noise; REFERENCE.md section 1), so this framer replaces them: a line longer than `maxLineBytes`
// is dropped whole, counted, and the framer resyncs at the next delimiter.
//
// Per-port cap: the driver keeps no other buffer between the port and this framer, so the framer's
// buffer is the port's. `createLineFramer` refuses `maxLineBytes` above MAX_PORT_BUFFER_BYTES, which
// is how the 64 KiB per-port cap of REFERENCE.md holds.
import { MAX_DELIMITER_BYTES } from "../../config/delimiter.js";

export type LineEncoding = "utf8" | "latin1" | "ascii";

export interface LineFramerOptions {
  /** Bytes that end a line; removed from the output. See `parseDelimiter`. */
  delimiter: Uint8Array;
  /** Longest line kept, in raw bytes between delimiters (a CR before an LF delimiter counts). */
  maxLineBytes: number;
  encoding: LineEncoding;
}

export interface LineFramer {
  /**
   * Complete lines, delimiter removed, decoded, with ANSI escape sequences and control characters
   * except TAB dropped (the CR of a CRLF line with them); empty and blank lines are skipped.
   */
  push(chunk: Uint8Array): string[];
  /** The unterminated rest (e.g. when the port closes), if it holds a line; resets the framer. */
  flush(): string | undefined;
  /** Lines dropped because they exceeded maxLineBytes. */
  readonly overflows: number;
  /** Bytes of the line under construction; never more than maxLineBytes. */
  readonly bufferedBytes: number;
}

export const DEFAULT_MAX_LINE_BYTES = 8 * 1024;
export const MAX_PORT_BUFFER_BYTES = 64 * 1024;
const LF = 0x0a;

// ANSI colour/cursor sequences (logcat -v color, busybox) would leave "[31m" behind once ESC is
// dropped, so they go whole. Then C0 controls except TAB, DEL and C1 controls: bytes like these in a
// log line are line noise from a wrong baud rate, and NUL in particular breaks consumers downstream.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const ANSI_CSI = /\x1b\[[0-?]*[ -/]*[@-~]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const NEEDS_CLEANING = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
const HIGH_BYTE = /[\x80-\xff]/g;

/** KMP failure table: fail[m] = longest proper prefix of delimiter[0..m) that is also its suffix. */
function failureTable(delimiter: Uint8Array): Int32Array {
  const fail = new Int32Array(delimiter.length + 1);
  let k = 0;
  for (let m = 1; m < delimiter.length; m += 1) {
    while (k > 0 && delimiter[m] !== delimiter[k]) k = fail[k] as number;
    if (delimiter[m] === delimiter[k]) k += 1;
    fail[m + 1] = k;
  }
  return fail;
}

function decode(bytes: Uint8Array, encoding: LineEncoding): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Buffer (not TextDecoder): WHATWG "latin1" is really windows-1252. Invalid UTF-8 becomes U+FFFD.
  if (encoding === "utf8") return buf.toString("utf8");
  const text = buf.toString("latin1");
  // Node's "ascii" decoding strips the high bit, which turns noise into plausible letters; a
  // replacement character says "this byte was not ASCII" instead.
  return encoding === "ascii" ? text.replace(HIGH_BYTE, "\ufffd") : text;
}

function clean(text: string): string {
  if (!NEEDS_CLEANING.test(text)) return text;
  return text.replace(ANSI_CSI, "").replace(CONTROL, "");
}

export function createLineFramer(options: Partial<LineFramerOptions> = {}): LineFramer {
  const delimiter = options.delimiter ?? Uint8Array.of(LF);
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const encoding = options.encoding ?? "utf8";
  if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1 || maxLineBytes > MAX_PORT_BUFFER_BYTES) {
    throw new RangeError(
      `maxLineBytes must be an integer in 1..${MAX_PORT_BUFFER_BYTES}, got ${maxLineBytes}`,
    );
  }
  if (delimiter.length === 0 || delimiter.length > MAX_DELIMITER_BYTES) {
    throw new RangeError(`delimiter must be 1..${MAX_DELIMITER_BYTES} bytes`);
  }
  const single = delimiter.length === 1 ? (delimiter[0] as number) : -1;
  const fail = failureTable(delimiter);

  // The only buffer: content bytes of the current line. Bytes that may be the start of a delimiter
  // are not stored; `matched` counts them, and they are delimiter[0..matched) by definition.
  const buf = new Uint8Array(maxLineBytes);
  let len = 0;
  let matched = 0;
  // After an overflow: swallow bytes until the next delimiter.
  let discarding = false;
  let overflows = 0;

  function appendRange(src: Uint8Array, start: number, end: number): void {
    if (discarding) return;
    const n = end - start;
    if (len + n > maxLineBytes) {
      discarding = true;
      overflows += 1;
      len = 0;
      return;
    }
    buf.set(src.subarray(start, end), len);
    len += n;
  }

  function appendByte(byte: number): void {
    if (discarding) return;
    if (len === maxLineBytes) {
      discarding = true;
      overflows += 1;
      len = 0;
      return;
    }
    buf[len] = byte;
    len += 1;
  }

  function take(): string | undefined {
    const end = len;
    len = 0;
    if (discarding) {
      discarding = false;
      return undefined;
    }
    if (end === 0) return undefined;
    // The CR of a CRLF line (delimiter "\n") goes with the other control characters here.
    const text = clean(decode(buf.subarray(0, end), encoding));
    return text.trim() === "" ? undefined : text;
  }

  function pushSingle(chunk: Uint8Array, out: string[]): void {
    let start = 0;
    while (start < chunk.length) {
      const at = chunk.indexOf(single, start);
      if (at === -1) {
        appendRange(chunk, start, chunk.length);
        return;
      }
      appendRange(chunk, start, at);
      const line = take();
      if (line !== undefined) out.push(line);
      start = at + 1;
    }
  }

  function pushMulti(chunk: Uint8Array, out: string[]): void {
    for (let i = 0; i < chunk.length; i += 1) {
      const byte = chunk[i] as number;
      while (matched > 0 && delimiter[matched] !== byte) {
        // The bytes that fall out of the partial match were content after all.
        const fallback = fail[matched] as number;
        for (let j = 0; j < matched - fallback; j += 1) appendByte(delimiter[j] as number);
        matched = fallback;
      }
      if (delimiter[matched] === byte) {
        matched += 1;
        if (matched === delimiter.length) {
          matched = 0;
          const line = take();
          if (line !== undefined) out.push(line);
        }
      } else {
        appendByte(byte);
      }
    }
  }

  return {
    push(chunk) {
      const out: string[] = [];
      if (single >= 0) pushSingle(chunk, out);
      else pushMulti(chunk, out);
      return out;
    },
    flush() {
      for (let j = 0; j < matched; j += 1) appendByte(delimiter[j] as number);
      matched = 0;
      return take();
    },
    get overflows() {
      return overflows;
    },
    get bufferedBytes() {
      return len;
    },
  };
}
