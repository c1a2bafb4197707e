import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/free-port.mjs";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy } from "../../scripts/lib/tcp-proxy.mjs";
import { postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

describe("link failures", () => {
  const { dir, cleanups } = suiteResources("pos-link");

  it("fails over to the next broker URL when the first does not answer", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker-a") });
    cleanups.push(() => broker.kill());
    const dead = `mqtt://127.0.0.1:${await freePort()}`;
    const config = await writeAgentConfig({
      dir: join(dir, "failover"),
      brokerUrl: dead,
      mqtt: { urls: [dead, broker.url] },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    const connected = await agent.waitForLog((line) => line.msg === "connected");
    expect(connected.url).toBe(broker.url);
    const failed = agent.logs.find((line) => line.msg === "connect failed");
    expect(failed).toMatchObject({ url: dead, next: broker.url });
  });

  it("reconnects when connected but no PUBACK comes, and then delivers", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker-b") });
    cleanups.push(() => broker.kill());
    const link = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => link.close());
    const config = await writeAgentConfig({
      dir: join(dir, "watchdog"),
      brokerUrl: `mqtt://127.0.0.1:${link.port}`,
      mqtt: { ackTimeoutSec: 2, keepaliveSec: 60 },
    });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "wd-consumer",
      topics: [`${config.root}/logs`],
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    await agent.waitForLog((line) => line.msg === "connected");

    // The TCP connection stays up but no byte gets through: a half-dead link keepalive would take a minute to see.
    link.stall();
    const answer = await postIntake(config.intakePort, "/v1/logs", [
      { source: "app", level: "error", line: "stuck" },
    ]);
    expect(answer.status).toBe(200);
    const forced = await agent.waitForLog((line) => line.msg === "forcing reconnect", 10_000);
    expect(String(forced.reason)).toMatch(/no PUBACK/);
    expect(consumer.records.size).toBe(0);

    link.resume();
    await consumer.waitFor(
      () => [...consumer.records.values()].some((r) => r.line === "stuck"),
      15_000,
      "the stuck record",
    );
  });

  it("stops cleanly on SIGTERM while the link is stalled with publishes unacknowledged", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker-c") });
    cleanups.push(() => broker.kill());
    const link = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => link.close());
    const config = await writeAgentConfig({
      dir: join(dir, "stalled-stop"),
      brokerUrl: `mqtt://127.0.0.1:${link.port}`,
      mqtt: { ackTimeoutSec: 60, keepaliveSec: 60 },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    await agent.waitForLog((line) => line.msg === "connected");
    link.stall();
    await postIntake(config.intakePort, "/v1/logs", [{ source: "app", level: "info", line: "pending" }]);
    await new Promise((resolve) => setTimeout(resolve, 200));

    const started = Date.now();
    const exit = await agent.kill("SIGTERM");
    // Drain (3 s) and the offline message (2 s) give up, then the disconnect is not waited for forever.
    expect(exit.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(agent.logs.some((line) => line.msg === "stopped")).toBe(true);
  });
});
