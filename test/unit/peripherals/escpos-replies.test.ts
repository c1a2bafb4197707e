import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createReplySplitter, type EscPosReply } from "../../../src/peripherals/protocols/escpos-replies.js";
import {
  isAsbContinuation,
  isAsbHeader,
  isDleEotReply,
} from "../../../src/peripherals/protocols/escpos-status.js";

const XON = 0x11;
const XOFF = 0x13;
const dle = (byte: number): EscPosReply => ({ kind: "dle-eot", byte });
const asb = (b1: number, b2: number, b3: number, b4: number): EscPosReply => ({
  kind: "asb",
  bytes: [b1, b2, b3, b4],
});

/** Feed `bytes` in the given chunks; the replies and the discarded count at the end. */
function split(chunks: readonly Uint8Array[]): { replies: EscPosReply[]; discarded: number } {
  const splitter = createReplySplitter();
  const replies = chunks.flatMap((chunk) => splitter.push(chunk));
  return { replies, discarded: splitter.discarded };
}

/** Cut `bytes` at the given ascending offsets. */
function cut(bytes: readonly number[], at: readonly number[]): Uint8Array[] {
  const bounds = [0, ...at, bytes.length];
  return bounds.slice(1).map((end, i) => Uint8Array.from(bytes.slice(bounds[i], end)));
}

describe("createReplySplitter", () => {
  it("returns DLE EOT replies and ASB frames in order", () => {
    const bytes = [0x12, 0x10, 0x00, 0x00, 0x00, 0x1a, 0x38, 0x08, 0x0f, 0x00, 0x7e];
    expect(split([Uint8Array.from(bytes)])).toEqual({
      replies: [dle(0x12), asb(0x10, 0, 0, 0), dle(0x1a), asb(0x38, 0x08, 0x0f, 0), dle(0x7e)],
      discarded: 0,
    });
  });

  it("gives the same replies for a stream cut at any one or two points", () => {
    const bytes = [0x12, 0x10, 0x00, 0x03, 0x00, 0x05, 0x1a, 0x38, 0x08, 0x0f, 0x6f, 0x7e, 0x10];
    const whole = split([Uint8Array.from(bytes)]);
    // 0x05 is garbage; the final 0x10 is a frame still waiting for its bytes.
    expect(whole).toEqual({
      replies: [dle(0x12), asb(0x10, 0, 0x03, 0), dle(0x1a), asb(0x38, 0x08, 0x0f, 0x6f), dle(0x7e)],
      discarded: 1,
    });
    for (let i = 0; i <= bytes.length; i++) {
      for (let j = i; j <= bytes.length; j++) expect(split(cut(bytes, [i, j]))).toEqual(whole);
    }
    const byteByByte = bytes.map((b) => Uint8Array.of(b));
    expect(split(byteByByte)).toEqual(whole);
  });

  it("drops XON and XOFF anywhere, inside a frame too, without counting them", () => {
    const bytes = [XOFF, 0x12, XON, 0x10, XOFF, 0x00, XON, 0x00, XOFF, XON, 0x00, XON, 0x16, XOFF];
    expect(split([Uint8Array.from(bytes)])).toEqual({
      replies: [dle(0x12), asb(0x10, 0, 0, 0), dle(0x16)],
      discarded: 0,
    });
  });

  it("discards and counts bytes that start nothing", () => {
    // 0x00 is a continuation byte with no header; 0x92 and 0xff have bit 7 on; 0x01 has bit 0 on.
    expect(split([Uint8Array.of(0x00, 0x92, 0x12, 0xff, 0x01, 0x40)])).toEqual({
      replies: [dle(0x12)],
      discarded: 5,
    });
  });

  it("discards a broken frame and reads the byte that broke it as the next reply", () => {
    expect(split([Uint8Array.of(0x10, 0x00, 0x12)])).toEqual({ replies: [dle(0x12)], discarded: 2 });
    expect(split([Uint8Array.of(0x10, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00)])).toEqual({
      replies: [asb(0x18, 0, 0, 0)],
      discarded: 3,
    });
    expect(split([Uint8Array.of(0x10, 0x80, 0x12)])).toEqual({ replies: [dle(0x12)], discarded: 2 });
  });

  it("keeps a partial frame across pushes and drops it on reset", () => {
    const splitter = createReplySplitter();
    expect(splitter.push(Uint8Array.of(0x10, 0x00))).toEqual([]);
    expect(splitter.discarded).toBe(0);
    splitter.reset();
    expect(splitter.discarded).toBe(2);
    expect(splitter.push(Uint8Array.of(0x00, 0x00, 0x12))).toEqual([dle(0x12)]);
    expect(splitter.discarded).toBe(4);
  });

  it("holds at most one partial frame whatever arrives", () => {
    const splitter = createReplySplitter();
    const garbage = new Uint8Array(100_000).fill(0x10);
    expect(splitter.push(garbage)).toEqual([]);
    expect(splitter.discarded).toBe(99_999);
    expect(splitter.push(Uint8Array.of(0, 0, 0))).toEqual([asb(0x10, 0, 0, 0)]);
  });

  it("splits any mix of replies, frames, garbage, cut frames and flow control the same way in any chunking", () => {
    const byte = (pred: (b: number) => boolean) =>
      fc.integer({ min: 0, max: 255 }).filter((b) => pred(b) && b !== XON && b !== XOFF);
    const reply = byte(isDleEotReply).map((b) => ({ bytes: [b], replies: [dle(b)], discarded: 0 }));
    const frame = fc
      .tuple(byte(isAsbHeader), byte(isAsbContinuation), byte(isAsbContinuation), byte(isAsbContinuation))
      .map(([a, b, c, d]) => ({ bytes: [a, b, c, d], replies: [asb(a, b, c, d)], discarded: 0 }));
    // Garbage directly after a complete reply: anything that is neither a reply nor a header.
    const garbage = byte((b) => !isDleEotReply(b) && !isAsbHeader(b)).map((b) => ({
      bytes: [b],
      replies: [],
      discarded: 1,
    }));
    // A frame cut short, then a reply (a continuation byte after it would only extend the frame).
    const cutFrame = fc
      .tuple(byte(isAsbHeader), fc.array(byte(isAsbContinuation), { maxLength: 2 }), byte(isDleEotReply))
      .map(([h, rest, r]) => ({ bytes: [h, ...rest, r], replies: [dle(r)], discarded: 1 + rest.length }));
    const stream = fc.array(fc.oneof(reply, frame, garbage, cutFrame), { maxLength: 30 });
    const flow = fc.array(fc.tuple(fc.nat(), fc.constantFrom(XON, XOFF)), { maxLength: 10 });
    const cuts = fc.array(fc.nat(), { maxLength: 8 });

    fc.assert(
      fc.property(stream, flow, cuts, (items, flowBytes, cutPoints) => {
        const bytes = items.flatMap((i) => i.bytes);
        for (const [at, b] of flowBytes) bytes.splice(at % (bytes.length + 1), 0, b);
        const at = [...new Set(cutPoints.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        expect(split(cut(bytes, at))).toEqual({
          replies: items.flatMap((i) => i.replies),
          discarded: items.reduce((n, i) => n + i.discarded, 0),
        });
      }),
      { numRuns: 500, seed: 20_240_601 },
    );
  });
});
