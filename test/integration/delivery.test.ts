import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy } from "../../scripts/lib/tcp-proxy.mjs";
import { type AgentProcess, postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

const TOTAL = 20_000;
const PER_REQUEST = 200;

describe("delivery through link cuts, agent kills and a broker restart", () => {
  const { dir, cleanups } = suiteResources("pos-delivery");

  it("delivers every intake-acknowledged record at least once", { timeout: 240_000 }, async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const proxy = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => proxy.close());
    const config = await writeAgentConfig({ dir, brokerUrl: `mqtt://127.0.0.1:${proxy.port}` });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: "fleet-consumer",
      topics: [`${config.root}/logs`],
    });
    cleanups.push(() => consumer.close());

    let agent: AgentProcess = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));

    // Disruptions are spread over the run by request number: 5 link cuts, 3 SIGKILLs, 1 broker restart.
    const requests = TOTAL / PER_REQUEST;
    const cutsAt = new Set([8, 25, 42, 60, 85]);
    const killsAt = new Set([15, 50, 75]);
    const brokerRestartAt = 33;
    const acknowledged = new Set<string>();
    let resent = 0;
    let racedAndCommitted = 0;
    let racedKills = 0;

    for (let request = 0; request < requests; request++) {
      if (cutsAt.has(request)) proxy.cut();
      if (request === brokerRestartAt) await broker.restart();
      const items = Array.from({ length: PER_REQUEST }, (_, i) => ({
        source: "pos-app",
        level: "info",
        line: `record ${request * PER_REQUEST + i}`,
      }));
      if (killsAt.has(request)) {
        // SIGKILL while a request is being committed and earlier batches await their PUBACK, then
        // restart on the same database. The racing request counts only if it was answered 200.
        const racing = postIntake(config.intakePort, "/v1/logs", items).catch(() => undefined);
        // 0, 1 and 2 ms: before, during and after the commit, as it happens.
        await new Promise((resolve) => setTimeout(resolve, racedKills++));
        await agent.kill("SIGKILL");
        if ((await racing)?.status === 200) {
          for (const item of items) acknowledged.add(item.line);
          racedAndCommitted += 1;
        }
        agent = await startAgent(config);
      }
      for (;;) {
        const answer = await postIntake(config.intakePort, "/v1/logs", items).catch(() => undefined);
        if (answer?.status === 200) break;
        resent += 1;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      for (const item of items) acknowledged.add(item.line);
    }

    const receivedLines = () => new Set([...consumer.records.values()].map((record) => String(record.line)));
    await consumer.waitFor(
      () => {
        const lines = receivedLines();
        for (const line of acknowledged) if (!lines.has(line)) return false;
        return true;
      },
      90_000,
      `all ${acknowledged.size} acknowledged records at the consumer`,
    );

    const lines = receivedLines();
    const lost = [...acknowledged].filter((line) => !lines.has(line));
    const historical = [...consumer.records.values()].filter((record) => record.historical === true).length;
    console.log(
      `delivery: ${acknowledged.size} acknowledged, ${consumer.records.size} distinct seqs received, ` +
        `${consumer.duplicates} duplicates (same seq twice, removed by de-duplication), ${historical} marked historical, ` +
        `${resent} intake requests retried, ${racedAndCommitted} of ${killsAt.size} requests racing a SIGKILL committed`,
    );
    expect(lost).toEqual([]);

    const exit = await agent.kill("SIGTERM");
    expect(exit.code).toBe(0);
    const db = new Sqlite(join(config.dataDir, "agent.db"), { readonly: true });
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
  });
});
