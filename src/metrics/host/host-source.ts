import type { Logger } from "../../shared/logger.js";
import type { MetricSource, Metrics } from "../heartbeat.js";
import {
  HOST_READER_NAMES,
  type HostReaderName,
  type HostReaders,
  type NetworkSample,
} from "./host-readers.js";

export interface HostSourceDeps {
  readers: HostReaders;
  /** Monotonic ms (`Clock.monotonic`): rates divide by it, so a wall-clock step must not reach it. */
  now: () => number;
  log: Logger;
  /** Expensive readers (those measured > ~5 ms or spawning) run at most this often; default 60 s. */
  slowEveryMs?: number;
  /** A reader not declared slow that takes longer than this (wall ms) is treated as slow from then on. */
  slowAfterMs?: number;
  /** A reader that has not answered by then is given up on for this sample; default 5 s. */
  readerTimeoutMs?: number;
}

const SLOW_RUNS = 3;

interface ReaderState {
  slow: boolean;
  slowRuns?: number;
  lastRunAt?: number;
  /** What a slow reader produced last, repeated until it runs again. */
  cached: Metrics;
  logged: Set<string>;
}

/**
 * Host health as heartbeat metrics: CPU, memory, disks, battery, temperature, network, uptime. A reader
 * that is absent, fails or times out leaves its metrics out (never 0) and does not stop the others.
 * (The agent's own CPU and RSS come from the heartbeat's process source.)
 */
export function createHostSource(deps: HostSourceDeps): MetricSource {
  const { readers, now, log } = deps;
  const slowEveryMs = deps.slowEveryMs ?? 60_000;
  const slowAfterMs = deps.slowAfterMs ?? 100;
  const timeoutMs = deps.readerTimeoutMs ?? 5_000;
  const declaredSlow = new Set(readers.slow ?? []);
  const states = Object.fromEntries(
    HOST_READER_NAMES.map((name) => [
      name,
      { slow: declaredSlow.has(name), cached: {}, logged: new Set<string>() } satisfies ReaderState,
    ]),
  ) as Record<HostReaderName, ReaderState>;
  let lastNet: { at: number; rx: number; tx: number; set: string | undefined } | undefined;

  function noteOnce(name: HostReaderName, kind: string, obj: object): void {
    const state = states[name];
    if (state.logged.has(kind)) return;
    state.logged.add(kind);
    log.debug({ reader: name, ...obj }, `host reader ${kind}: its metrics are left out`);
  }

  async function step<T>(
    name: HostReaderName,
    read: () => Promise<T>,
    toMetrics: (value: NonNullable<T>, at: number) => Metrics,
  ): Promise<Metrics> {
    const state = states[name];
    const startedAt = now();
    if (state.slow && state.lastRunAt !== undefined && startedAt - state.lastRunAt < slowEveryMs) {
      return state.cached;
    }
    state.lastRunAt = startedAt;
    let metrics: Metrics = {};
    try {
      const value = await withTimeout(read(), timeoutMs);
      if (value !== undefined && value !== null) metrics = toMetrics(value, startedAt);
    } catch (error) {
      noteOnce(name, "failed", { err: error });
    }
    if (Object.keys(metrics).length === 0) noteOnce(name, "absent", {});
    const tookMs = now() - startedAt;
    // Wall time includes an event loop busy elsewhere (start-up, a big commit): only a reader that is
    // slow several samples in a row is moved to the slow schedule.
    state.slowRuns = tookMs > slowAfterMs ? (state.slowRuns ?? 0) + 1 : 0;
    if (!state.slow && state.slowRuns >= SLOW_RUNS) {
      state.slow = true;
      log.info({ reader: name, tookMs, everyMs: slowEveryMs }, "host reader is slow: sampling it less often");
    }
    state.cached = metrics;
    return metrics;
  }

  function networkMetrics(net: NetworkSample, at: number): Metrics {
    const m: Metrics = {};
    put(m, "net.interfacesUp", net.interfacesUp, 0);
    if (net.defaultRoute !== undefined) m["net.defaultRoute"] = net.defaultRoute ? 1 : 0;
    const previous = lastNet;
    lastNet = { at, rx: net.rxBytes, tx: net.txBytes, set: net.counterSet };
    // A counter going down is a reset (interface re-created, driver reload, a 32-bit counter wrapping
    // on 32-bit ARM kernels) and a changed interface set is not comparable: skip one rate, re-baseline.
    if (
      previous !== undefined &&
      previous.set === net.counterSet &&
      at > previous.at &&
      net.rxBytes >= previous.rx &&
      net.txBytes >= previous.tx
    ) {
      const seconds = (at - previous.at) / 1000;
      put(m, "net.rxBytesPerSec", (net.rxBytes - previous.rx) / seconds, 0);
      put(m, "net.txBytesPerSec", (net.txBytes - previous.tx) / seconds, 0);
    }
    if (net.wifiSignalDbm !== undefined) put(m, "net.wifi.signalDbm", net.wifiSignalDbm, 0);
    if (net.cellSignalDbm !== undefined) put(m, "net.cell.signalDbm", net.cellSignalDbm, 0);
    return m;
  }

  return {
    name: "host",
    async sample(): Promise<Metrics> {
      // One reader at a time: their cost is a few file reads each, and a slow one is then timed alone.
      const parts = [
        await step(
          "cpu",
          () => readers.cpu(),
          (v) => put({}, "cpu.loadPct", v.loadPct, 1),
        ),
        await step(
          "temperature",
          () => readers.temperature(),
          (v) => put({}, "cpu.tempC", v.cpuC, 1),
        ),
        await step(
          "memory",
          () => readers.memory(),
          (v) => put(put({}, "mem.usedPct", v.usedPct, 1), "mem.availableBytes", v.availableBytes, 0),
        ),
        await step(
          "filesystems",
          () => readers.filesystems(),
          (list) => {
            const m: Metrics = {};
            for (const fs of list) {
              put(m, `disk.${fs.name}.usedPct`, fs.usedPct, 1);
              put(m, `disk.${fs.name}.freeBytes`, fs.freeBytes, 0);
            }
            return m;
          },
        ),
        await step(
          "battery",
          () => readers.battery(),
          (v) => {
            const m = put({}, "battery.pct", v.pct, 1);
            m["battery.charging"] = v.charging ? 1 : 0;
            if (v.healthPct !== undefined) put(m, "battery.healthPct", v.healthPct, 1);
            return m;
          },
        ),
        await step("network", () => readers.network(), networkMetrics),
        await step(
          "uptimeSec",
          () => readers.uptimeSec(),
          (v) => put({}, "uptime.sec", v, 0),
        ),
      ];
      return Object.assign({}, ...parts);
    },
  };
}

/** Sets a metric rounded to `digits` decimals; a non-finite value (a garbled sensor) is left out. */
function put(metrics: Metrics, name: string, value: number, digits: number): Metrics {
  if (Number.isFinite(value)) {
    const scale = 10 ** digits;
    metrics[name] = Math.round(value * scale) / scale;
  }
  return metrics;
}

/** A vendor bridge that never answers must not hold the heartbeat: its late answer is dropped. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
