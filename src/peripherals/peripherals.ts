import type { Config } from "../config/schema.js";
import type { Backoff } from "../shared/backoff.js";
import type { CardDataGuard } from "../shared/card-data-guard.js";
import { isPlausibleTime } from "../shared/clock.js";
import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { CapturedLine, Driver, DriverContext } from "./drivers/driver.js";
import { createEscPosDriver } from "./drivers/escpos-driver.js";
import { createJsonlDriver, createLinesDriver } from "./drivers/text-drivers.js";
import { createEventLimiter } from "./event-limiter.js";
import { createLogBatcher, type LogRecord } from "./log-batcher.js";
import { createLogStormFilter, type StormOptions, type StormRecord } from "./log-storm.js";
import { type NormalisedStatus, statusChanges, statusWithoutReply } from "./protocols/escpos-status.js";
import { compileLevelPatterns } from "./protocols/log-level.js";
import { createSerialLink, type LinkState, type LinkTarget } from "./serial-link.js";
import type { PortLister, SerialOpener } from "./serial-port.js";

export type PeripheralConfig = Config["peripherals"][number];

/** What `ROOT/periph/{name}/state` says (retained), and what the birth summarises. */
export interface PeripheralState {
  v: 1;
  name: string;
  driver: PeripheralConfig["driver"];
  link: LinkState["status"];
  path: string | undefined;
  since: number;
  error?: string;
  /** Printers: the normalised status; offline while the link is down. */
  status?: NormalisedStatus;
  ts: number;
}

export interface PeripheralsOptions {
  peripherals: readonly PeripheralConfig[];
  opener: SerialOpener;
  lister: PortLister;
  guard: CardDataGuard;
  /** Commits captured log records (all or none); throws when the outbox refuses them. */
  appendLogs(records: readonly LogRecord[]): void;
  recordEvent(event: AgentEvent): void;
  /** Called on every change of a peripheral's link or status. */
  stateChanged(state: PeripheralState): void;
  newBackoff(): Backoff;
  now(): number;
  log: Logger;
  storm?: Partial<StormOptions>;
  /** Group commit of captured lines. */
  batch?: { maxRecords: number; maxDelayMs: number };
}

const TICK_MS = 1000;
const EVENTS_PER_MINUTE = 30;

/** Every configured peripheral: its serial link, its driver, and the way from bytes to stored records. */
export function createPeripherals(options: PeripheralsOptions) {
  const { log, guard } = options;
  const batcher = createLogBatcher({
    append: options.appendLogs,
    maxRecords: options.batch?.maxRecords ?? 2000,
    maxDelayMs: options.batch?.maxDelayMs ?? 50,
    log,
  });
  const units = options.peripherals.map((config) => createUnit(config));
  let ticker: NodeJS.Timeout | undefined;

  function createUnit(config: PeripheralConfig) {
    const name = config.name;
    const unitLog = log.child({ peripheral: name });
    const storm = createLogStormFilter(options.storm);
    const events = createEventLimiter({
      source: name,
      perMinute: EVENTS_PER_MINUTE,
      now: options.now,
      record: options.recordEvent,
    });
    let withheld = 0;
    let lastStatus: NormalisedStatus | undefined;
    let state: PeripheralState = {
      v: 1,
      name,
      driver: config.driver,
      link: "connecting",
      path: config.path,
      since: options.now(),
      ts: options.now(),
    };

    function publishState(patch: Partial<PeripheralState>): void {
      const { error: _error, ...rest } = state;
      state = { ...rest, ...patch, ts: options.now() };
      options.stateChanged(state);
    }

    function store(records: readonly StormRecord[]): void {
      for (const record of records) {
        const line = guard.line(name, record.line);
        // `fields` come from the device (jsonl) and are scrubbed; `deviceTs` is a plausible time.
        const extra = record.extra ?? {};
        const fields = extra.fields === undefined ? undefined : guard.value(name, extra.fields);
        if (line === undefined || (extra.fields !== undefined && fields === undefined)) {
          withheld += 1; // fail closed: REFERENCE 4
          continue;
        }
        const body: Record<string, unknown> = { source: name, level: record.level, line };
        if (record.repeat !== undefined) body.repeat = record.repeat;
        if (extra.deviceTs !== undefined) body.deviceTs = extra.deviceTs;
        if (fields !== undefined) body.fields = fields;
        batcher.add({ ts: record.ts, body });
      }
    }

    const context: DriverContext = {
      source: name,
      now: options.now,
      log: unitLog,
      line(captured: CapturedLine) {
        const extra: Record<string, unknown> = {};
        // A device clock from before 2000 or after 2090 is wrong, or not a time at all.
        if (captured.ts !== undefined && isPlausibleTime(captured.ts)) extra.deviceTs = captured.ts;
        if (captured.fields !== undefined) extra.fields = captured.fields;
        const record: StormRecord = { line: captured.line, level: captured.level, ts: options.now() };
        if (Object.keys(extra).length > 0) record.extra = extra;
        store(storm.offer(record, record.ts));
      },
      status(next: NormalisedStatus) {
        const changes = statusChanges(lastStatus, next);
        lastStatus = next;
        for (const change of changes) {
          events.record({ ...change, source: name, details: { status: next } });
        }
        if (!sameStatus(state.status, next)) publishState({ status: next });
      },
    };

    const driver: Driver = createDriver(config, context);
    const link = createSerialLink({
      target: targetOf(config),
      framing: {
        baudRate: config.baudRate,
        dataBits: config.dataBits,
        stopBits: config.stopBits,
        parity: config.parity,
      },
      opener: options.opener,
      lister: options.lister,
      backoff: options.newBackoff(),
      now: options.now,
      log: unitLog,
      attached: (connection) => driver.attach(connection),
      data: (chunk) => driver.data(chunk),
      detached: () => {
        driver.detach();
        store(storm.flushAll(options.now()));
      },
      state(next, previous) {
        linkEvent(next, previous);
        const patch: Partial<PeripheralState> = { link: next.status, path: next.path, since: next.since };
        if (next.error !== undefined) patch.error = next.error;
        // While the link is down nobody answers for the printer: offline, its last known conditions
        // kept, and no status event (the link event says it).
        if (next.status !== "online" && config.driver === "escpos")
          patch.status = statusWithoutReply(lastStatus);
        publishState(patch);
      },
    });

    function linkEvent(next: LinkState, previous: LinkState): void {
      if (next.status === previous.status) return;
      unitLog.info({ link: next.status, path: next.path, error: next.error }, `peripheral ${next.status}`);
      if (next.status === "online") {
        const moved = previous.path !== undefined && previous.path !== next.path;
        events.record({
          type: "peripheral.link.online",
          severity: "info",
          source: name,
          message: `${name} connected at ${next.path}${moved ? ` (was ${previous.path})` : ""}`,
          details: moved ? { path: next.path, previousPath: previous.path } : { path: next.path },
        });
      } else if (next.status === "offline") {
        events.record({
          type: "peripheral.link.offline",
          severity: "medium",
          source: name,
          message: `${name} is not connected: ${next.error ?? "closed"}`,
          details: { path: next.path, error: next.error },
        });
      }
    }

    return {
      name,
      config,
      get state() {
        return state;
      },
      start: () => link.start(),
      async stop() {
        driver.stop();
        await link.stop();
        store(storm.flushAll(options.now()));
        // The retained state must not keep saying "online" for a port nobody watches any more.
        const patch: Partial<PeripheralState> = {
          link: "offline",
          error: "agent stopped",
          since: options.now(),
        };
        if (config.driver === "escpos") patch.status = statusWithoutReply(lastStatus);
        publishState(patch);
      },
      tick(now: number) {
        store(storm.tick(now));
      },
      metrics(): Record<string, number> {
        const metrics: Record<string, number> = {
          [`peripheral.${name}.online`]: state.link === "online" ? 1 : 0,
          [`peripheral.${name}.stormDropped`]: storm.dropped,
          [`peripheral.${name}.withheld`]: withheld,
          [`peripheral.${name}.eventsSuppressed`]: events.suppressed,
        };
        for (const [key, value] of Object.entries(driver.counters())) {
          metrics[`peripheral.${name}.${key}`] = value;
        }
        return metrics;
      },
    };
  }

  return {
    /** Current state of every peripheral, in config order. */
    states(): PeripheralState[] {
      return units.map((unit) => unit.state);
    },

    start(): void {
      for (const unit of units) {
        options.stateChanged(unit.state);
        unit.start();
      }
      ticker = setInterval(() => {
        const now = options.now();
        for (const unit of units) unit.tick(now);
        batcher.flush();
      }, TICK_MS);
    },

    async stop(): Promise<void> {
      clearInterval(ticker);
      await Promise.all(units.map((unit) => unit.stop()));
      batcher.flush();
    },

    metrics(): Record<string, number> {
      const metrics: Record<string, number> = { "peripheral.linesLost": batcher.failed };
      for (const unit of units) Object.assign(metrics, unit.metrics());
      return metrics;
    },
  };
}
export type Peripherals = ReturnType<typeof createPeripherals>;

function createDriver(config: PeripheralConfig, context: DriverContext): Driver {
  switch (config.driver) {
    case "escpos":
      return createEscPosDriver(context, { pollIntervalMs: config.pollIntervalMs });
    case "lines":
    case "jsonl": {
      const textOptions = {
        delimiter: config.delimiter,
        encoding: config.encoding,
        ...(config.levels === undefined ? {} : { patterns: compileLevelPatterns(config.levels) }),
      };
      return config.driver === "lines"
        ? createLinesDriver(context, textOptions)
        : createJsonlDriver(context, textOptions);
    }
  }
}

function targetOf(config: PeripheralConfig): LinkTarget {
  if (config.path !== undefined) return { path: config.path };
  if (config.match !== undefined) return { match: config.match };
  // The config schema refuses an entry with neither; reaching here is a bug worth a clear message.
  throw new Error(`peripherals.${config.name}: needs a path or a match`);
}

function sameStatus(a: NormalisedStatus | undefined, b: NormalisedStatus): boolean {
  return (
    a !== undefined &&
    a.online === b.online &&
    a.paper === b.paper &&
    a.cover === b.cover &&
    a.cutter === b.cutter &&
    a.error === b.error
  );
}
