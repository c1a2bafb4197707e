import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { suiteResources } from "../helpers/suite-resources.js";

const run = promisify(execFile);
const AGENT = resolve(import.meta.dirname, "../../bin/pos-agent");
const OPS = resolve(import.meta.dirname, "../../bin/pos-ops");

async function cli(bin: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("pos-agent CLI", () => {
  const { dir, cleanups } = suiteResources("pos-cli");

  it("answers --help for every command with exit 0", async () => {
    for (const args of [["--help"], ["run", "--help"], ["config", "--help"], ["status", "--help"]]) {
      const result = await cli(AGENT, args);
      expect(result.code, args.join(" ")).toBe(0);
      expect(result.stdout).toMatch(/Usage/);
    }
    expect((await cli(OPS, ["--help"])).code).toBe(0);
  });

  it("refuses an unknown command or option with exit 2 and one sentence", async () => {
    const unknown = await cli(AGENT, ["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    const badOption = await cli(AGENT, ["status", "--bogus"]);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(/bogus/);
    expect(badOption.stderr).not.toMatch(/at .*\.js:\d+/);
  });

  it("config check names every bad key and exits 2", async () => {
    const file = join(dir, "bad.json");
    writeFileSync(
      file,
      JSON.stringify({
        deviceId: "bad id!",
        tenant: "acme",
        mqtt: { urls: [], bogus: 1 },
        outbox: { maxBytes: "big" },
      }),
    );
    const result = await cli(AGENT, ["config", "check", file]);
    expect(result.code).toBe(2);
    for (const key of ["deviceId", "mqtt.urls", "mqtt.bogus", "outbox.maxBytes"]) {
      expect(result.stderr).toContain(`${file}: ${key}: `);
    }
  });

  it("config check accepts a valid file with exit 0", async () => {
    const file = join(dir, "good.json");
    writeFileSync(
      file,
      JSON.stringify({ deviceId: "POS-1", tenant: "acme", mqtt: { urls: ["mqtt://127.0.0.1:1883"] } }),
    );
    const result = await cli(AGENT, ["config", "check", file]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("ok");
  });

  it("run exits 2 naming the file when the config is missing", async () => {
    const result = await cli(AGENT, ["run", "--config", join(dir, "nope.json")]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("nope.json");
  });

  it("status reads the database while the daemon runs", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir: join(dir, "agent"), brokerUrl: broker.url });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    await agent.waitForLog((line) => line.msg === "connected");
    await postIntake(config.intakePort, "/v1/events", [{ type: "test.ping", severity: "info" }]);

    const text = await cli(AGENT, ["status", "--config", config.path]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/daemon\s+running, pid \d+/);
    expect(text.stdout).toMatch(new RegExp(`connection\\s+connected to ${broker.url.replace(/\./g, "\\.")}`));

    const json = await cli(AGENT, ["status", "--config", config.path, "--json"]);
    const report = JSON.parse(json.stdout) as { daemon: { running: boolean }; outbox: { lastSeq: number } };
    expect(report.daemon.running).toBe(true);
    expect(report.outbox.lastSeq).toBeGreaterThanOrEqual(2);

    await agent.kill("SIGTERM");
    const after = JSON.parse((await cli(AGENT, ["status", "--config", config.path, "--json"])).stdout) as {
      daemon: { running: boolean };
      connection: { connected: boolean };
    };
    expect(after.daemon.running).toBe(false);
    expect(after.connection.connected).toBe(false);
  });

  it("refuses to run a second agent on the same data directory", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker-lock") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir: join(dir, "locked"), brokerUrl: broker.url });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    const second = await cli(AGENT, ["run", "--config", config.path]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `another pos-agent (pid ${agent.pid}) is running with data directory ${config.dataDir}`,
    );

    // A lock left by a killed agent does not block the next start.
    await agent.kill("SIGKILL");
    const next = await startAgent(config);
    cleanups.push(() => next.kill("SIGKILL"));
    await next.waitForLog((line) => line.msg === "connected");
  });
});
