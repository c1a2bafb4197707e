import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { DIAGNOSTIC_CHECK_NAMES } from "../../src/diagnostics/check.js";
import { fromBase64url, toBase64url } from "../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import { type AgentProcess, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { suiteResources } from "../helpers/suite-resources.js";

interface Response {
  id: string;
  status: string;
  code?: string;
  duplicate?: boolean;
  result?: Record<string, unknown>;
}

describe("remote commands through Mosquitto", () => {
  const { dir, cleanups } = suiteResources("pos-commands");
  let brokerUrl = "";
  let brokerPort = 0;
  let root = "";
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;
  let agent: AgentProcess;
  let ops: MqttClient;
  const responses: Response[] = [];
  let ca: KeyAndCert;
  let operator: KeyAndCert;
  let release: KeyAndCert;
  let stranger: KeyAndCert;

  beforeAll(async () => {
    ca = createRootCa({ cn: "Test Operators" });
    operator = issueLeaf({ ca, role: "operator", cn: "alice" });
    release = issueLeaf({ ca, role: "release", cn: "release-bot" });
    stranger = issueLeaf({ ca: createRootCa({ cn: "Somebody Else" }), role: "operator", cn: "mallory" });
    mkdirSync(join(dir, "trust"), { recursive: true });
    writeFileSync(join(dir, "trust", "operators.pem"), ca.certPem);

    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    brokerUrl = broker.url;
    brokerPort = broker.port;
    configFile = await writeAgentConfig({
      dir,
      brokerUrl,
      extra: { trust: { operatorRoots: [join(dir, "trust", "operators.pem")] } },
    });
    root = configFile.root;
    agent = await startAgent(configFile);
    await agent.waitForLog((line) => line.msg === "subscribed");
    ops = mqtt.connect(brokerUrl, { clientId: "ops-console", protocolVersion: 5 });
    await new Promise((resolve) => ops.once("connect", resolve));
    await ops.subscribeAsync("ops/replies/#", { qos: 1 });
    ops.on("message", (_topic, payload) => responses.push(JSON.parse(payload.toString()) as Response));
  });
  afterAll(async () => {
    await ops?.endAsync();
    await agent?.kill("SIGKILL");
  });

  function send(command: object): void {
    const payload = JSON.stringify(command);
    ops.publish(`${root}/cmd/req`, payload, {
      qos: 1,
      properties: { responseTopic: "ops/replies/console", correlationData: Buffer.from("corr-1") },
    });
  }

  async function answer(id: string, count = 1): Promise<Response[]> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const got = responses.filter((response) => response.id === id && isTerminal(response.status));
      if (got.length >= count) return got;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no terminal response for ${id}; have ${JSON.stringify(responses.slice(-5))}`);
  }

  const now = () => Date.now();
  const signed = (command: object, key: KeyAndCert = operator) =>
    signEnvelope({ payload: command, typ: "pos-command+json", keyPem: key.keyPem, chainPem: [key.certPem] });
  const restart = (id: string, overrides: Record<string, unknown> = {}) => ({
    id,
    cmd: "agent.restart",
    target: configFile.deviceId,
    issuedAt: now(),
    expiresAt: now() + 60_000,
    ...overrides,
  });

  it("answers a ping from mosquitto_pub on the MQTT 5 Response Topic with its Correlation Data", async () => {
    const sub = spawn(
      "mosquitto_sub",
      [
        "-V",
        "mqttv5",
        "-h",
        "127.0.0.1",
        "-p",
        String(brokerPort),
        "-t",
        "cli/replies",
        "-C",
        "1",
        "-F",
        "%D|%p",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const output = collect(sub);
    await new Promise((resolve) => setTimeout(resolve, 300)); // subscribed
    const pub = spawn("mosquitto_pub", [
      "-V",
      "mqttv5",
      "-h",
      "127.0.0.1",
      "-p",
      String(brokerPort),
      "-q",
      "1",
      "-t",
      `${root}/cmd/req`,
      "-D",
      "publish",
      "response-topic",
      "cli/replies",
      "-D",
      "publish",
      "correlation-data",
      "job-42",
      "-m",
      JSON.stringify({ id: "cli-ping-1", cmd: "ping" }),
    ]);
    expect(await exited(pub)).toBe(0);
    expect(await exited(sub)).toBe(0);
    const text = output().trim();
    const bar = text.indexOf("|");
    expect(text.slice(0, bar)).toBe("job-42");
    expect(JSON.parse(text.slice(bar + 1))).toMatchObject({
      v: 1,
      id: "cli-ping-1",
      deviceId: configFile.deviceId,
      status: "succeeded",
      result: { pong: true },
    });
  });

  it("refuses every forged, foreign, stale or unsigned guarded command with its code, and restarts nothing", async () => {
    const forged = signed(restart("forged"));
    const signature = fromBase64url(forged.signatures[0]?.signature ?? "") as Buffer;
    signature[10] = (signature[10] ?? 0) ^ 0xff;
    (forged.signatures[0] as { signature: string }).signature = toBase64url(signature);

    const tampered = signed(restart("tampered"));
    tampered.payload = toBase64url(JSON.stringify(restart("tampered", { target: "group:everyone" })));

    const cases: Array<[string, object, string]> = [
      ["unsigned", restart("unsigned"), "SIGNATURE_REQUIRED"],
      ["forged", forged, "SIGNATURE_INVALID"],
      ["untrusted", signed(restart("untrusted"), stranger), "UNTRUSTED_SIGNER"],
      ["release-cert", signed(restart("release-cert"), release), "UNTRUSTED_SIGNER"],
      [
        "expired",
        signed(restart("expired", { issuedAt: now() - 120_000, expiresAt: now() - 60_000 })),
        "EXPIRED",
      ],
      [
        "not-yet",
        signed(restart("not-yet", { issuedAt: now() + 600_000, expiresAt: now() + 660_000 })),
        "EXPIRED",
      ],
      ["wrong-target", signed(restart("wrong-target", { target: "POS-9999" })), "WRONG_TARGET"],
      ["tampered", tampered, "SIGNATURE_INVALID"],
    ];
    for (const [, payload] of cases) send(payload);
    for (const [id, , code] of cases) {
      const [response] = await answer(id);
      expect(response, id).toMatchObject({ status: "rejected", code });
    }
    // Nothing was executed: the agent is the same process and never began a stop.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(agent.child.exitCode).toBeNull();
    expect(agent.logs.some((line) => line.msg === "stopping")).toBe(false);
  });

  it("answers a repeated id from the journal, also after a restart, without running it again", async () => {
    send({ id: "dup-1", cmd: "ping" });
    const [first] = await answer("dup-1");
    send({ id: "dup-1", cmd: "ping" });
    const both = await answer("dup-1", 2);
    expect(both[1]).toMatchObject({ status: "succeeded", duplicate: true, result: first?.result });

    expect((await agent.kill("SIGTERM")).code).toBe(0);
    agent = await startAgent(configFile);
    await agent.waitForLog((line) => line.msg === "subscribed");
    send({ id: "dup-1", cmd: "ping" });
    const all = await answer("dup-1", 3);
    expect(all[2]).toMatchObject({ status: "succeeded", duplicate: true, result: first?.result });
  });

  it("runs the diagnostics suite: accepted, progress, then the report of every check", async () => {
    send({ id: "diag-1", cmd: "diagnostics.run" });
    const [done] = await answer("diag-1");
    expect(done?.status).toBe("succeeded");
    const report = done?.result as {
      summary: Record<string, number>;
      checks: Array<{ name: string; status: string }>;
    };
    expect(report.checks.map((check) => check.name)).toEqual([...DIAGNOSTIC_CHECK_NAMES]);
    expect(report.checks.find((check) => check.name === "database")?.status).toBe("pass");
    expect(report.checks.find((check) => check.name === "broker")?.status).toBe("pass");
    const statuses = responses
      .filter((response) => response.id === "diag-1")
      .map((response) => response.status);
    expect(statuses[0]).toBe("accepted");
    expect(statuses.at(-1)).toBe("succeeded");
  });

  it("runs a signed restart: the answer comes, then the agent stops cleanly", async () => {
    send(signed(restart("restart-1")));
    const [response] = await answer("restart-1");
    expect(response).toMatchObject({ status: "succeeded", result: { restarting: true } });
    const exit = await agent.exited;
    expect(exit.code).toBe(0);
    expect(agent.logs.some((line) => line.msg === "stopped")).toBe(true);
  });
});

function isTerminal(status: string): boolean {
  return status === "succeeded" || status === "failed" || status === "rejected";
}

function collect(child: ChildProcess): () => string {
  let text = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  return () => text;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}
