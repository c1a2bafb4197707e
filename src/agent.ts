import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createAgentCommandHandlers } from "./commands/agent-commands.js";
import { createPingHandler } from "./commands/builtins.js";
import type { AnyCommandHandler, VerifyCommandEnvelope } from "./commands/command.js";
import { createDiagnosticsHandler } from "./commands/diagnostics-command.js";
import { createCommandDispatcher } from "./commands/dispatch.js";
import { createLogsQueryHandler } from "./commands/logs-query.js";
import { createLogsUploadHandler } from "./commands/logs-upload.js";
import { createUpdateCommandHandlers } from "./commands/update-commands.js";
import { redactConfig } from "./config/redact.js";
import type { Config } from "./config/schema.js";
import { createLiveChecks } from "./diagnostics/live-checks.js";
import type { IntakeServer } from "./intake/server.js";
import { createAgentMetricsSource } from "./metrics/agent-metrics.js";
import {
  createEventLoopSource,
  createHeartbeat,
  createProcessSource,
  type MetricSource,
} from "./metrics/heartbeat.js";
import type { HostReaders } from "./metrics/host/host-readers.js";
import type { HostHealth } from "./metrics/host-health.js";
import { createPeripherals } from "./peripherals/peripherals.js";
import type { PortLister, SerialOpener } from "./peripherals/serial-port.js";
import type { Backoff } from "./shared/backoff.js";
import type { CardDataGuard } from "./shared/card-data-guard.js";
import type { Clock } from "./shared/clock.js";
import type { AgentEvent } from "./shared/events.js";
import type { Logger } from "./shared/logger.js";
import type { CommandJournal } from "./store/command-journal.js";
import type { LogArchive } from "./store/log-archive.js";
import type { MetaStore } from "./store/meta.js";
import type { Outbox } from "./store/outbox.js";
import { createCommandChannel } from "./transport/command-channel.js";
import type { MqttSession } from "./transport/mqtt-session.js";
import { createPresence } from "./transport/presence.js";
import { createPublisher } from "./transport/publisher.js";
import { createRetainedStates } from "./transport/retained-states.js";
import type { Topics } from "./transport/topics.js";
import { createUpdateEngine, type UpdateEngineDeps } from "./updates/engine.js";

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
  /** Commits an event to the outbox; never throws. */
  recordEvent: (event: AgentEvent) => void;
  /** Card-data scrubbing shared with the intake: counts and events per source. */
  guard: CardDataGuard;
  /** The serial hardware boundary: real bindings in main.ts, PTYs or the mock binding in tests. */
  serial: { opener: SerialOpener; lister: PortLister; newBackoff: () => Backoff };
  /** Host metrics, alert rules, reboot reasons and the clock check. */
  hostHealth: HostHealth;
  /** Remote commands: the journal (SQLite), signature checks against trust.operatorRoots, and how to restart. */
  commands: { journal: CommandJournal; verify: VerifyCommandEnvelope; restart: () => void };
  /** What the diagnostics suite reads beyond the capabilities above. */
  diagnostics: { quickCheck: () => string; readers: Pick<HostReaders, "filesystems" | "memory"> };
  /** Recent logs and events kept after publishing, for logs.query and logs.upload. */
  logArchive: LogArchive;
  /** Signed updates: the journal, the release decision (trust roots, clock floor) and the real I/O. */
  updates: Pick<
    UpdateEngineDeps,
    "journal" | "decide" | "preconditions" | "download" | "stage" | "noteIssuedAt"
  > & {
    fetchManifest(url: string, signal: AbortSignal): Promise<unknown>;
    /** Live version of each configured component, for the birth. */
    installedVersions(): Record<string, string>;
    /** POS_AGENT_LAUNCHER_HOME: set when pos-agent-launcher started us, which self-updates need. */
    launcherHome: string | undefined;
  };
  /** Folds old telemetry into aggregates when the outbox runs short of room. */
  downsampler: { run(now: number): { folded: number; aggregates: number; freedBytes: number } };
  clock: Clock;
  log: Logger;
}

/** How long a command's journal entry is kept: far beyond the longest signed lifetime (1 h). */
const JOURNAL_RETENTION_MS = 7 * 24 * 3_600_000;

/** Grace periods of a clean stop: send what we can, then say `offline`, then disconnect. */
const STOP_DRAIN_MS = 3000;
const STOP_OFFLINE_MS = 2000;
const PRESSURE_RATIO = 0.8;
/** How long a freshly updated agent has to connect before it counts as broken. */
const SELF_CHECK_MS = 60_000;

/**
 * Wires the capabilities through their interfaces and owns start/stop order. Builds no adapter of its
 * own (main.ts does), so tests can assemble an agent around real or fake parts.
 */
export function createAgent(deps: AgentDeps) {
  const { config, outbox, meta, session, topics, clock, log, guard, recordEvent, hostHealth } = deps;

  const publisher = createPublisher({
    outbox,
    session,
    topics,
    deviceId: config.deviceId,
    maxMessageBytes: config.outbox.maxMessageBytes,
    maxInflight: config.mqtt.maxInflight,
    ackTimeoutMs: config.mqtt.ackTimeoutSec * 1000,
    checkBody: (record) => guard.checkStored(record.stream, record.body),
    clock,
    log: log.child({ component: "publisher" }),
  });

  const retained = createRetainedStates({ session, log: log.child({ component: "retained" }) });
  const peripherals = createPeripherals({
    peripherals: config.peripherals,
    opener: deps.serial.opener,
    lister: deps.serial.lister,
    guard,
    appendLogs(records) {
      outbox.append(records.map((record) => ({ stream: "logs", ts: record.ts, body: record.body })));
    },
    recordEvent,
    stateChanged: (state) => retained.set(topics.peripheralState(state.name), state),
    newBackoff: deps.serial.newBackoff,
    now: clock.now,
    log: log.child({ component: "peripherals" }),
  });

  const presence = createPresence({
    session,
    topics,
    now: clock.now,
    log: log.child({ component: "presence" }),
    facts: () => ({
      agentVersion: deps.agentVersion,
      model: config.model,
      components: deps.updates.installedVersions(),
      peripherals: peripherals.states().map((state) => ({
        name: state.name,
        driver: state.driver,
        online: state.link === "online",
      })),
      capabilities: handlers.map((handler) => handler.name).sort(),
      extra: {
        ...hostHealth.systemFacts(),
        alerts: hostHealth.activeAlerts(),
        clockTrusted: hostHealth.clock.trusted(),
      },
    }),
  });

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
      { name: "peripherals", sample: peripherals.metrics },
      { name: "scrub", sample: guard.metrics },
      ...hostHealth.sources,
      ...deps.metricSources,
    ],
    record(ts, metrics) {
      guard.tick();
      try {
        deps.reportDrops();
      } catch (error) {
        log.error({ err: error }, "could not record the drop report; it follows with the next heartbeat");
      }
      // Alerts first: a full disk that refuses this telemetry is exactly when its alert must go out
      // (the retained birth is published directly, not through the outbox).
      if (hostHealth.observe(metrics, ts)) presence.rebirth();
      relieveDiskPressure(ts);
      outbox.append([{ stream: "telemetry", ts, body: { metrics } }]);
    },
    clock,
    log: log.child({ component: "heartbeat" }),
  });

  /**
   * Past 80 % of the quota, telemetry older than an hour becomes 5-minute aggregates before the drop
   * order has to take anything (Memfault keeps days of health data this way).
   */
  function relieveDiskPressure(now: number): void {
    if (outbox.pressure() <= PRESSURE_RATIO) return;
    try {
      const result = deps.downsampler.run(now);
      if (result.folded > 0) log.info({ ...result }, "outbox under pressure: old telemetry downsampled");
    } catch (error) {
      log.error({ err: error }, "could not downsample telemetry; the drop order applies");
    }
  }

  /** One QoS 1 publish on our own root, timed to its PUBACK: the broker round trip of diagnostics. */
  function brokerRoundTrip(signal: AbortSignal): Promise<number | undefined> {
    return new Promise((resolve) => {
      const startedAt = clock.monotonic();
      const sent = session.publish(`${topics.root}/diag/rtt`, "{}", { qos: 1, retain: false }, (error) => {
        resolve(error === undefined ? clock.monotonic() - startedAt : undefined);
      });
      if (!sent) resolve(undefined);
      signal.addEventListener("abort", () => resolve(undefined), { once: true });
    });
  }

  const channel = createCommandChannel({
    session,
    topics,
    groups: config.mqtt.groups,
    log: log.child({ component: "commands" }),
  });
  const updates = createUpdateEngine({
    ...deps.updates,
    dataDir: config.dataDir,
    components: config.components,
    publishState: (payload) => retained.set(topics.updateState, payload),
    self: {
      version: deps.agentVersion,
      launcherHome: deps.updates.launcherHome,
      restart: deps.commands.restart,
      selfCheck,
    },
    recordEvent,
    clock,
    log: log.child({ component: "updates" }),
  });

  /** A new agent release proves itself: connected to a broker and its database sound, within a minute. */
  async function selfCheck(signal: AbortSignal): Promise<string | undefined> {
    const deadline = clock.monotonic() + SELF_CHECK_MS;
    while (session.connection === undefined) {
      if (clock.monotonic() > deadline) return `not connected to a broker within ${SELF_CHECK_MS / 1000} s`;
      await sleep(250, undefined, { signal });
    }
    const check = deps.diagnostics.quickCheck();
    return check === "ok" ? undefined : `database check failed: ${check}`;
  }

  const handlers: AnyCommandHandler[] = [
    createPingHandler({ clock }),
    createDiagnosticsHandler({
      deviceId: config.deviceId,
      now: clock.now,
      checks: () =>
        createLiveChecks({
          config,
          quickCheck: deps.diagnostics.quickCheck,
          outboxStats: () => outbox.stats(),
          filesystems: () => deps.diagnostics.readers.filesystems(),
          memory: () => deps.diagnostics.readers.memory(),
          clock: () => {
            const reason = hostHealth.clock.reason();
            return { trusted: hostHealth.clock.trusted(), ...(reason === undefined ? {} : { reason }) };
          },
          brokerRoundTrip,
          peripherals: () => peripherals.states(),
          now: clock.now,
        }),
    }),
    ...createAgentCommandHandlers({
      rebirth: () => presence.rebirth(),
      metrics: () => heartbeat.snapshot(),
      peripherals: () => peripherals.states(),
      restart: deps.commands.restart,
    }),
    ...createUpdateCommandHandlers({ engine: updates, fetchManifest: deps.updates.fetchManifest }),
    createLogsQueryHandler({
      archive: deps.logArchive,
      maxMessageBytes: config.outbox.maxMessageBytes,
      monotonic: clock.monotonic,
    }),
    createLogsUploadHandler({
      archive: deps.logArchive,
      tmpDir: join(config.dataDir, "tmp"),
      header: () => ({
        v: 1,
        deviceId: config.deviceId,
        tenant: config.tenant,
        model: config.model,
        agentVersion: deps.agentVersion,
        createdAt: new Date(clock.now()).toISOString(),
      }),
      status: () => {
        const reason = hostHealth.clock.reason();
        return {
          connection: meta.getJson<unknown>("connection") ?? null,
          outbox: outbox.stats(),
          archive: deps.logArchive.stats(),
          peripherals: peripherals.states(),
          alerts: hostHealth.activeAlerts(),
          clock: { trusted: hostHealth.clock.trusted(), ...(reason === undefined ? {} : { reason }) },
          system: hostHealth.systemFacts(),
        };
      },
      config: () => redactConfig(config),
    }),
  ];
  const dispatcher = createCommandDispatcher({
    deviceId: config.deviceId,
    groups: config.mqtt.groups,
    requireSignature: config.commands.requireSignature,
    verify: deps.commands.verify,
    journal: deps.commands.journal,
    handlers,
    clock,
    clockTrusted: () => hostHealth.clock.trusted(),
    respond: (response, route) => {
      channel.respond(response, route);
    },
    audit: recordEvent,
    log,
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
  let startedFully = false;

  return {
    presence,
    peripherals,
    recordEvent,
    /** A precondition may have changed (an app released its update lock). */
    pokeUpdates: () => updates.poke(),

    async start(): Promise<{ intake: { host: string; port: number } | undefined }> {
      for (const event of deps.startupEvents) recordEvent(event);
      hostHealth.start(() => presence.rebirth());
      dispatcher.recoverInterrupted();
      await updates.recoverAtStart();
      deps.commands.journal.prune(clock.now() - JOURNAL_RETENTION_MS);
      channel.listen((request) => {
        const meta = {
          receivedVia: request.receivedVia,
          ...(request.group === undefined ? {} : { group: request.group }),
          ...(request.messageExpirySec === undefined ? {} : { messageExpirySec: request.messageExpirySec }),
        };
        void dispatcher.handle(request.payload, request.route, meta);
      });
      const intake = await deps.intake?.start();
      publisher.start();
      peripherals.start();
      session.start();
      heartbeat.start();
      await heartbeat.beatNow();
      startedFully = true;
      return { intake };
    },

    /** SIGTERM/SIGINT: stop intake, flush what can be flushed, publish `offline`, disconnect. */
    stop(): Promise<void> {
      stopped ??= (async () => {
        log.info({}, "stopping");
        // A late system-facts birth must not land after `offline`.
        hostHealth.stop();
        await deps.intake?.stop();
        await updates.stop();
        await dispatcher.stop();
        await peripherals.stop();
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
        // Only a run that started and stopped as asked is a clean stop; a start that failed half-way
        // must count as a crash, so a service manager restarting it in a loop raises agent.crash_loop.
        if (startedFully) hostHealth.cleanStop();
        log.info({}, "stopped");
      })();
      return stopped;
    },
  };
}
export type Agent = ReturnType<typeof createAgent>;
