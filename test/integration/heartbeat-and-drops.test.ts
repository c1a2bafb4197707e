import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy } from "../../scripts/lib/tcp-proxy.mjs";
import { postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { type ReceivedRecord, startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

const AGENT_METRICS = [
  "agent.outbox.records",
  "agent.outbox.bytes",
  "agent.outbox.oldestAgeSec",
  "agent.outbox.dropped.telemetry",
  "agent.outbox.dropped.events",
  "agent.outbox.dropped.logs",
  "agent.mqtt.connected",
  "agent.mqtt.reconnects",
  "agent.process.rssBytes",
  "agent.eventLoop.lagMaxMs",
];

describe("heartbeat and quota drops", () => {
  const { dir, cleanups } = suiteResources("pos-heartbeat");

  it("reports its own health every interval, and drops over quota as counted, reported events", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const link = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => link.close());
    await link.down();
    const config = await writeAgentConfig({
      dir,
      brokerUrl: `mqtt://127.0.0.1:${link.port}`,
      telemetryIntervalSec: 1,
      outbox: { maxBytes: 65_536, maxMessageBytes: 8_192 },
    });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "hb-consumer",
      topics: [`${config.root}/+`],
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    // Offline, 3 000 log lines of ~100 bytes cannot fit in 64 KiB: the oldest go, and are counted.
    let accepted = 0;
    for (let i = 0; i < 30; i++) {
      const items = Array.from({ length: 100 }, (_, j) => ({
        source: "pos-app",
        level: "info" as const,
        line: `line ${i * 100 + j} ${"y".repeat(80)}`,
      }));
      const answer = await postIntake(config.intakePort, "/v1/logs", items);
      expect(answer.status).toBe(200);
      accepted += items.length;
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await link.up();

    const records = () => [...consumer.records.values()];
    const dropEvent = () => records().find((r) => r.type === "agent.outbox.dropped");
    await consumer.waitFor(() => dropEvent() !== undefined, 10_000, "the agent.outbox.dropped event");
    const liveTelemetry = () => records().filter((r) => r.metrics !== undefined && r.historical !== true);
    await consumer.waitFor(() => liveTelemetry().length >= 2, 10_000, "two live heartbeats");

    const beat = liveTelemetry().at(-1) as ReceivedRecord & { metrics: Record<string, number> };
    for (const name of AGENT_METRICS) expect(beat.metrics[name], name).toBeTypeOf("number");
    expect(beat.metrics["agent.mqtt.connected"]).toBe(1);

    const logsReceived = records().filter((r) => r.source === "pos-app").length;
    const droppedLogs = beat.metrics["agent.outbox.dropped.logs"] as number;
    expect(droppedLogs).toBeGreaterThan(0);
    // Telemetry went first, and every accepted line was either delivered or counted as dropped.
    expect(beat.metrics["agent.outbox.dropped.events"]).toBe(0);
    expect(logsReceived + droppedLogs).toBe(accepted);
    const event = dropEvent() as ReceivedRecord & { details: { totals: Record<string, number> } };
    expect(event.severity).toBe("medium");
    expect(event.details.totals.logs).toBeGreaterThan(0);
    expect(event.details.totals.logs).toBeLessThanOrEqual(droppedLogs);

    // The counters are the database's, not the process's: a restarted agent reports the same totals.
    const droppedEvents = beat.metrics["agent.outbox.dropped.events"];
    expect((await agent.kill("SIGTERM")).code).toBe(0);
    const beatsBefore = liveTelemetry().length;
    const restarted = await startAgent(config);
    cleanups.push(() => restarted.kill("SIGKILL"));
    await consumer.waitFor(
      () => liveTelemetry().length > beatsBefore,
      10_000,
      "a heartbeat after the restart",
    );
    const after = liveTelemetry().at(-1) as ReceivedRecord & { metrics: Record<string, number> };
    expect(after.metrics["agent.outbox.dropped.logs"]).toBe(droppedLogs);
    expect(after.metrics["agent.outbox.dropped.events"]).toBe(droppedEvents);
  });
});
