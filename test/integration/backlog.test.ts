import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy } from "../../scripts/lib/tcp-proxy.mjs";
import { postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

const BACKLOG = 100_000;
const PER_REQUEST = 1_500; // 1 500 lines of ~520 bytes stay under the 1 MiB body limit
/**
 * The backlog is ~50 MiB of JSON; holding it in memory would take several times that. What remains is
 * garbage of the drain awaiting V8's next full collection (measured 20-25 MiB peak here, falling back
 * to ~10 MiB once collected), whatever the backlog's size.
 */
const MAX_RSS_GROWTH = 40 * 1024 * 1024;

describe("backlog drain", () => {
  const { dir, cleanups } = suiteResources("pos-backlog");

  it("drains a 100 000-record backlog oldest first with flat memory", { timeout: 180_000 }, async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const proxy = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => proxy.close());
    await proxy.down();
    const config = await writeAgentConfig({ dir, brokerUrl: `mqtt://127.0.0.1:${proxy.port}` });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    const padding = "x".repeat(480);
    for (let request = 0; request * PER_REQUEST < BACKLOG; request++) {
      const items = Array.from(
        { length: Math.min(PER_REQUEST, BACKLOG - request * PER_REQUEST) },
        (_, i) => ({
          source: "pos-app",
          level: "info",
          line: `backlog ${request * PER_REQUEST + i} ${padding}`,
        }),
      );
      const answer = await postIntake(config.intakePort, "/v1/logs", items);
      expect(answer.status).toBe(200);
    }

    const consumer = await startConsumer({
      url: broker.url,
      clientId: "backlog-consumer",
      topics: [`${config.root}/logs`],
    });
    cleanups.push(() => consumer.close());
    // Let the intake's garbage settle so the baseline is the agent at rest with a full outbox.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const baseline = agent.rssBytes();
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, agent.rssBytes());
    }, 25);
    // While the broker was unreachable the agent kept trying, never more than once a second.
    const attempts = agent.logs.filter((line) => line.msg === "connecting").map((line) => Number(line.time));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < attempts.length; i++) {
      expect((attempts[i] as number) - (attempts[i - 1] as number)).toBeGreaterThanOrEqual(1000);
    }
    await proxy.up();
    const logCount = () =>
      [...consumer.records.values()].filter((record) => String(record.line).startsWith("backlog")).length;
    await consumer.waitFor(() => logCount() === BACKLOG, 120_000, `${BACKLOG} backlog records`);
    clearInterval(sampler);

    const seqs = [...consumer.records.values()]
      .filter((r) => String(r.line).startsWith("backlog"))
      .map((r) => r.seq);
    const inOrder = seqs.every((seq, i) => i === 0 || seq > (seqs[i - 1] as number));
    const historical = [...consumer.records.values()].filter((r) => r.historical === true).length;
    console.log(
      `backlog: baseline RSS ${(baseline / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB, ` +
        `growth ${((peak - baseline) / 1048576).toFixed(1)} MiB, duplicates ${consumer.duplicates}`,
    );
    expect(inOrder).toBe(true);
    expect(historical).toBeGreaterThanOrEqual(BACKLOG);
    expect(peak - baseline).toBeLessThanOrEqual(MAX_RSS_GROWTH);
  });
});
