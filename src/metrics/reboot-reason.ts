import { readFileSync } from "node:fs";
import { z } from "zod";
import type { AgentEvent } from "../shared/events.js";
import type { MetaStore } from "../store/meta.js";

/** What the kernel tells us about the current boot, read once at start. */
export interface BootFacts {
  /** Changes on every boot; undefined where the file is missing or unreadable (some Android SELinux policies). */
  bootId: string | undefined;
  /** Seconds since boot, suspend included (Linux boottime); undefined where unreadable. */
  uptimeSec: number | undefined;
  /** Wall clock at start, ms. */
  now: number;
}

/**
 * Reads /proc/sys/kernel/random/boot_id (path configurable, for tests and platforms) and /proc/uptime;
 * absent → undefined, never throws.
 */
export function readBootFacts(deps: {
  bootIdFile: string;
  uptimeFile?: string;
  now: () => number;
  readFile?: (path: string) => string;
}): BootFacts {
  const read = deps.readFile ?? ((path: string) => readFileSync(path, "utf8"));
  const attempt = (path: string): string | undefined => {
    try {
      return read(path);
    } catch {
      return undefined;
    }
  };
  return {
    bootId: parseBootId(attempt(deps.bootIdFile)),
    uptimeSec: parseUptime(attempt(deps.uptimeFile ?? "/proc/uptime")),
    now: deps.now(),
  };
}

function parseBootId(text: string | undefined): string | undefined {
  const id = text?.trim();
  // A path pointing at the wrong file must not end up as a kilobyte "id" in every record.
  if (!id || id.length > 128 || /\s/.test(id)) return undefined;
  return id;
}

function parseUptime(text: string | undefined): number | undefined {
  const first = text?.trim().split(/\s+/)[0];
  if (!first) return undefined;
  const value = Number(first);
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

export interface RunJournal {
  /** Classifies this start against the previous run, then records this run as not cleanly stopped yet. */
  start(facts: BootFacts): AgentEvent[];
  /** Writes the clean-stop marker: call it last thing in an orderly shutdown, after everything else stopped. */
  cleanStop(now: number): void;
}

/** The last run, as kept under the meta key "run". JSON read back from SQLite is a trust boundary. */
export const RunRecord = z.object({
  bootId: z.string().optional(),
  uptimeSec: z.number().optional(),
  startedAt: z.number(),
  agentVersion: z.string(),
  cleanStop: z.boolean(),
  stoppedAt: z.number().optional(),
  /** Wall times of recent starts, oldest first, within the last hour and bounded. */
  starts: z.array(z.number()).default([]),
  crashLoopRaisedAt: z.number().optional(),
});
export type RunRecord = z.infer<typeof RunRecord>;

export const RUN_KEY = "run";
const HOUR_MS = 3_600_000;
/**
 * A reboot that happened after our previous start leaves uptime below the wall time elapsed since then;
 * the slack absorbs the rounding of /proc/uptime and small clock slews.
 */
const UPTIME_SLACK_MS = 2_000;
/** Enough starts to report how bad a loop is, few enough to keep the record under ~1 KB. */
const MIN_STARTS_KEPT = 60;

type Ending =
  | "first start"
  | "clean restart"
  | "crash"
  | "orderly reboot"
  | "power loss or crash of the device";

/**
 * Keeps a small record in the MetaStore of the last run: boot id, start time, the clean-stop flag and
 * the recent start times (bounded).
 *
 * Choices:
 * - Boot id decides reboot vs restart. Without it on either side, uptime does: below the previous run's
 *   uptime, or below the wall time since the previous start, means the device booted in between. That
 *   fallback trusts the wall clock; a clock stepped forward within one boot reads as a reboot. Without
 *   boot id and uptime the start counts as an agent restart, with `rebootDetectable: false`.
 * - Every start counts toward the crash loop, reboots included: a terminal that loses power or resets
 *   over and over is out of service just the same. Only an unclean ending (a crash, or a reboot without
 *   a clean stop) raises `agent.crash_loop`, so deliberate restarts never do.
 * - The one-hour window uses the wall clock; starts "in the future" after a clock step back are dropped.
 * - A record of the wrong shape reads as a first start with its own reason, not as a crash: we do not
 *   know. Torn JSON the meta store already reads as absent, so that is a plain first start.
 */
export function createRunJournal(deps: {
  meta: Pick<MetaStore, "getJson" | "setJson">;
  agentVersion: string;
  crashLoop?: { maxStartsPerHour: number };
}): RunJournal {
  const maxStartsPerHour = deps.crashLoop?.maxStartsPerHour ?? 5;
  const startsKept = Math.max(MIN_STARTS_KEPT, maxStartsPerHour + 1);
  // Only this process's own record may be marked clean: a shutdown before start() must leave a
  // crashed previous run looking crashed.
  let current: RunRecord | undefined;

  return {
    start(facts) {
      const raw = deps.meta.getJson<unknown>(RUN_KEY);
      const parsed = raw === undefined ? undefined : RunRecord.safeParse(raw);
      const previous = parsed?.success ? parsed.data : undefined;
      const starts = (previous?.starts ?? []).filter((t) => t <= facts.now && facts.now - t < HOUR_MS);
      starts.push(facts.now);

      const events: AgentEvent[] = [];
      let ending: Ending;
      if (previous === undefined) {
        ending = "first start";
        events.push(firstStart(facts, deps.agentVersion, raw !== undefined));
      } else {
        const reboot = detectReboot(previous, facts);
        if (reboot.rebooted) {
          ending = previous.cleanStop ? "orderly reboot" : "power loss or crash of the device";
          events.push(deviceReboot(previous, facts, deps.agentVersion, ending, reboot.by));
        } else {
          ending = previous.cleanStop ? "clean restart" : "crash";
          events.push(agentRestart(previous, facts, deps.agentVersion, ending, reboot.by));
        }
      }

      let crashLoopRaisedAt = previous?.crashLoopRaisedAt;
      // A raise time "in the future" means the clock stepped back: let the next loop through.
      const raisedRecently =
        crashLoopRaisedAt !== undefined &&
        crashLoopRaisedAt <= facts.now &&
        facts.now - crashLoopRaisedAt < HOUR_MS;
      const unclean = ending === "crash" || ending === "power loss or crash of the device";
      if (unclean && starts.length > maxStartsPerHour && !raisedRecently) {
        crashLoopRaisedAt = facts.now;
        events.push({
          type: "agent.crash_loop",
          severity: "high",
          source: "agent",
          message: `agent started ${starts.length} times within an hour, the latest after a ${ending}`,
          details: {
            startsLastHour: starts.length,
            maxStartsPerHour,
            reason: ending,
            agentVersion: deps.agentVersion,
            ...(previous ? { previousAgentVersion: previous.agentVersion } : {}),
          },
        });
      }

      current = {
        ...(facts.bootId === undefined ? {} : { bootId: facts.bootId }),
        ...(facts.uptimeSec === undefined ? {} : { uptimeSec: facts.uptimeSec }),
        startedAt: facts.now,
        agentVersion: deps.agentVersion,
        cleanStop: false,
        starts: starts.slice(-startsKept),
        ...(crashLoopRaisedAt === undefined ? {} : { crashLoopRaisedAt }),
      };
      deps.meta.setJson(RUN_KEY, current);
      return events;
    },

    cleanStop(now) {
      if (current === undefined) return;
      current = { ...current, cleanStop: true, stoppedAt: now };
      deps.meta.setJson(RUN_KEY, current);
    },
  };
}

type RebootCheck = { rebooted: boolean; by: "bootId" | "uptime" | "none" };

function detectReboot(previous: RunRecord, facts: BootFacts): RebootCheck {
  if (previous.bootId !== undefined && facts.bootId !== undefined) {
    return { rebooted: previous.bootId !== facts.bootId, by: "bootId" };
  }
  if (facts.uptimeSec === undefined) return { rebooted: false, by: "none" };
  // Uptime only grows within a boot, whatever the wall clock does.
  const wentBack = previous.uptimeSec !== undefined && facts.uptimeSec < previous.uptimeSec;
  const upShorterThanSince = facts.uptimeSec * 1000 + UPTIME_SLACK_MS < facts.now - previous.startedAt;
  return { rebooted: wentBack || upShorterThanSince, by: "uptime" };
}

function versions(previous: RunRecord | undefined, agentVersion: string) {
  if (previous === undefined) return { agentVersion };
  return {
    agentVersion,
    previousAgentVersion: previous.agentVersion,
    versionChanged: previous.agentVersion !== agentVersion,
  };
}

function versionNote(previous: RunRecord, agentVersion: string): string {
  return previous.agentVersion === agentVersion
    ? ""
    : ` (version ${previous.agentVersion} → ${agentVersion})`;
}

function firstStart(facts: BootFacts, agentVersion: string, unreadable: boolean): AgentEvent {
  const reason = unreadable ? "previous run record unreadable" : "first start";
  return {
    type: "agent.started",
    severity: "info",
    source: "agent",
    message: unreadable ? "agent started; the record of its previous run was unreadable" : "agent started",
    details: {
      reason,
      bootId: facts.bootId,
      uptimeSec: facts.uptimeSec,
      ...versions(undefined, agentVersion),
    },
  };
}

function deviceReboot(
  previous: RunRecord,
  facts: BootFacts,
  agentVersion: string,
  reason: Ending,
  by: RebootCheck["by"],
): AgentEvent {
  return {
    type: "device.reboot",
    severity: "medium",
    source: "device",
    message: `device rebooted: ${reason}${versionNote(previous, agentVersion)}`,
    details: {
      reason,
      detectedBy: by,
      bootId: facts.bootId,
      previousBootId: previous.bootId,
      uptimeSec: facts.uptimeSec,
      cleanStopBeforeReboot: previous.cleanStop,
      previousStartedAt: previous.startedAt,
      previousStoppedAt: previous.stoppedAt,
      ...versions(previous, agentVersion),
    },
  };
}

function agentRestart(
  previous: RunRecord,
  facts: BootFacts,
  agentVersion: string,
  reason: Ending,
  by: RebootCheck["by"],
): AgentEvent {
  const clean = reason === "clean restart";
  return {
    type: "agent.restart",
    severity: clean ? "info" : "medium",
    source: "agent",
    message: clean
      ? `agent restarted after a clean stop${versionNote(previous, agentVersion)}`
      : `agent restarted after a crash (killed, crashed or out of memory)${versionNote(previous, agentVersion)}`,
    details: {
      reason,
      bootId: facts.bootId,
      uptimeSec: facts.uptimeSec,
      previousStartedAt: previous.startedAt,
      previousStoppedAt: previous.stoppedAt,
      ...(by === "none" ? { rebootDetectable: false } : {}),
      ...versions(previous, agentVersion),
    },
  };
}
