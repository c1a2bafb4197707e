import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { createAgent } from "./agent.js";
import type { Config } from "./config/schema.js";
import { createIntakeServer } from "./intake/server.js";
import { LAST_TRUSTED_KEY } from "./metrics/clock-sanity.js";
import { createLinuxReaders } from "./metrics/host/linux-readers.js";
import { readSystemFacts } from "./metrics/host/system-facts.js";
import { createHostHealth } from "./metrics/host-health.js";
import { readBootFacts } from "./metrics/reboot-reason.js";
import { createSerialOpener } from "./peripherals/node-serialport.js";
import { createSysfsPortLister } from "./peripherals/sysfs-ports.js";
import { loadRootsPem, verifyEnvelope } from "./pki/verify-envelope.js";
import { createBackoff } from "./shared/backoff.js";
import { createCardDataGuard } from "./shared/card-data-guard.js";
import { systemClock } from "./shared/clock.js";
import type { Logger } from "./shared/logger.js";
import { readAgentVersion, readBuildTime } from "./shared/version.js";
import { createCommandJournal } from "./store/command-journal.js";
import { createCountersFile } from "./store/counters-file.js";
import { COUNTERS_FILE, openDatabase, quarantineEvent, quickCheck, walLimitFor } from "./store/database.js";
import { createTelemetryDownsampler } from "./store/downsample.js";
import { createDropReport } from "./store/drop-report.js";
import { createEventRecorder } from "./store/event-recorder.js";
import { acquireDataDirLock } from "./store/lock.js";
import { createLogArchive } from "./store/log-archive.js";
import { createMetaStore } from "./store/meta.js";
import { createOutbox } from "./store/outbox.js";
import { createSessionIds } from "./store/session-counter.js";
import { createUpdateJournal } from "./store/update-journal.js";
import { maxRecordBytes } from "./transport/batch.js";
import { createMqttSession } from "./transport/mqtt-session.js";
import { willPayload } from "./transport/presence.js";
import { createTopics } from "./transport/topics.js";
import { downloadArtifact } from "./updates/download.js";
import { fetchManifest } from "./updates/fetch-manifest.js";
import { createInstalledState, installedVersions, NEWEST_ISSUED_AT_KEY } from "./updates/installed-state.js";
import { createIntakeLocks } from "./updates/intake-locks.js";
import { checkPreconditions } from "./updates/preconditions.js";
import { freeBytes } from "./updates/releases-dir.js";
import { SELF_COMPONENT } from "./updates/self-update.js";
import { stageRelease } from "./updates/stage.js";
import { clockFloor, decideRelease } from "./updates/verify-release.js";

/** Time for the response of `agent.restart` to reach the broker before the clean stop begins. */
const RESTART_DELAY_MS = 500;

/** Seconds since boot from /proc/uptime (a procfs read, microseconds); undefined where it is hidden. */
function readUptimeSec(): number | undefined {
  try {
    const seconds = Number.parseFloat(readFileSync("/proc/uptime", "utf8"));
    return Number.isFinite(seconds) ? seconds : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The composition root: the only place that builds real adapters (SQLite file, MQTT client, HTTP
 * server, pino) and hands them to createAgent. Returns a handle whose stop() is the clean shutdown.
 */
export async function runAgent(config: Config, options: { logger?: Logger } = {}) {
  const log: Logger =
    options.logger ??
    pino(
      { level: config.log.level, base: { deviceId: config.deviceId } },
      pino.destination({ dest: 2, sync: true }),
    );
  const clock = systemClock;
  const agentVersion = readAgentVersion();

  const lock = acquireDataDirLock(config.dataDir);
  const opened = openDatabase({
    dataDir: config.dataDir,
    log: log.child({ component: "store" }),
    now: clock.now,
    walLimitBytes: walLimitFor(config.outbox.maxBytes),
  });
  const counters = createCountersFile(join(config.dataDir, COUNTERS_FILE));
  const meta = createMetaStore(opened.db);
  const outbox = createOutbox({
    db: opened.db,
    counters,
    maxBytes: config.outbox.maxBytes,
    maxRecordBytes: maxRecordBytes(config.outbox.maxMessageBytes),
  });

  const recordEvent = createEventRecorder({ outbox, now: clock.now, log });
  const hostReaders = createLinuxReaders({ dataDir: config.dataDir });
  // Read once at start: a missing or unreadable root file is a failed start naming the file.
  const operatorRoots = loadRootsPem(config.trust.operatorRoots);
  const releaseRoots = loadRootsPem(config.trust.releaseRoots);
  const buildTime = readBuildTime();
  const intakeLocks = createIntakeLocks({
    dir: join(config.dataDir, "locks"),
    now: clock.now,
    log: log.child({ component: "locks" }),
  });
  const guard = createCardDataGuard({
    now: clock.now,
    raise: recordEvent,
    log: log.child({ component: "scrub" }),
  });

  const topics = createTopics(config.tenant, config.deviceId);
  const session = createMqttSession({
    urls: config.mqtt.urls,
    protocolVersion: config.mqtt.protocolVersion,
    clientId: config.deviceId,
    keepaliveSec: config.mqtt.keepaliveSec,
    willDelaySec: config.mqtt.willDelaySec,
    sessionExpirySec: config.mqtt.sessionExpirySec,
    connectTimeoutMs: 10_000,
    tls: config.mqtt.tls,
    username: config.mqtt.username,
    passwordFile: config.mqtt.passwordFile,
    nextSessionId: createSessionIds(counters, meta, log.child({ component: "store" })),
    will: (sessionId) => ({ topic: topics.state, payload: willPayload(sessionId, clock.now()) }),
    backoff: createBackoff({
      initialMs: config.mqtt.reconnect.minSec * 1000,
      maxMs: config.mqtt.reconnect.maxSec * 1000,
      floorMs: 1000,
      random: Math.random,
    }),
    log: log.child({ component: "mqtt" }),
    now: clock.now,
  });

  const intake =
    config.intake.port === 0
      ? undefined
      : createIntakeServer({
          host: config.intake.host,
          port: config.intake.port,
          outbox,
          now: clock.now,
          guard,
          locks: {
            take: (name, ttlSec) => intakeLocks.take(name, ttlSec),
            held: () => intakeLocks.held(),
            // A payment ended: a deferred update may go now rather than at its next check.
            release: (name) => {
              const released = intakeLocks.release(name);
              if (released) agent.pokeUpdates();
              return released;
            },
          },
          health: () => ({ connected: session.connection !== undefined, outbox: outbox.stats() }),
          log: log.child({ component: "intake" }),
        });

  const hostHealth = createHostHealth({
    config,
    readers: hostReaders,
    boot: readBootFacts({ bootIdFile: config.health.bootIdFile, now: clock.now }),
    uptimeSec: readUptimeSec,
    buildTime,
    agentVersion,
    readSystemFacts: () => readSystemFacts(log.child({ component: "health" })),
    meta,
    recordEvent,
    clock,
    log: log.child({ component: "health" }),
  });

  const updateJournal = createUpdateJournal(opened.db);
  const installed = createInstalledState(config.dataDir, updateJournal, {
    component: SELF_COMPONENT,
    version: agentVersion,
  });

  const agent = createAgent({
    config,
    agentVersion,
    outbox,
    meta,
    session,
    topics,
    intake,
    reportDrops: createDropReport({
      db: opened.db,
      outbox,
      meta,
      maxBytes: config.outbox.maxBytes,
      now: clock.now,
    }),
    metricSources: [],
    startupEvents: opened.quarantine === undefined ? [] : [quarantineEvent(opened.quarantine)],
    recordEvent,
    guard,
    hostHealth,
    commands: {
      journal: createCommandJournal(opened.db),
      verify: (envelope, now) =>
        verifyEnvelope(envelope, {
          typ: "pos-command+json",
          rootsPem: operatorRoots,
          threshold: config.trust.threshold,
          now,
        }),
      // SIGTERM to ourselves once the response is out: the clean stop, then the service manager's restart.
      restart: () => {
        setTimeout(() => process.kill(process.pid, "SIGTERM"), RESTART_DELAY_MS).unref();
      },
    },
    diagnostics: { quickCheck: () => quickCheck(opened.db), readers: hostReaders },
    logArchive: createLogArchive(opened.db),
    updates: {
      journal: updateJournal,
      installedVersions: () => installedVersions(config.dataDir, Object.keys(config.components)),
      decide: (envelope) =>
        decideRelease(envelope, {
          releaseRootsPem: releaseRoots,
          threshold: config.trust.threshold,
          now: clock.now(),
          clockTrusted: hostHealth.clock.trusted(),
          clockReason: hostHealth.clock.reason(),
          clockFloor: clockFloor({
            buildTime,
            lastTrusted: meta.getJson<{ wall?: number }>(LAST_TRUSTED_KEY)?.wall,
            newestIssuedAt: meta.getJson<number>(NEWEST_ISSUED_AT_KEY),
          }),
          model: config.model,
          agentVersion,
          installed,
        }),
      noteIssuedAt: (ms) => {
        if (ms > (meta.getJson<number>(NEWEST_ISSUED_AT_KEY) ?? 0)) meta.setJson(NEWEST_ISSUED_AT_KEY, ms);
      },
      preconditions: (neededBytes, workDir) =>
        checkPreconditions({
          lockFiles: config.updates.lockFiles,
          intakeLocks,
          window: config.updates.maintenanceWindow,
          now: clock.now(),
          battery: () => hostReaders.battery(),
          minBatteryPct: config.updates.minBatteryPct,
          freeBytes,
          workDir,
          neededBytes,
        }),
      download: downloadArtifact,
      stage: stageRelease,
      fetchManifest,
      launcherHome: process.env.POS_AGENT_LAUNCHER_HOME,
    },
    downsampler: createTelemetryDownsampler({
      db: opened.db,
      olderThanMs: 3_600_000,
      bucketMs: 300_000,
      maxRows: 10_000,
    }),
    serial: {
      opener: createSerialOpener(),
      lister: createSysfsPortLister(),
      // Reopening a missing port costs one open(2): retry often, so a replugged device is back in seconds.
      newBackoff: () => createBackoff({ initialMs: 1000, maxMs: 5000, floorMs: 1000, random: Math.random }),
    },
    clock,
    log,
  });
  meta.setJson("daemon", { pid: process.pid, startedAt: clock.now(), agentVersion });
  let started: Awaited<ReturnType<typeof agent.start>>;
  try {
    started = await agent.start();
  } catch (error) {
    await agent.stop();
    opened.db.close();
    lock.release();
    throw error;
  }

  return {
    agent,
    intake: started.intake,
    async stop(): Promise<void> {
      await agent.stop();
      meta.setJson("daemon", { pid: null, stoppedAt: clock.now(), agentVersion });
      opened.db.close();
      lock.release();
    },
  };
}
