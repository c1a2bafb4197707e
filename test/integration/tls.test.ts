import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Broker, startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { createTestCa, type TestCa } from "../helpers/test-pki.js";

describe("TLS and mutual TLS", () => {
  const dir = mkdtempSync(join(tmpdir(), "pos-tls-"));
  const cleanups: Array<() => Promise<unknown>> = [];
  let ca: TestCa;
  let broker: Broker;
  let url: string;
  let client: { cert: string; key: string };

  beforeAll(async () => {
    ca = createTestCa(join(dir, "ca"), "pos-test-ca");
    const server = ca.issue("server", { cn: "localhost", san: "IP:127.0.0.1,DNS:localhost" });
    client = ca.issue("device", { cn: "POS-T1", clientAuth: true });
    broker = await startMosquitto({
      dir: join(dir, "broker"),
      extraConfig: [
        `cafile ${ca.cert}`,
        `certfile ${server.cert}`,
        `keyfile ${server.key}`,
        "require_certificate true",
        "use_identity_as_username true",
      ],
    });
    cleanups.push(() => broker.kill());
    url = `mqtts://127.0.0.1:${broker.port}`;
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });

  it("connects with the configured CA and client certificate", async () => {
    const config = await writeAgentConfig({
      dir: join(dir, "good"),
      brokerUrl: url,
      mqtt: { tls: { ca: ca.cert, cert: client.cert, key: client.key } },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    expect(await agent.waitForLog((line) => line.msg === "connected")).toMatchObject({ url });
  });

  it("refuses a broker whose certificate does not chain to the configured CA", async () => {
    const rogue = createTestCa(join(dir, "rogue"), "rogue-ca");
    const config = await writeAgentConfig({
      dir: join(dir, "rogue-agent"),
      brokerUrl: url,
      mqtt: { tls: { ca: rogue.cert, cert: client.cert, key: client.key } },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    const failed = await agent.waitForLog((line) => line.msg === "connect failed");
    expect(String(failed.reason)).toMatch(/certificate|issuer/i);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(agent.logs.some((line) => line.msg === "connected")).toBe(false);
  });

  it("is refused by the broker without a client certificate", async () => {
    const config = await writeAgentConfig({
      dir: join(dir, "anonymous"),
      brokerUrl: url,
      mqtt: { tls: { ca: ca.cert } },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    await agent.waitForLog((line) => line.msg === "connect failed");
    expect(agent.logs.some((line) => line.msg === "connected")).toBe(false);
  });

  it("names the missing TLS file instead of crashing", async () => {
    const config = await writeAgentConfig({
      dir: join(dir, "missing"),
      brokerUrl: url,
      mqtt: { tls: { ca: join(dir, "nope.pem") } },
    });
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    const failed = await agent.waitForLog((line) => line.msg === "connect failed");
    expect(String(failed.reason)).toContain("nope.pem");
  });
});
