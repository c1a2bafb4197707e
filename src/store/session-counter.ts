import type { CountersFile } from "./counters-file.js";
import type { MetaStore } from "./meta.js";

/**
 * The next MQTT sessionId, persisted before it is used. Kept both in the database and in the
 * counters file, and the larger wins, so losing either one never makes it go backwards.
 */
export function nextSessionId(counters: CountersFile, meta: MetaStore): number {
  const state = counters.read();
  const stored = Number(meta.get("sessionId") ?? 0);
  const next = Math.max(state.sessionId, Number.isSafeInteger(stored) ? stored : 0) + 1;
  meta.set("sessionId", String(next));
  counters.write({ ...state, sessionId: next });
  return next;
}
