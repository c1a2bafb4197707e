import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";

/** Metric names are dotted and carry their unit (`agent.process.rssBytes`). */
export type Metrics = Record<string, number>;

/**
 * One contributor to the heartbeat. The agent's own numbers are one source; host health (CPU, memory,
 * disk, battery…) plugs in here as further sources. A source that cannot read a sensor leaves the
 * metric out: absent, never 0.
 */
export interface MetricSource {
  name: string;
  sample(): Metrics | Promise<Metrics>;
}

export interface HeartbeatOptions {
  intervalMs: number;
  sources: readonly MetricSource[];
  /** Commits one telemetry record; the outbox does the rest. */
  record(ts: number, metrics: Metrics): void;
  clock: Clock;
  log: Logger;
}

/** Event-loop lag as a metric source: p99 and max of the delay since the previous sample. */
export function createEventLoopSource(): MetricSource & { stop(): void } {
  const histogram = monitorEventLoopDelay({ resolution: 20 });
  histogram.enable();
  return {
    name: "eventLoop",
    sample() {
      const metrics = {
        "agent.eventLoop.lagP99Ms": round(histogram.percentile(99) / 1e6),
        "agent.eventLoop.lagMaxMs": round(histogram.max / 1e6),
      };
      histogram.reset();
      return metrics;
    },
    stop() {
      histogram.disable();
    },
  };
}

export function createProcessSource(): MetricSource {
  let lastCpu = process.cpuUsage();
  let lastAt = performance.now();
  return {
    name: "process",
    sample() {
      const cpu = process.cpuUsage();
      const now = performance.now();
      const usedMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
      const elapsedMs = now - lastAt;
      lastCpu = cpu;
      lastAt = now;
      const memory = process.memoryUsage();
      return {
        "agent.process.rssBytes": memory.rss,
        "agent.process.heapUsedBytes": memory.heapUsed,
        "agent.process.cpuPct": elapsedMs > 0 ? round((usedMs / elapsedMs) * 100) : 0,
        "agent.process.uptimeSec": Math.round(process.uptime()),
      };
    },
  };
}

/** Samples every source each interval and commits one telemetry record. A failing source is logged and skipped. */
export function createHeartbeat(options: HeartbeatOptions) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function sampleAll(): Promise<Metrics> {
    const metrics: Metrics = {};
    for (const source of options.sources) {
      try {
        // A source stuck on a read (a /proc file of a process in uninterruptible sleep, a dead mount)
        // must cost one sample, not every heartbeat after it and the clean stop.
        Object.assign(metrics, await withDeadline(source, SOURCE_TIMEOUT_MS));
      } catch (error) {
        options.log.warn({ err: error, source: source.name }, "metric source failed");
      }
    }
    return metrics;
  }

  async function beat(): Promise<void> {
    const metrics = await sampleAll();
    try {
      options.record(options.clock.now(), metrics);
    } catch (error) {
      options.log.error({ err: error }, "could not store heartbeat");
    }
  }

  function tick(): void {
    if (running !== undefined) return;
    running = beat().finally(() => {
      running = undefined;
    });
  }

  return {
    start(): void {
      timer = setInterval(tick, options.intervalMs);
    },
    /** Every source sampled now, without recording (the `metrics.snapshot` command). */
    snapshot: sampleAll,
    /** One heartbeat now (at start, and for tests). */
    beatNow(): Promise<void> {
      tick();
      return running ?? Promise.resolve();
    },
    async stop(): Promise<void> {
      if (timer !== undefined) clearInterval(timer);
      await running;
    },
  };
}

const SOURCE_TIMEOUT_MS = 10_000;

async function withDeadline(source: MetricSource, timeoutMs: number): Promise<Metrics> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve(source.sample()), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
