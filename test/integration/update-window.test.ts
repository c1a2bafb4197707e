import { join } from "node:path";
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
import { type UpdateStateWatch, watchUpdateStates } from "../helpers/update-states.js";

/** "HH:MM" local time, `minutes` from now. */
function localClock(minutes: number): string {
  const at = new Date(Date.now() + minutes * 60_000);
  return `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
}

describe("the maintenance window", () => {
  const { dir, cleanups } = suiteResources("pos-update-window");
  let agent: AgentProcess;
  let client: CommandClient;
  let watch: UpdateStateWatch;
  let server: ReleaseServer;
  let releaser: KeyAndCert;
  let operator: KeyAndCert;
  let releaseRoots = "";
  let operatorRoots = "";
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;

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
    watch = await watchUpdateStates(broker.url, configFile.root, "window-watcher");
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await watch?.close();
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
    await watch.reached("1.0.0", "deferred", 10_000);
    expect(watch.states.at(-1)).toMatchObject({
      state: "deferred",
      reason: "outside_window",
      toVersion: "1.0.0",
    });
    // Nothing was downloaded while waiting.
    expect(server.requests.filter((request) => request.method === "GET")).toEqual([]);
  });
});
