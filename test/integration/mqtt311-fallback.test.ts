import { createServer } from "node:net";
import { Aedes } from "aedes";
import { describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/free-port.mjs";
import { postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

// aedes speaks only MQTT 3.1.1 and refuses an MQTT 5 CONNECT with return code 1: the broker a
// terminal meets when its operator runs an older broker.
describe("MQTT 3.1.1 fallback", () => {
  const { dir, cleanups } = suiteResources("pos-fallback");

  it("falls back to 3.1.1 when the broker refuses MQTT 5, and delivers", async () => {
    const aedes = await Aedes.createBroker();
    const server = createServer(aedes.handle);
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => aedes.close(() => resolve()))));
    server.on("connection", (socket) => cleanups.push(async () => socket.destroy()));
    const url = `mqtt://127.0.0.1:${port}`;

    const config = await writeAgentConfig({ dir, brokerUrl: url });
    const consumer = await startConsumer({
      url,
      clientId: "fallback-consumer",
      topics: [`${config.root}/#`],
      persistent: false,
      protocolVersion: 4,
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    await agent.waitForLog((line) => line.msg === "connected");
    const connecting = agent.logs
      .filter((line) => line.msg === "connecting")
      .map((line) => line.protocolVersion);
    expect(connecting.slice(0, 2)).toEqual([5, 4]);
    const answer = await postIntake(config.intakePort, "/v1/logs", [
      { source: "app", level: "warn", line: "over 3.1.1" },
    ]);
    expect(answer.status).toBe(200);
    await consumer.waitFor(
      () => [...consumer.records.values()].some((r) => r.line === "over 3.1.1"),
      10_000,
      "the log line",
    );
    const birth = consumer.messages.find((m) => m.topic.endsWith("/state"))?.payload;
    expect(birth).toMatchObject({ online: true, state: "ready" });
  });
});
