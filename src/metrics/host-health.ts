import { z } from "zod";
import type { Config } from "../config/schema.js";
import type { Clock } from "../shared/clock.js";
import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { MetaStore } from "../store/meta.js";
import { type ActiveAlert, alertRulesFromConfig, createAlertEngine } from "./alert-rules.js";
import { type ClockSanity, createClockSanity } from "./clock-sanity.js";
import type { MetricSource, Metrics } from "./heartbeat.js";
import type { HostReaders } from "./host/host-readers.js";
import { createHostSource } from "./host/host-source.js";
import { createProcessWatch } from "./host/process-watch.js";
import type { SystemFacts } from "./host/system-facts.js";
import { type BootFacts, createRunJournal } from "./reboot-reason.js";

export interface HostHealthOptions {
  config: Pick<Config, "alerts" | "health">;
  /** Linux readers, with a vendor bridge's overrides where the platform has one. */
  readers: HostReaders;
  boot: BootFacts;
  /** Seconds since boot now; undefined where the platform hides it. */
  uptimeSec: () => number | undefined;
  buildTime: number;
  agentVersion: string;
  /** OS and hardware identity (systeminformation in main.ts); spawns processes, so it is injected. */
  readSystemFacts: () => Promise<SystemFacts | undefined>;
  meta: Pick<MetaStore, "getJson" | "setJson">;
  recordEvent: (event: AgentEvent) => void;
  clock: Clock;
  log: Logger;
}

const ALERTS_KEY = "alerts";

const StoredAlert = z.object({
  id: z.string(),
  metric: z.string(),
  value: z.number(),
  threshold: z.number(),
  direction: z.enum(["above", "below"]),
  since: z.number(),
});

/** The alerts raised when the agent last stopped; anything unreadable is forgotten, not fatal. */
function restoredAlerts(meta: Pick<MetaStore, "getJson">): ActiveAlert[] {
  const parsed = z.array(StoredAlert).safeParse(meta.getJson(ALERTS_KEY));
  return parsed.success ? parsed.data : [];
}

/**
 * Host health as one capability: the metric sources the heartbeat samples, the alert rules run over
 * each sample, the reboot reason at start and the clean-stop marker at the end, and the clock check
 * that later capabilities (update windows, certificate expiry) ask before trusting the time.
 */
export function createHostHealth(options: HostHealthOptions) {
  const { config, clock, recordEvent } = options;
  const journal = createRunJournal({ meta: options.meta, agentVersion: options.agentVersion });
  const clockSanity: ClockSanity = createClockSanity({
    clock,
    buildTime: options.buildTime,
    bootId: options.boot.bootId,
    uptimeSec: options.uptimeSec,
    meta: options.meta,
  });
  const alerts = createAlertEngine(
    alertRulesFromConfig(config.alerts, { minDurationMs: config.alerts.minDurationSec * 1000 }),
  );
  const processes = createProcessWatch({ processes: config.health.processes, selfPid: process.pid });
  const host = createHostSource({
    readers: options.readers,
    now: clock.monotonic,
    log: options.log.child({ component: "host" }),
    slowEveryMs: config.health.slowSampleSec * 1000,
  });

  let systemFacts: SystemFacts | undefined;
  let onFacts: (() => void) | undefined;

  const record = (events: readonly AgentEvent[]) => {
    for (const event of events) recordEvent(event);
  };

  return {
    sources: [host, processes] as readonly MetricSource[],

    /**
     * At start: why the agent (or the device) started, and whether the clock can be believed. The OS
     * and hardware identity follows off the start path; `factsReady` is called when it is known.
     */
    start(factsReady: () => void): void {
      alerts.restore(restoredAlerts(options.meta));
      record(journal.start(options.boot));
      record(clockSanity.check());
      onFacts = factsReady;
      options
        .readSystemFacts()
        .then((facts) => {
          systemFacts = facts;
          if (facts !== undefined) onFacts?.();
        })
        .catch((error: unknown) => options.log.warn({ err: error }, "system facts not published"));
    },

    /** At the start of a clean stop: nothing more is announced. */
    stop(): void {
      onFacts = undefined;
    },

    /** OS and hardware identity for the birth message, once read. */
    systemFacts(): SystemFacts | undefined {
      return systemFacts;
    },

    /**
     * After each heartbeat sample: alerts raised or cleared, processes that came or went, the clock.
     * True when the set of active alerts changed (the birth message lists them).
     */
    observe(metrics: Readonly<Metrics>, now: number): boolean {
      const changes = alerts.evaluate(metrics, now);
      record(changes);
      if (changes.length > 0) options.meta.setJson(ALERTS_KEY, alerts.active());
      record(processes.events());
      record(clockSanity.check());
      return changes.length > 0;
    },

    /** The alerts currently raised, for the birth message. */
    activeAlerts(): ActiveAlert[] {
      return alerts.active();
    },

    clock: clockSanity,

    /** The last thing a clean stop does, so the next start knows it was not a crash. */
    cleanStop(): void {
      journal.cleanStop(clock.now());
    },
  };
}
export type HostHealth = ReturnType<typeof createHostHealth>;
