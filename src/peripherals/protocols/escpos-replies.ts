// Splits what an ESC/POS printer sends into DLE EOT reply bytes and 4-byte ASB frames, whatever
// the chunking. The fixed bits make every byte self-describing (REFERENCE §3): a DLE EOT reply and
// an ASB header both have bit 4 on, ASB bytes 2–4 have it off, so one byte of lookahead is never
// needed and a lost byte costs at most the frame it was in.
import { isAsbContinuation, isAsbHeader, isDleEotReply, XOFF, XON } from "./escpos-status.js";

export type EscPosReply =
  | { kind: "dle-eot"; byte: number }
  | { kind: "asb"; bytes: [number, number, number, number] };

export interface ReplySplitter {
  push(chunk: Uint8Array): EscPosReply[];
  /** Bytes dropped as garbage or as part of a broken ASB frame (XON/XOFF not counted); never decreases. */
  readonly discarded: number;
  /** Drop a partial ASB frame (after the port reopens), counting its bytes as discarded. */
  reset(): void;
}

export function createReplySplitter(): ReplySplitter {
  // At most 3 bytes of an unfinished ASB frame: memory is bounded whatever arrives.
  let partial: number[] = [];
  let discarded = 0;

  function dropPartial(): void {
    discarded += partial.length;
    partial = [];
  }

  function push(chunk: Uint8Array): EscPosReply[] {
    const out: EscPosReply[] = [];
    for (const b of chunk) {
      // Flow control may land anywhere, even inside a frame; neither byte is a valid reply or continuation.
      if (b === XON || b === XOFF) continue;
      if (partial.length > 0) {
        if (isAsbContinuation(b)) {
          partial.push(b);
          if (partial.length === 4) {
            const [b1 = 0, b2 = 0, b3 = 0, b4 = 0] = partial;
            out.push({ kind: "asb", bytes: [b1, b2, b3, b4] });
            partial = [];
          }
          continue;
        }
        // The frame broke off; this byte may well start the next reply.
        dropPartial();
      }
      if (isDleEotReply(b)) out.push({ kind: "dle-eot", byte: b });
      else if (isAsbHeader(b)) partial.push(b);
      else discarded += 1;
    }
    return out;
  }

  return {
    push,
    get discarded() {
      return discarded;
    },
    reset: dropPartial,
  };
}
