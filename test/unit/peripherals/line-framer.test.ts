import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDelimiter } from "../../../src/config/delimiter.js";
import {
  createLineFramer,
  DEFAULT_MAX_LINE_BYTES,
  type LineEncoding,
  type LineFramer,
  MAX_PORT_BUFFER_BYTES,
} from "../../../src/peripherals/protocols/line-framer.js";
import { AgentError } from "../../../src/shared/errors.js";

const LF = Uint8Array.of(0x0a);
const CRLF = Uint8Array.of(0x0d, 0x0a);
const bytes = (text: string) => new Uint8Array(Buffer.from(text, "utf8"));
const latin1 = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** `data` cut at the given positions (taken modulo its length). */
function chunked(data: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  if (data.length === 0) return [data];
  const points = [...new Set(cuts.map((c) => c % data.length))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let start = 0;
  for (const p of points) {
    out.push(data.subarray(start, p));
    start = p;
  }
  out.push(data.subarray(start));
  return out;
}

interface Run {
  lines: string[];
  rest: string | undefined;
  overflows: number;
  maxBuffered: number;
}

function run(framer: LineFramer, chunks: readonly Uint8Array[]): Run {
  const lines: string[] = [];
  let maxBuffered = 0;
  for (const chunk of chunks) {
    lines.push(...framer.push(chunk));
    maxBuffered = Math.max(maxBuffered, framer.bufferedBytes);
  }
  return { lines, rest: framer.flush(), overflows: framer.overflows, maxBuffered };
}

// Delimiters that exercise the matcher: one byte, CRLF, a repeated byte and self-overlapping ones
// (a failed match must give back exactly the bytes that were content).
const delimiterArb = fc.constantFrom(
  LF,
  CRLF,
  Uint8Array.of(0x00, 0x00),
  bytes("aab"),
  bytes("abab"),
  bytes("\r\n\r\n"),
);
// For the garbage property: a delimiter that overlaps itself ("abab") lets garbage ending in "ab"
// complete it early and push its tail into the next line, which no framer can prevent. These ones
// only overlap themselves in control bytes, which cleaning removes again.
const resyncDelimiterArb = fc.constantFrom(LF, CRLF, Uint8Array.of(0x00, 0x00), bytes("\r\n\r\n"));
const cutsArb = fc.array(fc.nat(), { maxLength: 40 });
// What the framer promises never to return: C0 controls but TAB, DEL, C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const ALL_CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;
// Lines as a device would send them: printable text of any script, no control characters.
const validLineArb = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 60 })
  .map((s) => s.replace(ALL_CONTROLS, "").trim())
  .filter((s) => s !== "" && !s.includes("aab") && !s.includes("abab") && !s.endsWith("ab"));

describe("createLineFramer", () => {
  it("gives the same lines, rest and overflow count for any chunking when the bytes are arbitrary", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }),
        delimiterArb,
        fc.integer({ min: 1, max: 40 }),
        cutsArb,
        (data, delimiter, maxLineBytes, cuts) => {
          const whole = run(createLineFramer({ delimiter, maxLineBytes, encoding: "utf8" }), [data]);
          const pieces = run(
            createLineFramer({ delimiter, maxLineBytes, encoding: "utf8" }),
            chunked(data, cuts),
          );
          expect(pieces.lines).toEqual(whole.lines);
          expect(pieces.rest).toEqual(whole.rest);
          expect(pieces.overflows).toBe(whole.overflows);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("returns exactly the lines sent when valid UTF-8 lines are cut anywhere, even inside a character", () => {
    fc.assert(
      fc.property(
        fc.array(validLineArb, { maxLength: 20 }),
        delimiterArb,
        cutsArb,
        (lines, delimiter, cuts) => {
          const data = concat(lines.flatMap((line) => [bytes(line), delimiter]));
          const result = run(
            createLineFramer({ delimiter, maxLineBytes: 1024, encoding: "utf8" }),
            chunked(data, cuts),
          );
          expect(result.lines).toEqual(lines);
          expect(result.rest).toBeUndefined();
          expect(result.overflows).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("never throws, never buffers past the cap and captures the next line intact when garbage comes first", () => {
    const noise = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      // What a wrong baud rate looks like: mostly 0x00, 0xFF and framing-error bytes.
      fc
        .array(fc.constantFrom(0x00, 0xff, 0x80, 0xe0, 0xf0, 0xf8, 0xfe, 0x7f), { maxLength: 3000 })
        .map((a) => Uint8Array.from(a)),
    );
    fc.assert(
      fc.property(
        noise,
        resyncDelimiterArb,
        fc.integer({ min: 16, max: 256 }),
        cutsArb,
        (garbage, delimiter, max, cuts) => {
          const data = concat([garbage, delimiter, bytes("PINPAD READY"), delimiter]);
          const framer = createLineFramer({ delimiter, maxLineBytes: max, encoding: "utf8" });
          const result = run(framer, chunked(data, cuts));
          expect(result.maxBuffered).toBeLessThanOrEqual(max);
          expect(result.lines.at(-1)).toBe("PINPAD READY");
          for (const line of result.lines) expect(line).not.toMatch(CONTROL);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("counts exactly one overflow when garbage without a delimiter is longer than the cap", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 2000 }),
        fc.integer({ min: 2, max: 300 }),
        cutsArb,
        (raw, max, cuts) => {
          const garbage = raw.map((b) => (b === 0x0a ? 0x00 : b));
          const framer = createLineFramer({ delimiter: LF, maxLineBytes: max, encoding: "latin1" });
          for (const chunk of chunked(garbage, cuts)) framer.push(chunk);
          expect(framer.overflows).toBe(garbage.length > max ? 1 : 0);
          const after = framer.push(bytes("\nok\n"));
          expect(after.at(-1)).toBe("ok");
          // Dropped whole: nothing of an overlong line comes out later.
          if (garbage.length > max) expect(after).toEqual(["ok"]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("holds at most maxLineBytes and resyncs when 1 MiB arrives without a delimiter", () => {
    const framer = createLineFramer({
      delimiter: LF,
      maxLineBytes: DEFAULT_MAX_LINE_BYTES,
      encoding: "utf8",
    });
    const block = new Uint8Array(64 * 1024).fill(0x41);
    for (let i = 0; i < 16; i += 1) {
      expect(framer.push(block)).toEqual([]);
      expect(framer.bufferedBytes).toBeLessThanOrEqual(DEFAULT_MAX_LINE_BYTES);
    }
    expect(framer.overflows).toBe(1);
    expect(framer.push(bytes("tail of the long line\nE/PinPad: next line\n"))).toEqual([
      "E/PinPad: next line",
    ]);
    expect(framer.overflows).toBe(1);
  });

  it("keeps a line of exactly maxLineBytes and drops one a byte longer", () => {
    const framer = createLineFramer({ delimiter: LF, maxLineBytes: 8, encoding: "utf8" });
    expect(framer.push(bytes("12345678\n123456789\nok\n"))).toEqual(["12345678", "ok"]);
    expect(framer.overflows).toBe(1);
  });

  it("strips the CR of CRLF when the delimiter is LF", () => {
    const framer = createLineFramer({ delimiter: LF, maxLineBytes: 100, encoding: "utf8" });
    expect(framer.push(bytes("one\r\ntwo\r"))).toEqual(["one"]);
    expect(framer.push(bytes("\nthree\n"))).toEqual(["two", "three"]);
  });

  it("finds a CRLF delimiter split across chunks and keeps a lone LF out of the text", () => {
    const framer = createLineFramer({ delimiter: CRLF, maxLineBytes: 100, encoding: "utf8" });
    expect(framer.push(bytes("first\r"))).toEqual([]);
    expect(framer.push(bytes("\nsec\nond\r\r"))).toEqual(["first"]);
    expect(framer.bufferedBytes).toBe(8); // "sec\nond\r"; the last CR may still start a delimiter
    expect(framer.push(bytes("\n"))).toEqual(["second"]);
  });

  it("gives back the bytes of a partial match as text when the delimiter overlaps itself", () => {
    const framer = createLineFramer({ delimiter: bytes("abab"), maxLineBytes: 100, encoding: "utf8" });
    expect(framer.push(bytes("xaba"))).toEqual([]);
    expect(framer.push(bytes("babXaby"))).toEqual(["x"]);
    expect(framer.flush()).toBe("abXaby");
    // Bytes that might still have begun a delimiter belong to the rest when the stream ends.
    expect(framer.push(bytes("tail ab"))).toEqual([]);
    expect(framer.flush()).toBe("tail ab");
  });

  it("skips empty and blank lines", () => {
    const framer = createLineFramer({ delimiter: LF, maxLineBytes: 100, encoding: "utf8" });
    expect(framer.push(bytes("\n\n   \n\t\r\n\x00\x00\na\n"))).toEqual(["a"]);
  });

  it("drops C0 controls but TAB, DEL, C1 controls and whole ANSI colour sequences from lines", () => {
    const framer = createLineFramer({ delimiter: LF, maxLineBytes: 100, encoding: "utf8" });
    expect(framer.push(bytes("\x1b[31mE/Pin\x00Pad\x07:\tfail\x1b[0m\x7f\u0085\n"))).toEqual([
      "E/PinPad:\tfail",
    ]);
  });

  it.each<[LineEncoding, Uint8Array, string]>([
    ["utf8", bytes("café ✓"), "café ✓"],
    ["utf8", Uint8Array.of(0x6f, 0x6b, 0xff, 0xc3), "ok\ufffd\ufffd"],
    ["latin1", latin1("café"), "café"],
    // True ISO 8859-1: 0x80 is a C1 control (dropped), not the euro sign of windows-1252.
    ["latin1", Uint8Array.of(0x41, 0x80, 0x42), "AB"],
    ["ascii", Uint8Array.of(0x6f, 0x6b, 0xe9), "ok\ufffd"],
  ])("decodes %s bytes %o as %j", (encoding, data, expected) => {
    const framer = createLineFramer({ delimiter: LF, maxLineBytes: 100, encoding });
    expect(framer.push(concat([data, LF]))).toEqual([expected]);
  });

  it("returns the unterminated rest once on flush, and nothing for a line that overflowed", () => {
    const framer = createLineFramer({ delimiter: CRLF, maxLineBytes: 10, encoding: "utf8" });
    framer.push(bytes("partial\r"));
    expect(framer.flush()).toBe("partial");
    expect(framer.flush()).toBeUndefined();
    framer.push(bytes("much too long for ten"));
    expect(framer.flush()).toBeUndefined();
    expect(framer.overflows).toBe(1);
    expect(framer.push(bytes("next\r\n"))).toEqual(["next"]);
  });

  it("refuses a cap above the 64 KiB per-port budget", () => {
    expect(() => createLineFramer({ maxLineBytes: MAX_PORT_BUFFER_BYTES + 1 })).toThrow(/maxLineBytes/);
    expect(() => createLineFramer({ maxLineBytes: 0 })).toThrow(/maxLineBytes/);
    expect(createLineFramer({ maxLineBytes: MAX_PORT_BUFFER_BYTES }).bufferedBytes).toBe(0);
  });

  it("uses LF, 8 KiB and UTF-8 when options are left out", () => {
    const framer = createLineFramer();
    expect(framer.push(bytes(`${"é".repeat(4096)}\n${"x".repeat(8193)}\nend\r\n`))).toEqual([
      "é".repeat(4096),
      "end",
    ]);
    expect(framer.overflows).toBe(1);
  });
});

describe("parseDelimiter", () => {
  it.each<[string | undefined, number[]]>([
    [undefined, [0x0a]],
    ["\n", [0x0a]],
    ["\r\n", [0x0d, 0x0a]],
    ["\\r\\n", [0x0d, 0x0a]],
    ["\\x03", [0x03]],
    ["\\0", [0x00]],
    ["\\t|", [0x09, 0x7c]],
    ["\\\\n", [0x5c, 0x6e]],
    ["€", [0xe2, 0x82, 0xac]],
  ])("reads %j as bytes %j", (configured, expected) => {
    expect([...parseDelimiter(configured)]).toEqual(expected);
  });

  it.each<[string, RegExp]>([
    ["", /empty/],
    ["\\q", /unknown escape \\q/],
    ["\\x4", /two hex digits/],
    ["x".repeat(17), /at most 16/],
  ])("refuses %j with a message saying why", (configured, message) => {
    expect(() => parseDelimiter(configured)).toThrow(message);
    expect(() => parseDelimiter(configured)).toThrow(AgentError);
  });
});
