import { z } from "zod";
import type { Clock } from "../shared/clock.js";
import type { AgentEvent } from "../shared/events.js";
import type { MetaStore } from "../store/meta.js";

export interface ClockSanity {
  /** Runs the checks now (at start and every heartbeat); returns events to record on a change of trust (never one per check). */
  check(): AgentEvent[];
  /** False until the first check(): callers gating on the clock must check first. */
  trusted(): boolean;
  /** Why not, when untrusted. */
  reason(): string | undefined;
}

/** A wall time we believed, with what ties it to a boot. JSON read back from SQLite is a trust boundary. */
export const TrustedTime = z.object({
  wall: z.number(),
  bootId: z.string().optional(),
  uptimeSec: z.number().optional(),
});
export type TrustedTime = z.infer<typeof TrustedTime>;

/** The last trust state reported, so a restart neither repeats nor misses a change. */
export const ClockTrust = z.object({
  trusted: z.boolean(),
  reason: z.string().optional(),
  since: z.number(),
});
export type ClockTrust = z.infer<typeof ClockTrust>;

export const LAST_TRUSTED_KEY = "clockLastTrusted";
export const TRUST_KEY = "clockTrust";

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
export const DEFAULT_MAX_AHEAD_MS = 20 * 365 * DAY_MS;
export const DEFAULT_TOLERANCE_MS = 5 * MINUTE_MS;
/** The last trusted time goes to flash at most this often. */
export const PERSIST_EVERY_MS = MINUTE_MS;
/** How long a clock that jumped ahead within a boot must run steadily before it is trusted again. */
export const SETTLE_MS = 10 * MINUTE_MS;

type Rule = "invalid" | "before-build" | "years-ahead" | "behind-last-trusted" | "went-back" | "jumped-ahead";
type Verdict = { trusted: true } | { trusted: false; rule: Rule; reason: string; reference: number };
/** A wall reading with what measures time elapsed since: uptime (all runs of a boot), monotonic (this run). */
interface Reading {
  wall: number;
  uptimeSec: number | undefined;
  mono: number | undefined;
}

/**
 * Decides whether the wall clock can be believed. Untrusted when:
 * 1. it is before the agent's build time (a terminal without RTC boots at 1970 or at its firmware date);
 * 2. it is more than `maxAheadMs` after the build time ("years ahead");
 * 3. it is more than `toleranceMs` behind the last trusted time persisted in meta: time never goes
 *    backwards across runs;
 * 4. within one boot, it disagrees by more than `toleranceMs` with the last trusted time plus the time
 *    elapsed since. Elapsed time comes from uptime, which counts suspend, within this run and across runs
 *    of the same boot id; without uptime, from the monotonic clock of this run, which stops in suspend,
 *    so then only a clock running behind counts.
 *
 * Recovery and the poisoned-reference problem:
 * - Only trusted readings are persisted, so a 1970 boot never becomes the reference. When NTP then sets
 *   the clock within the same boot, no reference of this boot exists yet and rules 1 to 3 decide: trusted.
 * - A clock that went back (rule 3 or 4) is trusted again once it agrees with the reference.
 * - A clock that jumped ahead within a boot (rule 4) may be NTP correcting a plausible but wrong RTC that
 *   we had trusted. It is untrusted until it has run steadily from the new time for SETTLE_MS, then that
 *   time becomes the reference, so one bad reference cannot distrust the rest of the boot.
 * - Not handled: an RTC far ahead (within `maxAheadMs`) that we trusted, then NTP sets back. Rule 3 keeps
 *   the clock untrusted until real time passes the poisoned reference; a smaller `maxAheadMs` narrows it.
 *
 * The trust state is persisted on each change, so events flip exactly when trust does, across restarts too.
 * The caller should record the returned events in the same transaction as check() when it can.
 */
export function createClockSanity(deps: {
  clock: Clock;
  buildTime: number;
  bootId: string | undefined;
  uptimeSec: () => number | undefined;
  meta: Pick<MetaStore, "getJson" | "setJson">;
  maxAheadMs?: number;
  toleranceMs?: number;
}): ClockSanity {
  const { clock, buildTime, bootId, meta } = deps;
  const maxAheadMs = deps.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS;
  const toleranceMs = deps.toleranceMs ?? DEFAULT_TOLERANCE_MS;

  const stored = TrustedTime.safeParse(meta.getJson<unknown>(LAST_TRUSTED_KEY));
  let lastTrusted: TrustedTime | undefined = stored.success ? stored.data : undefined;
  const storedTrust = ClockTrust.safeParse(meta.getJson<unknown>(TRUST_KEY));
  // Nothing reported yet reads as trusted: the normal start then raises no event.
  let reported: ClockTrust | undefined = storedTrust.success ? storedTrust.data : undefined;

  let current: Verdict | undefined;
  /** The latest trusted reading of this run. */
  let anchor: Reading | undefined;
  /** Where a clock that jumped ahead restarted from, while it settles. */
  let candidate: Reading | undefined;
  let persistedAtMono: number | undefined;

  function evaluate(now: Reading): Verdict {
    const { wall } = now;
    if (!Number.isFinite(wall)) {
      return { trusted: false, rule: "invalid", reason: "wall clock reads no number", reference: buildTime };
    }
    if (wall < buildTime) {
      return {
        trusted: false,
        rule: "before-build",
        reason: `wall clock ${iso(wall)} is before the agent's build time ${iso(buildTime)}`,
        reference: buildTime,
      };
    }
    if (wall > buildTime + maxAheadMs) {
      return {
        trusted: false,
        rule: "years-ahead",
        reason: `wall clock ${iso(wall)} is more than ${duration(maxAheadMs)} after the agent's build time ${iso(buildTime)}`,
        reference: buildTime + maxAheadMs,
      };
    }
    if (lastTrusted !== undefined && wall < lastTrusted.wall - toleranceMs) {
      return {
        trusted: false,
        rule: "behind-last-trusted",
        reason: `wall clock is ${duration(lastTrusted.wall - wall)} behind the last trusted time ${iso(lastTrusted.wall)}`,
        reference: lastTrusted.wall,
      };
    }
    const from = anchor ?? sameBootReference();
    const since = from && elapsed(from, now);
    if (from === undefined || since === undefined) return { trusted: true };
    const expected = from.wall + since.ms;
    const drift = wall - expected;
    if (drift < -toleranceMs) {
      return {
        trusted: false,
        rule: "went-back",
        reason: `wall clock went back ${duration(-drift)} against the last trusted time plus uptime`,
        reference: expected,
      };
    }
    if (drift <= toleranceMs || !since.countsSuspend) return { trusted: true };
    const settle = candidate && elapsed(candidate, now);
    if (
      candidate === undefined ||
      settle === undefined ||
      Math.abs(wall - candidate.wall - settle.ms) > toleranceMs
    ) {
      candidate = now;
    } else if (settle.ms >= SETTLE_MS) {
      return { trusted: true };
    }
    return {
      trusted: false,
      rule: "jumped-ahead",
      reason: `wall clock jumped ahead ${duration(drift)} against the last trusted time plus uptime; trusted again once it holds for ${duration(SETTLE_MS)}`,
      reference: expected,
    };
  }

  /** The persisted reference, when it belongs to this boot and uptime ties it to now. */
  function sameBootReference(): Reading | undefined {
    if (lastTrusted === undefined || bootId === undefined || lastTrusted.bootId !== bootId) return undefined;
    if (lastTrusted.uptimeSec === undefined) return undefined;
    return { wall: lastTrusted.wall, uptimeSec: lastTrusted.uptimeSec, mono: undefined };
  }

  function persist(now: Reading): void {
    if (
      persistedAtMono !== undefined &&
      now.mono !== undefined &&
      now.mono - persistedAtMono < PERSIST_EVERY_MS
    ) {
      return;
    }
    lastTrusted = {
      wall: now.wall,
      ...(bootId === undefined ? {} : { bootId }),
      ...(now.uptimeSec === undefined ? {} : { uptimeSec: now.uptimeSec }),
    };
    meta.setJson(LAST_TRUSTED_KEY, lastTrusted);
    persistedAtMono = now.mono;
  }

  return {
    check() {
      const now: Reading = { wall: clock.now(), uptimeSec: deps.uptimeSec(), mono: clock.monotonic() };
      const verdict = evaluate(now);
      current = verdict;
      if (verdict.trusted) {
        anchor = now;
        candidate = undefined;
        persist(now);
      } else if (verdict.rule !== "jumped-ahead") {
        candidate = undefined;
      }

      const wasTrusted = reported?.trusted ?? true;
      if (verdict.trusted === wasTrusted) return [];
      const previous = reported;
      reported = verdict.trusted
        ? { trusted: true, since: now.wall }
        : { trusted: false, reason: verdict.reason, since: now.wall };
      meta.setJson(TRUST_KEY, reported);
      if (!verdict.trusted) {
        return [
          {
            type: "clock.untrusted",
            severity: "high",
            source: "device",
            message: `wall clock untrusted: ${verdict.reason}`,
            details: {
              now: now.wall,
              reason: verdict.reason,
              rule: verdict.rule,
              reference: verdict.reference,
              bootId,
              uptimeSec: now.uptimeSec,
            },
          },
        ];
      }
      return [
        {
          type: "clock.trusted",
          severity: "info",
          source: "device",
          message: "wall clock trusted again",
          details: {
            now: now.wall,
            previousReason: previous?.reason,
            untrustedSince: previous?.since,
          },
        },
      ];
    },
    trusted: () => current?.trusted ?? false,
    reason: () => {
      if (current === undefined) return "not checked yet";
      return current.trusted ? undefined : current.reason;
    },
  };
}

/** Time elapsed from a reading to now: uptime counts suspend, the monotonic clock of this run does not. */
function elapsed(from: Reading, now: Reading): { ms: number; countsSuspend: boolean } | undefined {
  if (from.uptimeSec !== undefined && now.uptimeSec !== undefined) {
    return { ms: (now.uptimeSec - from.uptimeSec) * 1000, countsSuspend: true };
  }
  if (from.mono !== undefined && now.mono !== undefined)
    return { ms: now.mono - from.mono, countsSuspend: false };
  return undefined;
}

function iso(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

function duration(ms: number): string {
  if (ms >= 365 * DAY_MS) return `${Math.round(ms / (365 * DAY_MS))} years`;
  if (ms >= DAY_MS) return `${Math.round(ms / DAY_MS)} days`;
  if (ms >= 3_600_000) return `${Math.round(ms / 3_600_000)} h`;
  if (ms >= MINUTE_MS) return `${Math.round(ms / MINUTE_MS)} min`;
  return `${Math.round(ms / 1000)} s`;
}
