import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

describe("corrupt database at start", () => {
  const { dir, cleanups } = suiteResources("pos-corrupt");

  it("quarantines the file, starts fresh and reports it", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir, brokerUrl: broker.url });
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(join(config.dataDir, "agent.db"), Buffer.from("this is not a database ".repeat(400)));
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "corrupt-consumer",
      topics: [`${config.root}/events`],
    });
    cleanups.push(() => consumer.close());

    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    await consumer.waitFor(
      () => [...consumer.records.values()].some((record) => record.type === "agent.store.quarantined"),
      10_000,
      "the quarantine event",
    );
    const event = [...consumer.records.values()].find((record) => record.type === "agent.store.quarantined");
    expect(event).toMatchObject({ severity: "high", source: "agent" });
    const moved = readdirSync(config.dataDir).filter((name) => name.startsWith("agent.db.corrupt-"));
    expect(moved).toHaveLength(1);
    expect((event?.details as { movedTo?: string } | undefined)?.movedTo).toBe(
      join(config.dataDir, moved[0] as string),
    );

    // A second start finds a healthy database: no new quarantine, no crash loop.
    expect((await agent.kill("SIGTERM")).code).toBe(0);
    const again = await startAgent(config);
    cleanups.push(() => again.kill("SIGKILL"));
    await again.waitForLog((line) => line.msg === "connected");
    expect(readdirSync(config.dataDir).filter((name) => name.startsWith("agent.db.corrupt-"))).toHaveLength(
      1,
    );
    expect(again.logs.some((line) => String(line.msg).includes("quarantin"))).toBe(false);
  });
});
