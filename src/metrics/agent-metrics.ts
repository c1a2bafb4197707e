import type { OutboxStats } from "../store/outbox.js";
import type { MetricSource, Metrics } from "./heartbeat.js";

export interface AgentMetricsDeps {
  outboxStats(): OutboxStats;
  connected(): boolean;
  reconnects(): number;
  inflight(): number;
  /** PUBACK latency since the previous sample. */
  takeLatency(): { count: number; avgMs: number; maxMs: number };
  now(): number;
}

/** The agent's own health: outbox depth, age and drops, the broker link, publish latency. */
export function createAgentMetricsSource(deps: AgentMetricsDeps): MetricSource {
  return {
    name: "agent",
    sample() {
      const stats = deps.outboxStats();
      const latency = deps.takeLatency();
      const metrics: Metrics = {
        "agent.outbox.records": stats.records,
        "agent.outbox.bytes": stats.bytes,
        "agent.outbox.oldestAgeSec":
          stats.oldestTs === undefined ? 0 : Math.max(0, Math.round((deps.now() - stats.oldestTs) / 1000)),
        "agent.outbox.dropped.telemetry": stats.streams.telemetry.dropped,
        "agent.outbox.dropped.events": stats.streams.events.dropped,
        "agent.outbox.dropped.logs": stats.streams.logs.dropped,
        "agent.mqtt.connected": deps.connected() ? 1 : 0,
        "agent.mqtt.reconnects": deps.reconnects(),
        "agent.mqtt.inflight": deps.inflight(),
      };
      if (latency.count > 0) {
        metrics["agent.mqtt.publishLatencyAvgMs"] = Math.round(latency.avgMs * 10) / 10;
        metrics["agent.mqtt.publishLatencyMaxMs"] = Math.round(latency.maxMs * 10) / 10;
      }
      return metrics;
    },
  };
}
