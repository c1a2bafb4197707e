import type { Config } from "./config/schema.js";
import type { IntakeServer } from "./intake/server.js";
import { createAgentMetricsSource } from "./metrics/agent-metrics.js";
import {
  createEventLoopSource,
  createHeartbeat,
  createProcessSource,
  type MetricSource,
} from "./metrics/heartbeat.js";
import type { Clock } from "./shared/clock.js";
import type { AgentEvent } from "./shared/events.js";
import type { Logger } from "./shared/logger.js";
import type { MetaStore } from "./store/meta.js";
import type { Outbox } from "./store/outbox.js";
import type { MqttSession } from "./transport/mqtt-session.js";
import { createPresence } from "./transport/presence.js";
import { createPublisher } from "./transport/publisher.js";
import type { Topics } from "./transport/topics.js";

export interface AgentDeps {
  config: Config;
  agentVersion: string;
  outbox: Outbox;
  meta: MetaStore;
  session: MqttSession;
  topics: Topics;
  intake: IntakeServer | undefined;
  /** Records an `agent.outbox.dropped` event when the drop counters rose; true if it did. */
  reportDrops: () => boolean;
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
  const heartbeat = createHeartbeat({
    intervalMs: config.telemetry.intervalSec * 1000,
    sources: [
      createAgentMetricsSource({
        outboxStats: outbox.stats,
        connected: () => session.connection !== undefined,
        reconnects: () => session.reconnects,
        inflight: () => publisher.inflight,
        takeLatency: publisher.takeLatency,
        now: clock.now,
      }),
      createProcessSource(),
      eventLoop,
      ...deps.metricSources,
    ],
    record(ts, metrics) {
      try {
        deps.reportDrops();
      } catch (error) {
        log.error({ err: error }, "could not record the drop report; it follows with the next heartbeat");
      }
      outbox.append([{ stream: "telemetry", ts, body: { metrics } }]);
    },
    clock,
    log: log.child({ component: "heartbeat" }),
  });

  // What `pos-agent status` shows about the link, noted as it changes.
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
        if (!drained) {
          log.warn(
            { records: outbox.stats().records },
            "stopping with records still in the outbox; they are sent after restart",
          );
        }
        publisher.pause();
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
