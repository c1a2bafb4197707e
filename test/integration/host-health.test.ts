import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { type ReceivedRecord, startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

const HOST_METRICS = [
  "cpu.loadPct",
  "mem.usedPct",
  "mem.availableBytes",
  "disk.data.usedPct",
  "disk.data.freeBytes",
  "uptime.sec",
];

describe("host health through the agent process", () => {
  const { dir, cleanups } = suiteResources("pos-health");

  it("sends real host samples within two intervals", async () => {
    const root = join(dir, "samples");
    const broker = await startMosquitto({ dir: join(root, "broker") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir: root, brokerUrl: broker.url, telemetryIntervalSec: 1 });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "health-samples",
      topics: [`${config.root}/telemetry`],
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    const beats = () =>
      [...consumer.records.values()]
        .filter((record) => record.metrics !== undefined)
        .sort((x, y) => x.seq - y.seq)
        .map((record) => record.metrics as Record<string, number>);
    await consumer.waitFor(() => beats().length >= 2, 10_000, "two heartbeats");
    // Within two intervals, counted in heartbeats: the first carries every host metric but the CPU
    // load (which needs two readings), the second has that too.
    const [first, second] = beats() as [Record<string, number>, Record<string, number>];
    for (const name of HOST_METRICS.filter((metric) => metric !== "cpu.loadPct")) {
      expect(first[name], name).toBeTypeOf("number");
    }
    const metrics = second;
    for (const name of HOST_METRICS) expect(metrics[name], name).toBeTypeOf("number");
    expect(metrics["mem.usedPct"]).toBeGreaterThan(0);
    expect(metrics["mem.usedPct"]).toBeLessThanOrEqual(100);
    expect(metrics["disk.data.freeBytes"]).toBeGreaterThan(0);
    expect(metrics["uptime.sec"]).toBeGreaterThan(0);
    // Absent sensors are absent, never 0 (this machine may have no battery or thermal zone).
    for (const name of ["battery.pct", "cpu.tempC"]) {
      if (name in metrics) expect(metrics[name]).toBeGreaterThan(0);
    }
  });

  it("raises an alert once from real samples, lists it in the birth, and does not repeat it after a restart", async () => {
    const root = join(dir, "alerts");
    const broker = await startMosquitto({ dir: join(root, "broker") });
    cleanups.push(() => broker.kill());
    // Any machine uses more than 1 % of its memory: the rule must fire, once.
    const config = await writeAgentConfig({
      dir: root,
      brokerUrl: broker.url,
      telemetryIntervalSec: 1,
      extra: { alerts: { memUsedPct: 1, minDurationSec: 1 } },
    });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "health-alerts",
      topics: [`${config.root}/#`],
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    const raised = () => [...consumer.records.values()].filter((record) => record.type === "alert.raised");
    await consumer.waitFor(() => raised().length === 1, 15_000, "the memory alert");
    expect(raised()[0]).toMatchObject({
      severity: "medium",
      source: "host",
      details: { alert: "mem.usedPct", threshold: 1 },
    });
    const beats = () =>
      [...consumer.records.values()].filter((record) => record.metrics !== undefined).length;
    const seen = beats();
    await consumer.waitFor(() => beats() >= seen + 3, 10_000, "three more heartbeats");
    expect(raised()).toHaveLength(1);

    // After a restart the alert is still raised: the birth lists it, and no second alert.raised comes.
    await agent.kill("SIGTERM");
    const again = await startAgent(config);
    cleanups.push(() => again.kill("SIGKILL"));
    const births = () =>
      consumer.messages.filter(
        (message) => message.topic === `${config.root}/state` && message.payload.state === "ready",
      );
    await consumer.waitFor(
      () => births().some((birth) => JSON.stringify(birth.payload.alerts ?? []).includes("mem.usedPct")),
      15_000,
      "a birth listing the alert",
    );
    const beatsNow = beats();
    await consumer.waitFor(() => beats() >= beatsNow + 3, 10_000, "three heartbeats after the restart");
    expect(raised()).toHaveLength(1);
  });

  it("tells a clean restart, a crash and a device reboot apart", async () => {
    const root = join(dir, "reboot");
    const broker = await startMosquitto({ dir: join(root, "broker") });
    cleanups.push(() => broker.kill());
    const bootIdFile = join(root, "boot_id");
    writeFileSync(bootIdFile, "0b6a2c1e-0000-4000-8000-000000000001\n");
    const config = await writeAgentConfig({
      dir: root,
      brokerUrl: broker.url,
      extra: { health: { bootIdFile } },
    });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "health-reboot",
      topics: [`${config.root}/events`],
    });
    cleanups.push(() => consumer.close());
    const startEvents = () =>
      [...consumer.records.values()].filter((record) =>
        ["agent.started", "agent.restart", "device.reboot"].includes(String(record.type)),
      );
    async function run(stop: "SIGTERM" | "SIGKILL", expected: number): Promise<ReceivedRecord> {
      const agent = await startAgent(config);
      cleanups.push(() => agent.kill("SIGKILL"));
      await consumer.waitFor(() => startEvents().length === expected, 15_000, `start event ${expected}`);
      const event = startEvents().at(-1) as ReceivedRecord;
      await agent.kill(stop);
      return event;
    }

    expect(await run("SIGTERM", 1)).toMatchObject({ type: "agent.started", severity: "info" });
    expect(await run("SIGKILL", 2)).toMatchObject({ type: "agent.restart", severity: "info" });
    const crash = await run("SIGTERM", 3);
    expect(crash).toMatchObject({ type: "agent.restart", severity: "medium" });
    expect(JSON.stringify(crash)).toContain("crash");
    writeFileSync(bootIdFile, "0b6a2c1e-0000-4000-8000-000000000002\n");
    const reboot = await run("SIGTERM", 4);
    expect(reboot).toMatchObject({ type: "device.reboot" });
  });

  it("counts a start that failed half-way as a crash, not as a clean stop", async () => {
    const root = join(dir, "failed-start");
    const broker = await startMosquitto({ dir: join(root, "broker") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir: root, brokerUrl: broker.url });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "health-failed-start",
      topics: [`${config.root}/events`],
    });
    cleanups.push(() => consumer.close());
    const first = await startAgent(config);
    await first.kill("SIGTERM");

    // The intake port taken by someone else: the start fails after the run journal has begun.
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(config.intakePort, "127.0.0.1", resolve));
    const failed = await startAgent(config, { waitForIntake: false });
    expect((await failed.exited).code).toBe(1);
    await new Promise<void>((resolve) => squatter.close(() => resolve()));

    const next = await startAgent(config);
    cleanups.push(() => next.kill("SIGKILL"));
    const restarts = () => [...consumer.records.values()].filter((record) => record.type === "agent.restart");
    await consumer.waitFor(() => restarts().length === 2, 15_000, "the restart after the failed start");
    expect(
      restarts()
        .map((event) => event.severity)
        .sort(),
    ).toEqual(["info", "medium"]);
    expect(JSON.stringify(restarts().find((event) => event.severity === "medium"))).toContain("crash");
  });
});
