// ESC/POS printer status (REFERENCE §3): the request bytes, one decoder per reply table, and the
// mapping of every source (DLE EOT poll, Automatic Status Back, Sunmi codes) to one normalised status.
// Pure: no I/O, no clock; the driver owns timeouts and the port.
import type { Severity } from "../../shared/events.js";

export const DLE = 0x10;
export const EOT = 0x04;
export const ENQ = 0x05;
export const GS = 0x1d;
export const XON = 0x11;
export const XOFF = 0x13;

export type DleEotN = 1 | 2 | 3 | 4;

/** `DLE EOT n`: the printer answers each with exactly one byte; send the next only after it. */
export function dleEotRequest(n: DleEotN): Uint8Array {
  return Uint8Array.of(DLE, EOT, n);
}

/**
 * `GS a 0x0F`: Automatic Status Back on drawer (bit 0), online/offline incl. cover and feed button
 * (bit 1), errors (bit 2) and roll paper sensors (bit 3). Bits 1–3 carry every field of the normalised
 * status. Bit 0 is on too: a drawer change then costs one 4-byte frame that normalises to no change,
 * and the drawer bit stays current for whoever reads `decodeAsb`. Bits 4–7 stay 0: models differ on them.
 */
export const ENABLE_ASB: Uint8Array = Uint8Array.of(GS, 0x61, 0x0f);
/** `GS a 0`: no more unsolicited frames (before closing the port cleanly). */
export const DISABLE_ASB: Uint8Array = Uint8Array.of(GS, 0x61, 0x00);

/** One answered `DLE EOT n`: which table the byte belongs to. */
export interface PrinterStatusByte {
  n: DleEotN;
  byte: number;
}

/** The reply bytes of one poll round, keyed by n; a missing key means no reply arrived in time. */
export type DleEotReplies = { 1?: number; 2?: number; 3?: number; 4?: number };

const bit = (b: number, mask: number): boolean => (b & mask) !== 0;

/** A `DLE EOT` reply byte: fixed bits 0x12 (bit 1 and bit 4 on, bits 0 and 7 off). */
export function isDleEotReply(b: number): boolean {
  return (b & 0x93) === 0x12;
}

/** First byte of an ASB frame: fixed bits 0x10 (bit 4 on, bits 0, 1 and 7 off). */
export function isAsbHeader(b: number): boolean {
  return (b & 0x93) === 0x10;
}

/** Bytes 2–4 of an ASB frame: bits 4 and 7 off. */
export function isAsbContinuation(b: number): boolean {
  return (b & 0x90) === 0;
}

/** `DLE EOT 1`, printer status. */
export function decodePrinterStatus(b: number): {
  offline: boolean;
  drawerHigh: boolean;
  waitingRecovery: boolean;
  feedButton: boolean;
} {
  return {
    offline: bit(b, 0x08),
    drawerHigh: bit(b, 0x04),
    waitingRecovery: bit(b, 0x20),
    feedButton: bit(b, 0x40),
  };
}

/** `DLE EOT 2`, offline cause. */
export function decodeOfflineCause(b: number): {
  coverOpen: boolean;
  feedingByButton: boolean;
  paperEndStop: boolean;
  error: boolean;
} {
  return {
    coverOpen: bit(b, 0x04),
    feedingByButton: bit(b, 0x08),
    paperEndStop: bit(b, 0x20),
    error: bit(b, 0x40),
  };
}

/** `DLE EOT 3`, error cause. */
export function decodeErrorCause(b: number): {
  mechanical: boolean;
  autocutter: boolean;
  unrecoverable: boolean;
  autoRecoverable: boolean;
} {
  return {
    mechanical: bit(b, 0x04),
    autocutter: bit(b, 0x08),
    unrecoverable: bit(b, 0x20),
    autoRecoverable: bit(b, 0x40),
  };
}

/**
 * `DLE EOT 4`, roll paper sensors. Epson sets both bits of a pair together; either one counts, so a
 * clone that sets only one is not read as "paper ok".
 */
export function decodeRollPaper(b: number): { nearEnd: boolean; paperEnd: boolean } {
  return { nearEnd: bit(b, 0x0c), paperEnd: bit(b, 0x60) };
}

/** One ASB frame. Byte 4 holds only reserved bits on roll printers and is ignored. */
export function decodeAsb(bytes: readonly [number, number, number, number]): {
  offline: boolean;
  coverOpen: boolean;
  feedButton: boolean;
  drawerHigh: boolean;
  mechanical: boolean;
  cutterError: boolean;
  unrecoverable: boolean;
  autoRecoverable: boolean;
  nearEnd: boolean;
  paperEnd: boolean;
} {
  const [first, second, third] = bytes;
  return {
    drawerHigh: bit(first, 0x04),
    offline: bit(first, 0x08),
    coverOpen: bit(first, 0x20),
    feedButton: bit(first, 0x40),
    mechanical: bit(second, 0x04),
    cutterError: bit(second, 0x08),
    unrecoverable: bit(second, 0x20),
    autoRecoverable: bit(second, 0x40),
    // Not the DLE EOT 4 positions: in ASB the pairs sit two bits lower.
    nearEnd: bit(third, 0x03),
    paperEnd: bit(third, 0x0c),
  };
}

export interface NormalisedStatus {
  /** Answering and not reporting offline (a printer goes offline while its cover is open or paper is out). */
  online: boolean;
  paper: "ok" | "near_end" | "out";
  cover: "closed" | "open";
  cutter: "ok" | "error";
  /** Errors other than the cutter's: mechanical and head temperature are recoverable. */
  error: "none" | "recoverable" | "unrecoverable";
}

/**
 * "No reply" when nothing is known yet. The other fields say ok because nothing is known about them;
 * once a status is known use `statusWithoutReply(previous)`, which keeps the known conditions, so
 * that going silent is reported as offline and not as paper, cover and errors recovering.
 */
export const OFFLINE_STATUS: NormalisedStatus = Object.freeze({
  online: false,
  paper: "ok",
  cover: "closed",
  cutter: "ok",
  error: "none",
});

/** The printer stopped answering: offline, every other condition as last known. */
export function statusWithoutReply(previous: NormalisedStatus | undefined): NormalisedStatus {
  return previous === undefined ? { ...OFFLINE_STATUS } : { ...previous, online: false };
}

function paperFrom(nearEnd: boolean, paperEnd: boolean): NormalisedStatus["paper"] {
  if (paperEnd) return "out";
  return nearEnd ? "near_end" : "ok";
}

/**
 * A poll round. Missing n=1 means offline; a missing table leaves its fields as in `previous`
 * (ok when there is none), since some clones never answer n=3 or n=4. n=2 is only the summary of
 * the other tables: it fills in "paper out" and "some error" when their own reply is missing, and
 * its clear error bit means no error at all.
 */
export function statusFromDleEot(replies: DleEotReplies, previous?: NormalisedStatus): NormalisedStatus {
  const base = previous ?? OFFLINE_STATUS;
  const printer = replies[1] === undefined ? undefined : decodePrinterStatus(replies[1]);
  const offline = replies[2] === undefined ? undefined : decodeOfflineCause(replies[2]);
  const errors = replies[3] === undefined ? undefined : decodeErrorCause(replies[3]);
  const roll = replies[4] === undefined ? undefined : decodeRollPaper(replies[4]);

  let paper = roll === undefined ? base.paper : paperFrom(roll.nearEnd, roll.paperEnd);
  if (offline?.paperEndStop) paper = "out";

  let cutter = base.cutter;
  let error = base.error;
  if (errors !== undefined) {
    cutter = errors.autocutter ? "error" : "ok";
    if (errors.unrecoverable) error = "unrecoverable";
    else if (errors.autoRecoverable || errors.mechanical) error = "recoverable";
    else error = "none";
    // An error the cause table has no bit for still stops the printer.
    if (offline?.error && !errors.autocutter && error === "none") error = "recoverable";
  } else if (offline !== undefined) {
    if (!offline.error) {
      cutter = "ok";
      error = "none";
    } else if (cutter === "ok" && error === "none") {
      error = "recoverable";
    }
  }

  return {
    online: printer !== undefined && !printer.offline,
    paper,
    cover: offline === undefined ? base.cover : offline.coverOpen ? "open" : "closed",
    cutter,
    error,
  };
}

/** An ASB frame carries every field, so no previous status is needed. */
export function statusFromAsb(bytes: readonly [number, number, number, number]): NormalisedStatus {
  const asb = decodeAsb(bytes);
  let error: NormalisedStatus["error"] = "none";
  if (asb.unrecoverable) error = "unrecoverable";
  else if (asb.autoRecoverable || asb.mechanical) error = "recoverable";
  return {
    online: !asb.offline,
    paper: paperFrom(asb.nearEnd, asb.paperEnd),
    cover: asb.coverOpen ? "open" : "closed",
    cutter: asb.cutterError ? "error" : "ok",
    error,
  };
}

export const SUNMI_READY = 0;
export const SUNMI_PAPER_OUT = -1000;
export const SUNMI_JAM = -1001;
export const SUNMI_HOT = -1010;
export const SUNMI_COVER_OPEN = -1020;
export const SUNMI_CUTTER = -1030;

/**
 * Sunmi built-in printer codes. The service answered, so the printer is online in every case. A jam
 * clears once the paper is pulled free and a hot head cools down: both recoverable. A code not in the
 * table is reported as a recoverable error rather than as ready, so a new firmware's failure is seen.
 */
export function statusFromSunmi(code: number): NormalisedStatus {
  const ready: NormalisedStatus = { online: true, paper: "ok", cover: "closed", cutter: "ok", error: "none" };
  switch (code) {
    case SUNMI_READY:
      return ready;
    case SUNMI_PAPER_OUT:
      return { ...ready, paper: "out" };
    case SUNMI_COVER_OPEN:
      return { ...ready, cover: "open" };
    case SUNMI_CUTTER:
      return { ...ready, cutter: "error" };
    default:
      // SUNMI_JAM, SUNMI_HOT and anything unknown.
      return { ...ready, error: "recoverable" };
  }
}

export interface StatusChange {
  type: string;
  severity: Severity;
  message: string;
}

const PREFIX = "peripheral.printer.";

function change(type: string, severity: Severity, message: string): StatusChange {
  return { type: `${PREFIX}${type}`, severity, message };
}

/**
 * The events between two statuses, in a fixed order (online, cover, paper, cutter, error). From
 * `undefined` (the first status) only problems are reported, never "online" or a recovery.
 */
export function statusChanges(prev: NormalisedStatus | undefined, next: NormalisedStatus): StatusChange[] {
  // Against an undefined prev every field compares with its ok value, so no recovery can come out.
  const out: StatusChange[] = [];

  if (next.online !== (prev?.online ?? true)) {
    out.push(
      next.online
        ? change("online", "info", "printer is online again")
        : change("offline", "high", "printer is offline"),
    );
  }

  if (next.cover !== (prev?.cover ?? "closed")) {
    out.push(
      next.cover === "open"
        ? change("cover_open", "high", "printer cover is open")
        : change("cover_closed", "info", "printer cover is closed"),
    );
  }

  if (next.paper !== (prev?.paper ?? "ok")) {
    if (next.paper === "out") out.push(change("paper_end", "high", "printer is out of paper"));
    else if (next.paper === "near_end")
      out.push(change("paper_near_end", "low", "printer paper is near its end"));
    else out.push(change("paper_ok", "info", "printer paper is ok again"));
  }

  if (next.cutter !== (prev?.cutter ?? "ok")) {
    out.push(
      next.cutter === "error"
        ? change("cutter_error", "high", "printer autocutter error")
        : change("cutter_ok", "info", "printer autocutter is ok again"),
    );
  }

  if (next.error !== (prev?.error ?? "none")) {
    if (next.error === "unrecoverable")
      out.push(change("error", "high", "printer has an unrecoverable error"));
    else if (next.error === "recoverable")
      out.push(change("error", "medium", "printer has a recoverable error"));
    else out.push(change("error_cleared", "info", "printer error cleared"));
  }

  return out;
}
