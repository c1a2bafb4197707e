import { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { LockName, MAX_LOCK_TTL_SEC } from "../intake/schema.js";
import type { IntakeLock, IntakeLockRegistry } from "../intake/server.js";
import { AgentError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/** More live locks than this is an app gone wrong (a new name per payment, never released). */
export const MAX_INTAKE_LOCKS = 64;

const SUFFIX = ".json";
const TMP_SUFFIX = ".tmp";

const LockFile = z.strictObject({
  name: LockName,
  expiresAt: z.number().int().positive(),
});
type LockFile = z.infer<typeof LockFile>;

export interface IntakeLocksDeps {
  /** `dataDir/locks`; created if missing. */
  dir: string;
  /** Wall clock, ms. */
  now: () => number;
  log: Logger;
}

export interface IntakeLocks extends IntakeLockRegistry {
  /** Live locks at `now` (default: the clock's now). */
  held(now?: number): IntakeLock[];
}

/**
 * The locks apps take through the intake (`POST /v1/locks/{name}`), kept in memory and mirrored as
 * one small JSON file each, so a payment in progress still holds its lock after the agent restarts.
 *
 * - Taking a held lock extends it and never shortens it (two parts of an app may share a name);
 *   only `release` ends a lock early.
 * - Expiry is by wall clock, since it must span a restart. A clock set back would stretch a lock, so
 *   no lock lasts longer than the maximum TTL from now, whatever its file says.
 * - The files are renamed into place but not fsynced: the lock must outlive the agent, not the
 *   terminal; after a power cut the app that held it is gone too, and a torn file is dropped.
 * - Persisting is best effort: if the disk refuses, the lock still holds for this run (a warning is
 *   logged), which is the side that keeps a payment safe.
 */
export function createIntakeLocks(deps: IntakeLocksDeps): IntakeLocks {
  const { dir, now, log } = deps;
  const locks = new Map<string, number>();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  load();

  function fileOf(name: string): string {
    return join(dir, `${name}${SUFFIX}`);
  }

  function load(): void {
    const at = now();
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      // A temp file is a write cut short by a crash; the rename never happened.
      if (entry.endsWith(`${SUFFIX}${TMP_SUFFIX}`)) {
        remove(path);
        continue;
      }
      if (!entry.endsWith(SUFFIX)) continue;
      const lock = readLock(path, entry.slice(0, -SUFFIX.length));
      if (lock === undefined) {
        log.warn({ path }, "ignoring an unreadable intake lock file");
        remove(path);
      } else if (lock.expiresAt <= at) {
        remove(path);
      } else {
        locks.set(lock.name, Math.min(lock.expiresAt, at + MAX_LOCK_TTL_SEC * 1000));
      }
    }
  }

  /** Drops expired locks and clamps those a clock change stretched; returns the live ones. */
  function live(at: number): IntakeLock[] {
    const out: IntakeLock[] = [];
    for (const [name, expiresAt] of locks) {
      if (expiresAt <= at) {
        locks.delete(name);
        remove(fileOf(name));
        continue;
      }
      const clamped = Math.min(expiresAt, at + MAX_LOCK_TTL_SEC * 1000);
      if (clamped !== expiresAt) locks.set(name, clamped);
      out.push({ name, expiresAt: clamped });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  function persist(lock: IntakeLock): void {
    const path = fileOf(lock.name);
    const tmp = `${path}${TMP_SUFFIX}`;
    try {
      writeFileSync(tmp, `${JSON.stringify(lock)}\n`, { mode: 0o600 });
      renameSync(tmp, path);
    } catch (error) {
      log.warn({ err: error, name: lock.name }, "intake lock held for this run only: could not save it");
      remove(tmp);
    }
  }

  function remove(path: string): void {
    try {
      unlinkSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        log.warn({ err: error, path }, "could not remove an intake lock file");
    }
  }

  return {
    take(name, ttlSec) {
      checkName(name);
      if (!Number.isInteger(ttlSec) || ttlSec < 1 || ttlSec > MAX_LOCK_TTL_SEC)
        throw new AgentError("BAD_REQUEST", `ttlSec must be 1 to ${MAX_LOCK_TTL_SEC}, not ${ttlSec}`);
      const at = now();
      const current = live(at);
      const existing = locks.get(name);
      if (existing === undefined && current.length >= MAX_INTAKE_LOCKS) {
        throw new AgentError(
          "BUSY",
          `${current.length} intake locks are held; at most ${MAX_INTAKE_LOCKS} (release the ones done with)`,
        );
      }
      const lock = { name, expiresAt: Math.max(existing ?? 0, at + ttlSec * 1000) };
      locks.set(name, lock.expiresAt);
      if (lock.expiresAt !== existing) persist(lock);
      return lock;
    },

    release(name) {
      checkName(name);
      const wasLive = live(now()).some((lock) => lock.name === name);
      locks.delete(name);
      remove(fileOf(name));
      return wasLive;
    },

    held(at = now()) {
      return live(at);
    },
  };
}

function checkName(name: string): void {
  // The name becomes a file name: the schema's charset is what keeps it inside the directory.
  if (!LockName.safeParse(name).success) throw new AgentError("BAD_REQUEST", `bad lock name: ${name}`);
}

function readLock(path: string, name: string): LockFile | undefined {
  try {
    const parsed = LockFile.safeParse(JSON.parse(readFileSync(path, "utf8")));
    return parsed.success && parsed.data.name === name ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
