import { lstat } from "node:fs/promises";
import { errorMessage } from "../shared/errors.js";

/** Why an update waits (CONTRACT 9 `deferred`); none of them is a failure. */
export type DeferReason = "lock_held" | "outside_window" | "battery_low" | "disk_low";

export type PreconditionResult =
  | { ok: true }
  | { ok: false; reason: DeferReason; message: string; retryAfterMs: number };

/** How long to wait before checking again; `outside_window` waits until the window opens instead. */
export const RETRY_AFTER_MS = {
  /** A payment takes seconds to a few minutes. */
  lock_held: 30_000,
  battery_low: 5 * 60_000,
  disk_low: 10 * 60_000,
} as const;

const DAY_MINUTES = 24 * 60;

export interface PreconditionInput {
  /** While any of these exists (any content, even a dangling symlink), updates wait. */
  lockFiles: readonly string[];
  /** Locks the apps took through the intake (`POST /v1/locks/{name}`). */
  intakeLocks: { held(now: number): ReadonlyArray<{ name: string; expiresAt: number }> };
  /** Daily window, local time; `end` before `start` spans midnight. Absent: any time. */
  window?: { start: string; end: string } | undefined;
  now: Date | number;
  /**
   * Minutes since local midnight at `now`, fractions allowed. Terminals run in local time, so the
   * default reads the process's own time zone.
   */
  localMinutes?: (now: number) => number;
  /** Undefined: no battery (a countertop terminal), which never defers. */
  battery: () => Promise<{ pct: number; charging?: boolean } | undefined>;
  minBatteryPct: number;
  /** Bytes an unprivileged writer can still write in `dir` (statfs `bavail × bsize`). */
  freeBytes: (dir: string) => Promise<number>;
  /** Where the download and the staged tree go. */
  workDir: string;
  /** The caller passes 2 × (artifact + unpacked tree): room for the work and for what goes wrong. */
  neededBytes: number;
  /** lstat, injectable so a test can make it fail as a denied directory would. */
  statPath?: (path: string) => Promise<unknown>;
}

/**
 * Checks, in order, lock, window, battery, disk, and names the first one unmet (REFERENCE 6: report
 * `deferred`, never fail). Cheap checks go first, and a held lock is the likeliest reason to wait.
 *
 * - A lock file that cannot be checked (anything but ENOENT, e.g. EACCES) counts as held: updating
 *   under a payment costs more than waiting.
 * - Battery: the minimum applies whether or not the terminal is charging. A handheld is lifted off
 *   its dock to take a payment, so charging says little about the next minute, and a charging
 *   battery reaches the minimum soon anyway. A reader that throws defers (fail safe), as an absent
 *   battery does not.
 * - The wait for the window counts local minutes, so across a daylight-saving change it is an hour
 *   off; the check runs again then and either opens or names the rest of the wait.
 */
export async function checkPreconditions(input: PreconditionInput): Promise<PreconditionResult> {
  const now = typeof input.now === "number" ? input.now : input.now.getTime();
  return (
    (await checkLockFiles(input.lockFiles, input.statPath ?? lstat)) ??
    checkIntakeLocks(input.intakeLocks.held(now)) ??
    checkWindow(input.window, (input.localMinutes ?? systemLocalMinutes)(now)) ??
    (await checkBattery(input.battery, input.minBatteryPct)) ??
    (await checkDisk(input.freeBytes, input.workDir, input.neededBytes)) ?? { ok: true }
  );
}

type Deferral = Extract<PreconditionResult, { ok: false }>;

function defer(reason: DeferReason, message: string, retryAfterMs: number): Deferral {
  return { ok: false, reason, message, retryAfterMs };
}

async function checkLockFiles(
  paths: readonly string[],
  statPath: (path: string) => Promise<unknown>,
): Promise<Deferral | undefined> {
  for (const path of paths) {
    try {
      await statPath(path);
      return defer("lock_held", `lock file ${path} exists (the POS app is busy)`, RETRY_AFTER_MS.lock_held);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      const message = `lock file ${path} cannot be checked, so counts as held: ${errorMessage(error)}`;
      return defer("lock_held", message, RETRY_AFTER_MS.lock_held);
    }
  }
  return undefined;
}

function checkIntakeLocks(held: ReadonlyArray<{ name: string; expiresAt: number }>): Deferral | undefined {
  const first = held[0];
  if (first === undefined) return undefined;
  const others = held.length > 1 ? ` (and ${held.length - 1} more)` : "";
  return defer(
    "lock_held",
    `intake lock "${first.name}" is held until ${new Date(first.expiresAt).toISOString()}${others}`,
    RETRY_AFTER_MS.lock_held,
  );
}

function checkWindow(window: PreconditionInput["window"], minutes: number): Deferral | undefined {
  if (window === undefined) return undefined;
  const start = clockMinutes(window.start);
  const end = clockMinutes(window.end);
  if (isInside(start, end, minutes)) return undefined;
  const waitMinutes = (((start - minutes) % DAY_MINUTES) + DAY_MINUTES) % DAY_MINUTES;
  return defer(
    "outside_window",
    `outside the maintenance window ${window.start}-${window.end} (local time now ${formatClock(minutes)})`,
    Math.ceil(waitMinutes * 60_000),
  );
}

/** `[start, end)`; a window whose end is before its start runs over midnight. */
export function isInside(start: number, end: number, minutes: number): boolean {
  return start < end ? minutes >= start && minutes < end : minutes >= start || minutes < end;
}

async function checkBattery(
  battery: PreconditionInput["battery"],
  minPct: number,
): Promise<Deferral | undefined> {
  let sample: Awaited<ReturnType<PreconditionInput["battery"]>>;
  try {
    sample = await battery();
  } catch (error) {
    return defer(
      "battery_low",
      `battery level cannot be read: ${errorMessage(error)}`,
      RETRY_AFTER_MS.battery_low,
    );
  }
  if (sample === undefined || sample.pct >= minPct) return undefined;
  const charging = sample.charging === true ? " and charging" : "";
  const message = `battery at ${sample.pct}%${charging}; updates need at least ${minPct}%`;
  return defer("battery_low", message, RETRY_AFTER_MS.battery_low);
}

async function checkDisk(
  freeBytes: PreconditionInput["freeBytes"],
  dir: string,
  neededBytes: number,
): Promise<Deferral | undefined> {
  let free: number;
  try {
    free = await freeBytes(dir);
  } catch (error) {
    return defer(
      "disk_low",
      `free space in ${dir} cannot be read: ${errorMessage(error)}`,
      RETRY_AFTER_MS.disk_low,
    );
  }
  if (free >= neededBytes) return undefined;
  return defer(
    "disk_low",
    `${formatBytes(free)} free in ${dir}, ${formatBytes(neededBytes)} needed (${free} < ${neededBytes} bytes)`,
    RETRY_AFTER_MS.disk_low,
  );
}

function systemLocalMinutes(now: number): number {
  const date = new Date(now);
  return (
    date.getHours() * 60 + date.getMinutes() + (date.getSeconds() * 1000 + date.getMilliseconds()) / 60_000
  );
}

/** "HH:MM" as the config schema checked it. */
function clockMinutes(text: string): number {
  const [hours, minutes] = text.split(":").map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
}

function formatClock(minutes: number): string {
  const whole = Math.floor(minutes) % DAY_MINUTES;
  return `${String(Math.floor(whole / 60)).padStart(2, "0")}:${String(whole % 60).padStart(2, "0")}`;
}

function formatBytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
