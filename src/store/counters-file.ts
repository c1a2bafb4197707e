import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Counters that must keep growing even if the database is quarantined and recreated: the MQTT
 * `sessionId` (a late Will from an old session must lose to the new birth, as in Sparkplug B) and a
 * reservation for outbox `seq` values (consumers de-duplicate by seq, so one must never come back).
 * They live in a small JSON file beside the database, replaced by an atomic rename after fsync.
 */
export interface CountersState {
  sessionId: number;
  /** Every seq handed out so far is <= this. */
  seqReserve: number;
}

export interface CountersFile {
  read(): CountersState;
  write(state: CountersState): void;
}

const EMPTY: CountersState = { sessionId: 0, seqReserve: 0 };

export function createCountersFile(path: string): CountersFile {
  return {
    read() {
      let raw: string;
      try {
        raw = readFileSync(path, "utf8");
      } catch {
        return { ...EMPTY };
      }
      try {
        const parsed = JSON.parse(raw) as Partial<CountersState>;
        return {
          sessionId: Number.isSafeInteger(parsed.sessionId) ? (parsed.sessionId as number) : 0,
          seqReserve: Number.isSafeInteger(parsed.seqReserve) ? (parsed.seqReserve as number) : 0,
        };
      } catch {
        // A torn or garbled file is worth less than the database's own counters, which still apply.
        return { ...EMPTY };
      }
    },
    write(state) {
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(state)}\n`, { mode: 0o600 });
      const fd = openSync(tmp, "r");
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      syncDirectory(dirname(path));
    },
  };
}

/** fsync a directory so a rename inside it survives power loss. */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some file systems (and Android's FUSE layers) refuse fsync on a directory; the rename stands.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
