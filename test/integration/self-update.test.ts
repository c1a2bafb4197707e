import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import type { KeyAndCert } from "../../src/pki/issue.js";
import { type CommandClient, connectCommandClient } from "../../src/transport/command-client.js";
import { writeAgentConfig } from "../helpers/agent-process.js";
import { publishRelease, type TreeSpec } from "../helpers/release-fixtures.js";
import { type ReleaseServer, startReleaseServer } from "../helpers/release-server.js";
import { sendSigned } from "../helpers/signed-command.js";
import { makeUpdatePki } from "../helpers/update-pki.js";

const ROOT = resolve(import.meta.dirname, "../..");
const LAUNCHER = join(ROOT, "bin", "pos-agent-launcher");

/**
 * The agent updating itself through bin/pos-agent-launcher, with the test as the service manager
 * (it starts the launcher again whenever it exits, as systemd's Restart=always does). The data dir
 * lives inside the checkout so a release tree of the agent (bin, dist, package.json) finds the
 * checkout's node_modules the way an installed agent finds its own.
 */
describe("the agent updates itself", () => {
  const dir = join(ROOT, ".test-tmp", `self-update-${process.pid}-${Date.now()}`);
  const cleanups: Array<() => unknown> = [];
  let server: ReleaseServer;
  let client: CommandClient;
  let watcher: MqttClient;
  let releaser: KeyAndCert;
  let operator: KeyAndCert;
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;
  let supervisor: { stop(): Promise<void>; starts: number };
  const states: Array<Record<string, unknown>> = [];
  const births: Array<Record<string, unknown>> = [];
  let home = "";

  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pki = makeUpdatePki(dir, "Self");
    ({ releaser, operator } = pki);
    server = await startReleaseServer();
    cleanups.push(() => server.close());
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    configFile = await writeAgentConfig({
      dir,
      brokerUrl: broker.url,
      deviceId: "POS-SELF",
      extra: {
        trust: { releaseRoots: [pki.releaseRoots], operatorRoots: [pki.operatorRoots] },
      },
    });
    home = join(configFile.dataDir, "components", "pos-agent");
    watcher = mqtt.connect(broker.url, { clientId: "self-watcher", protocolVersion: 5 });
    await new Promise((r) => watcher.once("connect", r));
    watcher.on("message", (topic, payload) => {
      if (payload.length === 0) return;
      const message = JSON.parse(payload.toString()) as Record<string, unknown>;
      if (topic.endsWith("/update/state")) states.push(message);
      else if (message.online === true) births.push(message);
    });
    await watcher.subscribeAsync([`${configFile.root}/update/state`, `${configFile.root}/state`], { qos: 1 });
    supervisor = supervise(configFile.path, configFile.dataDir);
    client = await connectCommandClient({ url: broker.url });
    await until(() => births.some((b) => b.agentVersion === "0.1.0"), 20_000, "the first agent's birth");
  }, 60_000);
  afterAll(async () => {
    await supervisor?.stop();
    await client?.close();
    await watcher?.endAsync();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A release of the agent itself: its entry point, its compiled code, its package.json. */
  function agentTree(version: string): TreeSpec {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Record<string, unknown>;
    const files: TreeSpec = {
      "bin/pos-agent": { content: readFileSync(join(ROOT, "bin", "pos-agent")), mode: 0o755 },
      "package.json": JSON.stringify({ ...pkg, version }, null, 2),
    };
    const walk = (at: string, rel: string) => {
      for (const entry of readdirSync(at, { withFileTypes: true })) {
        const full = join(at, entry.name);
        if (entry.isDirectory()) walk(full, `${rel}${entry.name}/`);
        else files[`dist/${rel}${entry.name}`] = readFileSync(full);
      }
    };
    walk(join(ROOT, "dist"), "");
    return files;
  }

  async function apply(version: string, files: TreeSpec) {
    const { envelope } = await publishRelease({
      workDir: dir,
      server,
      component: "pos-agent",
      version,
      files,
      signers: [releaser],
    });
    return sendSigned({
      client,
      tenant: configFile.tenant,
      deviceId: configFile.deviceId,
      operator,
      id: `self-${version}`,
      cmd: "update.apply",
      args: { manifest: envelope },
      timeoutMs: 60_000,
    });
  }

  it("restarts into a new release through the launcher, which commits itself once connected", async () => {
    const answer = await apply("0.2.0", agentTree("0.2.0"));
    expect(answer?.status, answer?.message).toBe("succeeded");
    expect(answer?.result).toMatchObject({ state: "health_check", toVersion: "0.2.0" });
    await until(
      () => states.some((s) => s.toVersion === "0.2.0" && s.state === "committed"),
      45_000,
      "0.2.0 committed",
    );
    expect(births.some((b) => b.agentVersion === "0.2.0")).toBe(true);
    expect(readlinkSync(join(home, "current"))).toBe(join("releases", "0.2.0"));
    expect(() => readFileSync(join(home, "pending"))).toThrow();
  }, 90_000);

  it("is switched back by the launcher when the new release crash-loops, and reports why", async () => {
    const broken: TreeSpec = {
      "bin/pos-agent": { content: "#!/usr/bin/env node\nprocess.exit(1);\n", mode: 0o755 },
      "package.json": JSON.stringify({ name: "pos-agent", version: "0.3.0" }),
    };
    const answer = await apply("0.3.0", broken);
    expect(answer?.status, answer?.message).toBe("succeeded");
    await until(
      () => states.some((s) => s.toVersion === "0.3.0" && s.state === "rolled_back"),
      60_000,
      "0.3.0 rolled back",
    );
    const last = states.filter((s) => s.toVersion === "0.3.0").at(-1);
    expect(last).toMatchObject({ state: "rolled_back", code: "HEALTH_CHECK_FAILED" });
    expect(String(last?.message)).toContain("crash loop");
    expect(readlinkSync(join(home, "current"))).toBe(join("releases", "0.2.0"));
    expect(supervisor.starts).toBeGreaterThanOrEqual(5);
  }, 90_000);
});

/** The service manager: starts the launcher, and again each time it exits, until stopped. */
function supervise(configPath: string, dataDir: string) {
  let child: ChildProcess | undefined;
  let stopped = false;
  const state = {
    starts: 0,
    async stop() {
      stopped = true;
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child?.once("exit", r));
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
  const start = () => {
    if (stopped) return;
    state.starts += 1;
    child = spawn(LAUNCHER, ["run", "--config", configPath], {
      env: { ...process.env, POS_AGENT_DATA_DIR: dataDir, POS_AGENT_NODE: process.execPath },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr?.resume();
    child.once("exit", () => setTimeout(start, 200));
  };
  start();
  return state;
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
