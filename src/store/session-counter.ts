import type { Logger } from "../shared/logger.js";
import type { CountersFile } from "./counters-file.js";
import type { MetaStore } from "./meta.js";

/** SessionIds reserved per write, so a connect attempt rarely needs the disk. */
const RESERVE_BLOCK = 100;

/**
 * MQTT sessionIds that only grow (Sparkplug B: a late Will of an older session must lose to the new
 * birth). Blocks are reserved both in the database and in the counters file, and the larger wins, so
 * losing either one never makes them go backwards. With the disk full, the reservation in hand is
 * used up before a connect has to wait for space; past it the ids still grow within this run.
 */
export function createSessionIds(counters: CountersFile, meta: MetaStore, log: Logger): () => number {
  const stored = Number(meta.get("sessionId") ?? 0);
  let reserved = Math.max(counters.read().sessionId, Number.isSafeInteger(stored) ? stored : 0);
  let next = reserved + 1;
  return () => {
    if (next > reserved) {
      const upTo = next + RESERVE_BLOCK - 1;
      try {
        meta.set("sessionId", String(upTo));
        counters.write({ ...counters.read(), sessionId: upTo });
        reserved = upTo;
      } catch (error) {
        log.error(
          { err: error, sessionId: next },
          "could not persist the sessionId reservation; using it anyway",
        );
      }
    }
    const id = next;
    next += 1;
    return id;
  };
}
