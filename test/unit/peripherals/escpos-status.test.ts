import { describe, expect, it } from "vitest";
import {
  DISABLE_ASB,
  type DleEotReplies,
  decodeAsb,
  decodeErrorCause,
  decodeOfflineCause,
  decodePrinterStatus,
  decodeRollPaper,
  dleEotRequest,
  ENABLE_ASB,
  isAsbContinuation,
  isAsbHeader,
  isDleEotReply,
  type NormalisedStatus,
  OFFLINE_STATUS,
  statusChanges,
  statusFromAsb,
  statusFromDleEot,
  statusFromSunmi,
  statusWithoutReply,
} from "../../../src/peripherals/protocols/escpos-status.js";

const OK: NormalisedStatus = { online: true, paper: "ok", cover: "closed", cutter: "ok", error: "none" };
const BITS = [0, 1, 2, 3, 4, 5, 6, 7] as const;

/** For a decoder: which field each bit sets (null: no field, e.g. a fixed or reserved bit). */
function expectBits(
  decode: (b: number) => Record<string, boolean>,
  fieldOfBit: Record<number, string | readonly string[] | null>,
): void {
  const fields = Object.keys(decode(0));
  for (const index of BITS) {
    const named = fieldOfBit[index] ?? null;
    const set = new Set(named === null ? [] : typeof named === "string" ? [named] : named);
    const expected = Object.fromEntries(fields.map((f) => [f, set.has(f)]));
    expect(decode(1 << index), `bit ${index}`).toEqual(expected);
  }
}

describe("requests", () => {
  it("builds DLE EOT n as 10 04 n for every n", () => {
    for (const n of [1, 2, 3, 4] as const) expect([...dleEotRequest(n)]).toEqual([0x10, 0x04, n]);
  });

  it("enables ASB for drawer, online/offline, error and paper, and disables it with n = 0", () => {
    expect([...ENABLE_ASB]).toEqual([0x1d, 0x61, 0x0f]);
    expect([...DISABLE_ASB]).toEqual([0x1d, 0x61, 0x00]);
  });
});

describe("DLE EOT decoders", () => {
  it("decodes every bit of n=1 (printer status)", () => {
    expectBits(decodePrinterStatus, { 2: "drawerHigh", 3: "offline", 5: "waitingRecovery", 6: "feedButton" });
  });

  it("decodes every bit of n=2 (offline cause)", () => {
    expectBits(decodeOfflineCause, { 2: "coverOpen", 3: "feedingByButton", 5: "paperEndStop", 6: "error" });
  });

  it("decodes every bit of n=3 (error cause)", () => {
    expectBits(decodeErrorCause, {
      2: "mechanical",
      3: "autocutter",
      5: "unrecoverable",
      6: "autoRecoverable",
    });
  });

  it("decodes every bit of n=4 (roll paper), either bit of a pair counting", () => {
    expectBits(decodeRollPaper, { 2: "nearEnd", 3: "nearEnd", 5: "paperEnd", 6: "paperEnd" });
    expect(decodeRollPaper(0x12 | 0x0c | 0x60)).toEqual({ nearEnd: true, paperEnd: true });
  });

  it("reads nothing from the fixed bits, whatever they hold", () => {
    for (const decode of [decodePrinterStatus, decodeOfflineCause, decodeErrorCause, decodeRollPaper]) {
      expect(Object.values(decode(0x12)).some(Boolean)).toBe(false);
      for (let b = 0; b < 256; b++) expect(decode(b)).toEqual(decode((b & ~0x93) | 0x12));
    }
  });

  it("recognises a reply byte only when its fixed bits are 0x12", () => {
    const replies = Array.from({ length: 256 }, (_, b) => b).filter(isDleEotReply);
    expect(replies).toHaveLength(16);
    expect(replies).toContain(0x12);
    expect(replies).toContain(0x12 | 0x6c);
    expect(isDleEotReply(0x13)).toBe(false); // XOFF
    expect(isDleEotReply(0x11)).toBe(false); // XON
    expect(isDleEotReply(0x92)).toBe(false);
    expect(isDleEotReply(0x10)).toBe(false);
  });
});

describe("ASB decoder", () => {
  const fields = Object.keys(decodeAsb([0x10, 0, 0, 0]));
  // Field set by each bit of ASB bytes 1-3; bits not listed are fixed or reserved.
  const fieldOfBit: Array<Record<number, string>> = [
    { 2: "drawerHigh", 3: "offline", 5: "coverOpen", 6: "feedButton" },
    { 2: "mechanical", 3: "cutterError", 5: "unrecoverable", 6: "autoRecoverable" },
    { 0: "nearEnd", 1: "nearEnd", 2: "paperEnd", 3: "paperEnd" },
  ];
  const cases = fieldOfBit.flatMap((table, index) =>
    BITS.map((b): [number, number, string | null] => [index + 1, b, table[b] ?? null]),
  );

  it.each(cases)("decodes byte %i bit %i as %s", (byte, b, field) => {
    const bytes: [number, number, number, number] = [0x10, 0, 0, 0];
    bytes[byte - 1] = (bytes[byte - 1] ?? 0) | (1 << b);
    expect(decodeAsb(bytes)).toEqual(Object.fromEntries(fields.map((f) => [f, f === field])));
  });

  it("ignores byte 4 entirely", () => {
    const base = decodeAsb([0x10 | 0x28, 0x08, 0x0c, 0]);
    for (let b = 0; b < 256; b++) expect(decodeAsb([0x10 | 0x28, 0x08, 0x0c, b])).toEqual(base);
  });

  it("recognises a header only with fixed bits 0x10 and a continuation only with bits 4 and 7 off", () => {
    const all = Array.from({ length: 256 }, (_, b) => b);
    expect(all.filter(isAsbHeader)).toHaveLength(16);
    expect(all.filter(isAsbContinuation)).toHaveLength(64);
    expect(isAsbHeader(0x10)).toBe(true);
    expect(isAsbHeader(0x12)).toBe(false);
    expect(isAsbHeader(0x11)).toBe(false);
    // No byte is two things at once, which is what lets the splitter work without lookahead.
    for (const b of all) {
      expect([isDleEotReply(b), isAsbHeader(b), isAsbContinuation(b)].filter(Boolean).length).toBeLessThan(2);
    }
  });
});

describe("statusFromDleEot", () => {
  const full = { 1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12 } satisfies DleEotReplies;
  const cases: Array<[name: string, replies: DleEotReplies, expected: NormalisedStatus]> = [
    ["all clear", full, OK],
    ["offline bit", { ...full, 1: 0x1a }, { ...OK, online: false }],
    ["drawer and feed button change nothing", { ...full, 1: 0x12 | 0x44 }, OK],
    ["cover open (offline too)", { ...full, 1: 0x1a, 2: 0x16 }, { ...OK, online: false, cover: "open" }],
    ["paper near end", { ...full, 4: 0x1e }, { ...OK, paper: "near_end" }],
    ["paper end", { ...full, 1: 0x1a, 4: 0x7e }, { ...OK, online: false, paper: "out" }],
    ["stopped at paper end with n=4 clear", { ...full, 2: 0x32 }, { ...OK, paper: "out" }],
    ["autocutter error", { ...full, 2: 0x52, 3: 0x1a }, { ...OK, cutter: "error" }],
    ["mechanical error", { ...full, 2: 0x52, 3: 0x16 }, { ...OK, error: "recoverable" }],
    ["head hot", { ...full, 2: 0x52, 3: 0x52 }, { ...OK, error: "recoverable" }],
    ["unrecoverable wins", { ...full, 2: 0x52, 3: 0x72 }, { ...OK, error: "unrecoverable" }],
    ["cutter and unrecoverable", { ...full, 3: 0x3a }, { ...OK, cutter: "error", error: "unrecoverable" }],
    ["error bit with no cause bit", { ...full, 2: 0x52 }, { ...OK, error: "recoverable" }],
    ["no reply at all", {}, OFFLINE_STATUS],
    ["only n=1", { 1: 0x12 }, OK],
    ["n=1 missing", { 2: 0x16, 3: 0x12, 4: 0x7e }, { ...OK, online: false, cover: "open", paper: "out" }],
    ["n=3 missing, n=2 error bit", { 1: 0x12, 2: 0x52, 4: 0x12 }, { ...OK, error: "recoverable" }],
  ];

  it.each(cases)("maps %s", (_name, replies, expected) => {
    expect(statusFromDleEot(replies)).toEqual(expected);
  });

  it("keeps the previous fields of a table that did not answer", () => {
    const previous: NormalisedStatus = {
      online: true,
      paper: "near_end",
      cover: "open",
      cutter: "error",
      error: "none",
    };
    expect(statusFromDleEot({ 1: 0x12 }, previous)).toEqual(previous);
    expect(statusFromDleEot({ 1: 0x12, 4: 0x12 }, previous)).toEqual({ ...previous, paper: "ok" });
    expect(statusFromDleEot({ 1: 0x12, 2: 0x12 }, previous)).toEqual({
      ...previous,
      cover: "closed",
      cutter: "ok",
    });
    // An error bit that the previous status already explains keeps that explanation.
    expect(statusFromDleEot({ 1: 0x12, 2: 0x56 }, previous)).toEqual(previous);
  });

  it("goes offline without reply and keeps what was known", () => {
    const previous: NormalisedStatus = { ...OK, paper: "out" };
    expect(statusWithoutReply(previous)).toEqual({ ...previous, online: false });
    expect(statusFromDleEot({}, previous)).toEqual({ ...previous, online: false });
    expect(statusWithoutReply(undefined)).toEqual(OFFLINE_STATUS);
    expect(OFFLINE_STATUS).toEqual({
      online: false,
      paper: "ok",
      cover: "closed",
      cutter: "ok",
      error: "none",
    });
  });
});

describe("statusFromAsb", () => {
  const cases: Array<[name: string, bytes: [number, number, number, number], expected: NormalisedStatus]> = [
    ["all clear", [0x10, 0, 0, 0], OK],
    ["drawer and feed button change nothing", [0x54, 0, 0, 0], OK],
    ["offline", [0x18, 0, 0, 0], { ...OK, online: false }],
    ["cover open", [0x38, 0, 0, 0], { ...OK, online: false, cover: "open" }],
    ["near end", [0x10, 0, 0x03, 0], { ...OK, paper: "near_end" }],
    ["paper end", [0x18, 0, 0x0f, 0], { ...OK, online: false, paper: "out" }],
    ["cutter", [0x18, 0x08, 0, 0], { ...OK, online: false, cutter: "error" }],
    ["mechanical", [0x10, 0x04, 0, 0], { ...OK, error: "recoverable" }],
    ["head hot", [0x10, 0x40, 0, 0], { ...OK, error: "recoverable" }],
    ["unrecoverable wins", [0x10, 0x60, 0, 0], { ...OK, error: "unrecoverable" }],
    [
      "everything",
      [0x7c, 0x6c, 0x0f, 0x6f],
      { online: false, paper: "out", cover: "open", cutter: "error", error: "unrecoverable" },
    ],
  ];

  it.each(cases)("maps %s", (_name, bytes, expected) => {
    expect(statusFromAsb(bytes)).toEqual(expected);
  });

  it("does not read paper bits at their DLE EOT 4 positions", () => {
    expect(statusFromAsb([0x10, 0, 0x60, 0]).paper).toBe("ok");
    expect(statusFromAsb([0x10, 0, 0x0c, 0]).paper).toBe("out");
  });
});

describe("statusFromSunmi", () => {
  it.each([
    [0, OK],
    [-1000, { ...OK, paper: "out" }],
    [-1001, { ...OK, error: "recoverable" }],
    [-1010, { ...OK, error: "recoverable" }],
    [-1020, { ...OK, cover: "open" }],
    [-1030, { ...OK, cutter: "error" }],
    [-4242, { ...OK, error: "recoverable" }],
    [7, { ...OK, error: "recoverable" }],
  ] satisfies Array<[number, NormalisedStatus]>)("maps code %i", (code, expected) => {
    expect(statusFromSunmi(code)).toEqual(expected);
  });
});

describe("statusChanges", () => {
  const types = (prev: NormalisedStatus | undefined, next: NormalisedStatus) =>
    statusChanges(prev, next).map((c) => `${c.type.replace("peripheral.printer.", "")}:${c.severity}`);

  it("reports nothing for a first status that is all ok", () => {
    expect(statusChanges(undefined, OK)).toEqual([]);
  });

  it("reports only the problems of a first status, never online or a recovery", () => {
    expect(
      types(undefined, {
        online: false,
        paper: "near_end",
        cover: "open",
        cutter: "error",
        error: "recoverable",
      }),
    ).toEqual(["offline:high", "cover_open:high", "paper_near_end:low", "cutter_error:high", "error:medium"]);
    expect(types(undefined, { ...OK, paper: "out", error: "unrecoverable" })).toEqual([
      "paper_end:high",
      "error:high",
    ]);
  });

  it("reports nothing when nothing changed", () => {
    const bad: NormalisedStatus = {
      online: false,
      paper: "out",
      cover: "open",
      cutter: "error",
      error: "recoverable",
    };
    expect(statusChanges(bad, { ...bad })).toEqual([]);
  });

  const transitions: Array<
    [name: string, prev: NormalisedStatus, next: NormalisedStatus, expected: string[]]
  > = [
    ["going offline", OK, { ...OK, online: false }, ["offline:high"]],
    ["coming back online", { ...OK, online: false }, OK, ["online:info"]],
    ["paper near end", OK, { ...OK, paper: "near_end" }, ["paper_near_end:low"]],
    ["paper near end to out", { ...OK, paper: "near_end" }, { ...OK, paper: "out" }, ["paper_end:high"]],
    ["paper refilled", { ...OK, paper: "out" }, OK, ["paper_ok:info"]],
    ["paper refilled from near end", { ...OK, paper: "near_end" }, OK, ["paper_ok:info"]],
    ["cover opened", OK, { ...OK, cover: "open" }, ["cover_open:high"]],
    ["cover closed", { ...OK, cover: "open" }, OK, ["cover_closed:info"]],
    ["cutter failed", OK, { ...OK, cutter: "error" }, ["cutter_error:high"]],
    ["cutter recovered", { ...OK, cutter: "error" }, OK, ["cutter_ok:info"]],
    ["recoverable error", OK, { ...OK, error: "recoverable" }, ["error:medium"]],
    ["error got worse", { ...OK, error: "recoverable" }, { ...OK, error: "unrecoverable" }, ["error:high"]],
    ["error cleared", { ...OK, error: "unrecoverable" }, OK, ["error_cleared:info"]],
    [
      "cover open with paper out, then all recovered",
      { online: false, paper: "out", cover: "open", cutter: "ok", error: "none" },
      OK,
      ["online:info", "cover_closed:info", "paper_ok:info"],
    ],
  ];

  it.each(transitions)("reports %s", (_name, prev, next, expected) => {
    expect(types(prev, next)).toEqual(expected);
  });

  it("reports a silent printer as offline only, then its recovery as it happens", () => {
    const out: NormalisedStatus = { ...OK, paper: "out" };
    const silent = statusWithoutReply(out);
    expect(types(out, silent)).toEqual(["offline:high"]);
    expect(types(silent, OK)).toEqual(["online:info", "paper_ok:info"]);
  });

  it("gives every change the printer type prefix and a message", () => {
    for (const c of statusChanges(OK, {
      online: false,
      paper: "out",
      cover: "open",
      cutter: "error",
      error: "recoverable",
    })) {
      expect(c.type).toMatch(/^peripheral\.printer\.[a-z_]+$/);
      expect(c.message.length).toBeGreaterThan(0);
    }
  });
});
