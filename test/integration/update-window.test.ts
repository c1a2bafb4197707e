import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import type { KeyAndCert } from "../../src/pki/issue.js";
import { type CommandClient, connectCommandClient } from "../../src/transport/command-client.js";
import { type AgentProcess, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { publishRelease } from "../helpers/release-fixtures.js";
import { type ReleaseServer, startReleaseServer } from "../helpers/release-server.js";
import { sendSigned } from "../helpers/signed-command.js";
import { suiteResources } from "../helpers/suite-resources.js";
import { makeUpdatePki } from "../helpers/update-pki.js";

/** "HH:MM" local time, `minutes` from now. */
function localClock(minutes: number): string {
  const at = new Date(Date.now() + minutes * 60_000);
  return `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
}

describe("the maintenance window", () => {
  const { dir, cleanups } = suiteResources("pos-update-window");
  let agent: AgentProcess;
  let client: CommandClient;
  let watcher: MqttClient;
  let server: ReleaseServer;
  let releaser: KeyAndCert;
  let operator: KeyAndCert;
  let releaseRoots = "";
  let operatorRoots = "";
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;
  const states: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    ({ releaser, operator, releaseRoots, operatorRoots } = makeUpdatePki(dir, "Window"));
    server = await startReleaseServer();
    cleanups.push(() => server.close());
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    configFile = await writeAgentConfig({
      dir,
      brokerUrl: broker.url,
      deviceId: "POS-WINDOW",
      extra: {
        trust: { releaseRoots: [releaseRoots], operatorRoots: [operatorRoots] },
        // A window that opens in two hours: now is outside it.
        updates: { maintenanceWindow: { start: localClock(120), end: localClock(180) } },
      },
    });
    agent = await startAgent(configFile);
    await agent.waitForLog((line) => line.msg === "subscribed");
    client = await connectCommandClient({ url: broker.url });
    watcher = mqtt.connect(broker.url, { clientId: "window-watcher", protocolVersion: 5 });
    await new Promise((r) => watcher.once("connect", r));
    watcher.on("message", (_topic, payload) => {
      if (payload.length > 0) states.push(JSON.parse(payload.toString()) as Record<string, unknown>);
    });
    await watcher.subscribeAsync(`${configFile.root}/update/state`, { qos: 1 });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await watcher?.endAsync();
    await agent?.kill("SIGKILL");
  });

  it("defers an update outside the window, says when it opens, and installs nothing", async () => {
    const { envelope } = await publishRelease({
      workDir: dir,
      server,
      component: "pos-app",
      version: "1.0.0",
      files: { VERSION: "1.0.0" },
      signers: [releaser],
    });
    const answer = await sendSigned({
      client,
      tenant: configFile.tenant,
      deviceId: configFile.deviceId,
      operator,
      id: "w-1",
      cmd: "update.apply",
      args: { manifest: envelope },
      timeoutMs: 20_000,
    });
    expect(answer.status, answer.message).toBe("succeeded");
    expect(answer.result).toMatchObject({ state: "deferred" });
    expect(String(answer.result?.message)).toContain(localClock(120));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !states.some((s) => s.state === "deferred"))
      await new Promise((r) => setTimeout(r, 50));
    expect(states.at(-1)).toMatchObject({ state: "deferred", reason: "outside_window", toVersion: "1.0.0" });
    // Nothing was downloaded while waiting.
    expect(server.requests.filter((request) => request.method === "GET")).toEqual([]);
  });
});
