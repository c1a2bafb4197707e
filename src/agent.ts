import type { Config } from "./config/schema.js";
import type { IntakeServer } from "./intake/server.js";
import {
  createEventLoopSource,
  createHeartbeat,
  createProcessSource,
  type MetricSource,
  type Metrics,
} from "./metrics/heartbeat.js";
import type { Clock } from "./shared/clock.js";
import type { Logger } from "./shared/logger.js";
import type { MetaStore } from "./store/meta.js";
import type { Outbox, Stream } from "./store/outbox.js";
import type { MqttSession } from "./transport/mqtt-session.js";
import { createPresence } from "./transport/presence.js";
import { createPublisher } from "./transport/publisher.js";
import type { Topics } from "./transport/topics.js";

export type Severity = "critical" | "high" | "medium" | "low" | "info";

export interface AgentEvent {
  type: string;
  severity: Severity;
  source?: string;
  message?: string;
  details?: Record<string, unknown>;
}

export interface AgentDeps {
  config: Config;
  agentVersion: string;
  outbox: Outbox;
  meta: MetaStore;
  session: MqttSession;
  topics: Topics;
  intake: IntakeServer | undefined;
  /** Host health and other capabilities' metrics; the agent adds its own. */
  metricSources: readonly MetricSource[];
  /** Events to record at start (e.g. a quarantined database). */
  startupEvents: readonly AgentEvent[];
  clock: Clock;
  log: Logger;
}

export const CAPABILITIES = ["rebirth"] as const;

/** Grace periods of a clean stop: send what we can, then say `offline`, then disconnect. */
const STOP_DRAIN_MS = 3000;
const STOP_OFFLINE_MS = 2000;

/**
 * Wires the capabilities through their interfaces and owns start/stop order. Builds no adapter of its
 * own (main.ts does), so tests can assemble an agent around real or fake parts.
 */
export function createAgent(deps: AgentDeps) {
  const { config, outbox, meta, session, topics, clock, log } = deps;

  const publisher = createPublisher({
    outbox,
    session,
    topics,
    deviceId: config.deviceId,
    maxMessageBytes: config.outbox.maxMessageBytes,
    maxInflight: config.mqtt.maxInflight,
    ackTimeoutMs: config.mqtt.ackTimeoutSec * 1000,
    clock,
    log: log.child({ component: "publisher" }),
  });

  const presence = createPresence({
    session,
    topics,
    now: clock.now,
    log: log.child({ component: "presence" }),
    facts: () => ({
      agentVersion: deps.agentVersion,
      model: config.model,
      components: {},
      peripherals: [],
      capabilities: [...CAPABILITIES],
    }),
  });

  function recordEvent(event: AgentEvent): void {
    try {
      outbox.append([{ stream: "events", ts: clock.now(), body: { ...event } }]);
    } catch (error) {
      log.error({ err: error, event: event.type }, "could not store event");
    }
  }

  const eventLoop = createEventLoopSource();
  const agentSource: MetricSource = {
    name: "agent",
    sample() {
      const stats = outbox.stats();
      const latency = publisher.takeLatency();
      const metrics: Metrics = {
        "agent.outbox.records": stats.records,
        "agent.outbox.bytes": stats.bytes,
        "agent.outbox.oldestAgeSec":
          stats.oldestTs === undefined ? 0 : Math.max(0, (clock.now() - stats.oldestTs) / 1000),
        "agent.outbox.dropped.telemetry": stats.streams.telemetry.dropped,
        "agent.outbox.dropped.events": stats.streams.events.dropped,
        "agent.outbox.dropped.logs": stats.streams.logs.dropped,
        "agent.mqtt.connected": session.connection === undefined ? 0 : 1,
        "agent.mqtt.reconnects": session.reconnects,
        "agent.mqtt.inflight": publisher.stats().inflight,
      };
      if (latency.count > 0) {
        metrics["agent.mqtt.publishLatencyAvgMs"] = Math.round(latency.avgMs * 10) / 10;
        metrics["agent.mqtt.publishLatencyMaxMs"] = Math.round(latency.maxMs * 10) / 10;
      }
      return metrics;
    },
  };

  /** One `agent.outbox.dropped` event per increase of the counters, remembered across restarts. */
  function reportDrops(): void {
    const stats = outbox.stats();
    const reported = meta.getJson<Record<Stream, number>>("dropsReported") ?? {
      telemetry: 0,
      events: 0,
      logs: 0,
    };
    const delta: Record<Stream, number> = {
      telemetry: stats.streams.telemetry.dropped - reported.telemetry,
      events: stats.streams.events.dropped - reported.events,
      logs: stats.streams.logs.dropped - reported.logs,
    };
    if (delta.telemetry + delta.events + delta.logs <= 0) return;
    const totals = {
      telemetry: stats.streams.telemetry.dropped,
      events: stats.streams.events.dropped,
      logs: stats.streams.logs.dropped,
    };
    meta.setJson("dropsReported", totals);
    recordEvent({
      type: "agent.outbox.dropped",
      severity: delta.events > 0 ? "high" : "medium",
      source: "agent",
      message: `outbox quota reached: dropped ${delta.telemetry} telemetry, ${delta.logs} log and ${delta.events} event records`,
      details: { dropped: delta, totals, maxBytes: config.outbox.maxBytes },
    });
  }

  const heartbeat = createHeartbeat({
    intervalMs: config.telemetry.intervalSec * 1000,
    sources: [agentSource, createProcessSource(), eventLoop, ...deps.metricSources],
    record(ts, metrics) {
      reportDrops();
      outbox.append([{ stream: "telemetry", ts, body: { metrics } }]);
    },
    clock,
    log: log.child({ component: "heartbeat" }),
  });

  session.subscribe({
    up(connection) {
      meta.setJson("connection", {
        connected: true,
        url: connection.url,
        sessionId: connection.sessionId,
        protocolVersion: connection.protocolVersion,
        since: clock.now(),
      });
    },
    down(connection, reason) {
      meta.setJson("connection", {
        connected: false,
        url: connection.url,
        sessionId: connection.sessionId,
        since: clock.now(),
        lastError: reason,
      });
    },
  });

  let stopped: Promise<void> | undefined;

  return {
    publisher,
    presence,
    recordEvent,

    async start(): Promise<{ intake: { host: string; port: number } | undefined }> {
      for (const event of deps.startupEvents) recordEvent(event);
      const intake = await deps.intake?.start();
      publisher.start();
      session.start();
      heartbeat.start();
      await heartbeat.beatNow();
      return { intake };
    },

    /** SIGTERM/SIGINT: stop intake, flush what can be flushed, publish `offline`, disconnect. */
    stop(): Promise<void> {
      stopped ??= (async () => {
        log.info({}, "stopping");
        await deps.intake?.stop();
        await heartbeat.stop();
        eventLoop.stop();
        const drained = await publisher.drain(STOP_DRAIN_MS);
        if (!drained)
          log.warn(
            { records: outbox.stats().records },
            "stopping with records still in the outbox; they are sent after restart",
          );
        const said = await presence.offline(STOP_OFFLINE_MS);
        if (!said) log.warn({}, "could not publish offline state; the Will will say lost");
        await session.stop();
        publisher.stop();
        log.info({}, "stopped");
      })();
      return stopped;
    },
  };
}
export type Agent = ReturnType<typeof createAgent>;
