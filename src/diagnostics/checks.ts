import type { FilesystemSample, MemorySample } from "../metrics/host/host-readers.js";
import type { PeripheralState } from "../peripherals/peripherals.js";
import type { OutboxStats } from "../store/outbox.js";
import { type CheckOutcome, type CheckStatus, type DiagnosticCheck, worse } from "./check.js";
import { formatAge, formatBytes } from "./format.js";

export { certificatesCheck } from "./certificates-check.js";

// Each factory takes only the functions it needs, so the agent passes its live ones and
// `pos-agent diag` passes ones that read the database beside (or without) the daemon.

const MIB = 1024 * 1024;
const HOUR_MS = 3_600_000;

export function databaseCheck(deps: { quickCheck(): string }): DiagnosticCheck {
  return {
    name: "database",
    async run() {
      const answer = deps.quickCheck();
      return answer === "ok"
        ? { status: "pass", detail: "integrity check passed (quick_check ok)" }
        : { status: "fail", detail: `integrity check failed: ${answer}`, data: { quickCheck: answer } };
    },
  };
}

export const OUTBOX_LIMITS = {
  warnUsedPct: 50,
  failUsedPct: 90,
  warnOldestMs: HOUR_MS,
  failOldestMs: 24 * HOUR_MS,
} as const;

/** A backlog: warn over half the quota or an hour old, fail over 90 % or a day old (the link is gone). */
export function outboxCheck(deps: {
  stats(): OutboxStats;
  maxBytes: number;
  now(): number;
}): DiagnosticCheck {
  return {
    name: "outbox",
    async run() {
      const stats = deps.stats();
      const usedPct = deps.maxBytes > 0 ? (stats.bytes / deps.maxBytes) * 100 : 0;
      const oldestAgeMs = stats.oldestTs === undefined ? undefined : Math.max(0, deps.now() - stats.oldestTs);
      const dropped =
        stats.streams.telemetry.dropped + stats.streams.logs.dropped + stats.streams.events.dropped;
      let status: CheckStatus = "pass";
      const reasons: string[] = [];
      if (usedPct > OUTBOX_LIMITS.failUsedPct) {
        status = "fail";
        reasons.push(`over ${OUTBOX_LIMITS.failUsedPct} % of its quota`);
      } else if (usedPct > OUTBOX_LIMITS.warnUsedPct) {
        status = "warn";
        reasons.push(`over ${OUTBOX_LIMITS.warnUsedPct} % of its quota`);
      }
      if (oldestAgeMs !== undefined && oldestAgeMs > OUTBOX_LIMITS.failOldestMs) {
        status = "fail";
        reasons.push("oldest record over 24 h old");
      } else if (oldestAgeMs !== undefined && oldestAgeMs > OUTBOX_LIMITS.warnOldestMs) {
        status = worse(status, "warn");
        reasons.push("oldest record over 1 h old");
      }
      const oldest = oldestAgeMs === undefined ? "none waiting" : `oldest ${formatAge(oldestAgeMs)} old`;
      const facts = `${stats.records} records, ${formatBytes(stats.bytes)} of ${formatBytes(deps.maxBytes)} (${Math.round(usedPct)} %), ${oldest}, ${dropped} dropped`;
      return {
        status,
        detail: reasons.length === 0 ? facts : `backlog ${reasons.join(" and ")}: ${facts}`,
        data: {
          records: stats.records,
          bytes: stats.bytes,
          maxBytes: deps.maxBytes,
          usedPct,
          oldestAgeMs: oldestAgeMs ?? null,
          dropped: {
            telemetry: stats.streams.telemetry.dropped,
            logs: stats.streams.logs.dropped,
            events: stats.streams.events.dropped,
          },
        },
      };
    },
  };
}

export const DISK_LIMITS = {
  warnFreePct: 15,
  warnFreeBytes: 200 * MIB,
  failFreePct: 5,
  failFreeBytes: 50 * MIB,
} as const;

/** Headroom of the filesystem holding the data directory (named "data" by the host readers). */
export function diskCheck(deps: { filesystems(): Promise<FilesystemSample[]> }): DiagnosticCheck {
  return {
    name: "disk",
    async run() {
      const data = (await deps.filesystems()).find((fs) => fs.name === "data");
      if (data === undefined) {
        return { status: "warn", detail: "the filesystem holding the data directory could not be read" };
      }
      const freePct = Math.max(0, 100 - data.usedPct);
      const facts = `${formatBytes(data.freeBytes)} free of ${formatBytes(data.totalBytes)} (${Math.round(freePct)} %) on ${data.mount}`;
      const outcome = (status: CheckStatus, detail: string): CheckOutcome => ({
        status,
        detail,
        data: { mount: data.mount, freeBytes: data.freeBytes, totalBytes: data.totalBytes, freePct },
      });
      if (freePct < DISK_LIMITS.failFreePct || data.freeBytes < DISK_LIMITS.failFreeBytes) {
        return outcome("fail", `data filesystem almost full: ${facts}`);
      }
      if (freePct < DISK_LIMITS.warnFreePct || data.freeBytes < DISK_LIMITS.warnFreeBytes) {
        return outcome("warn", `data filesystem low on space: ${facts}`);
      }
      return outcome("pass", facts);
    },
  };
}

export const MEMORY_LIMITS = { warnUsedPct: 85, failUsedPct: 95 } as const;

export function memoryCheck(deps: { memory(): Promise<MemorySample | undefined> }): DiagnosticCheck {
  return {
    name: "memory",
    async run() {
      const memory = await deps.memory();
      if (memory === undefined) return { status: "warn", detail: "memory use could not be read" };
      const facts = `${Math.round(memory.usedPct)} % used, ${formatBytes(memory.availableBytes)} available of ${formatBytes(memory.totalBytes)}`;
      const data = { ...memory };
      if (memory.usedPct > MEMORY_LIMITS.failUsedPct)
        return { status: "fail", detail: `memory nearly exhausted: ${facts}`, data };
      if (memory.usedPct > MEMORY_LIMITS.warnUsedPct)
        return { status: "warn", detail: `memory low: ${facts}`, data };
      return { status: "pass", detail: facts, data };
    },
  };
}

/** Clock trust as the agent's clock sanity decided it; undefined when nothing has decided yet. */
export function clockCheck(deps: {
  trusted(): { trusted: boolean; reason?: string } | undefined;
}): DiagnosticCheck {
  return {
    name: "clock",
    async run() {
      const trust = deps.trusted();
      if (trust === undefined) return { status: "warn", detail: "unknown: the agent has not run yet" };
      if (trust.trusted) return { status: "pass", detail: "wall clock trusted", data: { trusted: true } };
      const reason = trust.reason ?? "no reason recorded";
      return { status: "fail", detail: `wall clock untrusted: ${reason}`, data: { trusted: false, reason } };
    },
  };
}

export const BROKER_SLOW_MS = 1000;

/** A live round trip (publish, time the PUBACK); `undefined` when not connected. */
export function brokerCheck(deps: {
  roundTrip(signal: AbortSignal): Promise<number | undefined>;
}): DiagnosticCheck {
  return {
    name: "broker",
    async run(signal) {
      const ms = await deps.roundTrip(signal);
      if (ms === undefined) return { status: "fail", detail: "not connected to the broker" };
      const data = { roundTripMs: ms };
      if (ms > BROKER_SLOW_MS)
        return { status: "warn", detail: `broker round trip slow: ${Math.round(ms)} ms`, data };
      return { status: "pass", detail: `broker round trip ${Math.round(ms)} ms`, data };
    },
  };
}

/**
 * Every configured peripheral's link, and a printer's paper, cover, cutter and error state.
 * Fail: link not online, printer offline, paper out, cover open, unrecoverable error.
 * Warn: paper near end, cutter error, recoverable error, a printer that has not answered a status poll yet.
 */
export function peripheralsCheck(deps: { states(): PeripheralState[] }): DiagnosticCheck {
  return {
    name: "peripherals",
    async run() {
      const states = deps.states();
      if (states.length === 0) return { status: "pass", detail: "no peripherals configured" };
      let status: CheckStatus = "pass";
      const problems: string[] = [];
      for (const state of states) {
        const found = judgePeripheral(state);
        status = worse(status, found.status);
        if (found.status !== "pass") problems.push(`${state.name} ${found.detail}`);
      }
      const names = states.map((s) => s.name).join(", ");
      return {
        status,
        detail:
          problems.length === 0
            ? `${states.length} peripheral${states.length === 1 ? "" : "s"} online and answering: ${names}`
            : problems.join("; "),
        data: {
          peripherals: states.map((s) => ({
            name: s.name,
            driver: s.driver,
            link: s.link,
            path: s.path ?? null,
            ...(s.error === undefined ? {} : { error: s.error }),
            ...(s.status === undefined ? {} : { status: s.status }),
          })),
        },
      };
    },
  };
}

function judgePeripheral(state: PeripheralState): { status: CheckStatus; detail: string } {
  if (state.link !== "online") {
    const where = state.path === undefined ? "" : ` at ${state.path}`;
    return {
      status: "fail",
      detail: `not present (${state.link}${where}${state.error === undefined ? "" : `: ${state.error}`})`,
    };
  }
  const s = state.status;
  if (s === undefined) {
    return state.driver === "escpos"
      ? { status: "warn", detail: "has not answered a status poll yet" }
      : { status: "pass", detail: "online" };
  }
  const fails: string[] = [];
  const warns: string[] = [];
  if (s.paper === "out") fails.push("paper out");
  if (s.cover === "open") fails.push("cover open");
  if (s.error === "unrecoverable") fails.push("unrecoverable error");
  if (!s.online && fails.length === 0) fails.push("offline");
  if (s.paper === "near_end") warns.push("paper near end");
  if (s.cutter === "error") warns.push("cutter error");
  if (s.error === "recoverable") warns.push("recoverable error");
  if (fails.length > 0) return { status: "fail", detail: [...fails, ...warns].join(", ") };
  if (warns.length > 0) return { status: "warn", detail: warns.join(", ") };
  return { status: "pass", detail: "online" };
}

export interface ComponentFacts {
  version?: string;
  healthy?: boolean;
}

/** Installed components: fail on one reported unhealthy; a version not known yet is no fault. */
export function componentsCheck(deps: { components: Record<string, ComponentFacts> }): DiagnosticCheck {
  return {
    name: "components",
    async run() {
      const entries = Object.entries(deps.components);
      if (entries.length === 0) return { status: "pass", detail: "none configured" };
      const unhealthy = entries.filter(([, c]) => c.healthy === false).map(([name]) => name);
      const listed = entries
        .map(
          ([name, c]) =>
            `${name} ${c.version ?? "(version unknown)"}${c.healthy === false ? " unhealthy" : ""}`,
        )
        .join(", ");
      const data = {
        components: Object.fromEntries(
          entries.map(([name, c]) => [name, { version: c.version ?? null, healthy: c.healthy ?? null }]),
        ),
      };
      if (unhealthy.length > 0)
        return { status: "fail", detail: `unhealthy: ${unhealthy.join(", ")} (${listed})`, data };
      return { status: "pass", detail: listed, data };
    },
  };
}
