import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import mqtt, { type MqttClient } from "mqtt";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import { isPlausibleTime } from "../../src/shared/clock.js";
import { CARD_LINES, findCardNumbers, SECRETS } from "../fixtures/card-lines.js";
import { type AgentProcess, postIntake, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { suiteResources } from "../helpers/suite-resources.js";

interface Response {
  id: string;
  status: string;
  code?: string;
  message?: string;
  progress?: number;
  result?: Record<string, unknown>;
}

/** Secrets written into the agent's config: none may leave in a bundle. */
const CONFIG_SECRET = "tok-9f8e7d6c";

describe("logs.query and logs.upload through Mosquitto", () => {
  const { dir, cleanups } = suiteResources("pos-logs-commands");
  let root = "";
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;
  let agent: AgentProcess;
  let ops: MqttClient;
  let operator: KeyAndCert;
  const responses: Response[] = [];
  const uploads: Array<{ url: string; body: Buffer; contentType: string | undefined }> = [];
  let uploadServer: Server;
  let uploadBase = "";

  beforeAll(async () => {
    const ca = createRootCa({ cn: "Test Operators" });
    operator = issueLeaf({ ca, role: "operator", cn: "alice" });
    mkdirSync(join(dir, "trust"), { recursive: true });
    writeFileSync(join(dir, "trust", "operators.pem"), ca.certPem);

    uploadServer = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        if (request.url?.startsWith("/denied")) {
          response.writeHead(403).end();
          return;
        }
        uploads.push({
          url: request.url ?? "",
          body: Buffer.concat(chunks),
          contentType: request.headers["content-type"],
        });
        response.writeHead(201).end();
      });
    });
    await new Promise<void>((resolve) => uploadServer.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => uploadServer.close(() => resolve())));
    const address = uploadServer.address();
    uploadBase = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;

    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    configFile = await writeAgentConfig({
      dir,
      brokerUrl: broker.url,
      extra: {
        trust: { operatorRoots: [join(dir, "trust", "operators.pem")] },
        components: {
          "pos-app": { healthCheck: { url: `http://127.0.0.1:9/health?token=${CONFIG_SECRET}` } },
        },
      },
    });
    root = configFile.root;
    agent = await startAgent(configFile);
    await agent.waitForLog((line) => line.msg === "subscribed");
    ops = mqtt.connect(broker.url, { clientId: "ops-logs", protocolVersion: 5 });
    await new Promise((resolve) => ops.once("connect", resolve));
    await ops.subscribeAsync(`${root}/cmd/res`, { qos: 1 });
    ops.on("message", (_topic, payload) => responses.push(JSON.parse(payload.toString()) as Response));

    const lines = [
      ...CARD_LINES.map((line) => ({ source: "pinpad", level: "error", line })),
      ...Array.from({ length: 200 }, (_, i) => ({
        source: i % 2 ? "printer" : "pos-app",
        level: i % 10 === 0 ? "warn" : "info",
        line: `routine line ${i}`,
      })),
    ];
    const stored = await postIntake(configFile.intakePort, "/v1/logs", lines);
    expect(stored.status).toBe(200);
    await postIntake(configFile.intakePort, "/v1/events", [
      { type: "pos-app.crashed", severity: "high", source: "pos-app", message: "exit 134" },
    ]);
  });
  afterAll(async () => {
    await ops?.endAsync();
    await agent?.kill("SIGKILL");
  });

  async function run(command: object, signed = false): Promise<Response> {
    const id = (command as { id: string }).id;
    const payload = signed
      ? signEnvelope({
          payload: command,
          typ: "pos-command+json",
          keyPem: operator.keyPem,
          chainPem: [operator.certPem],
        })
      : command;
    ops.publish(`${root}/cmd/req`, JSON.stringify(payload), { qos: 1 });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const terminal = responses.find(
        (r) => r.id === id && (r.status === "succeeded" || r.status === "failed" || r.status === "rejected"),
      );
      if (terminal) return terminal;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no terminal response for ${id}`);
  }
  const signedCommand = (id: string, cmd: string, args: object) => ({
    id,
    cmd,
    args,
    target: configFile.deviceId,
    issuedAt: Date.now(),
    expiresAt: Date.now() + 60_000,
  });

  it("answers logs.query with filtered lines, scrubbed, paged by cursor", async () => {
    const errors = await run({ id: "q-1", cmd: "logs.query", args: { source: "pinpad", level: "error" } });
    expect(errors.status).toBe("succeeded");
    const records = errors.result?.records as Array<{ line: string; source: string }>;
    expect(records).toHaveLength(CARD_LINES.length);
    expect(records.flatMap(cardNumbersIn)).toEqual([]);
    for (const secret of SECRETS) expect(JSON.stringify(records)).not.toContain(secret);

    const lines: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      const answer = await run({
        id: `q-page-${page}`,
        cmd: "logs.query",
        args: { text: "ROUTINE", level: "info", limit: 30, ...(cursor ? { cursor } : {}) },
      });
      lines.push(...((answer.result?.records ?? []) as Array<{ line: string }>).map((r) => r.line));
      cursor = answer.result?.nextCursor as string | undefined;
      if (cursor === undefined) break;
    }
    expect(lines).toEqual(Array.from({ length: 200 }, (_, i) => `routine line ${i}`));
  });

  it("refuses an unsigned logs.upload and sends nothing", async () => {
    const answer = await run({
      id: "u-unsigned",
      cmd: "logs.upload",
      args: { url: `${uploadBase}/bundles/x` },
    });
    expect(answer).toMatchObject({ status: "rejected", code: "SIGNATURE_REQUIRED" });
    expect(uploads).toHaveLength(0);
  });

  it("uploads a gzip bundle whose sha256 matches and which holds no card number and no config secret", async () => {
    const answer = await run(
      signedCommand("u-1", "logs.upload", { url: `${uploadBase}/bundles/POS-T1.tar.gz?sig=abc` }),
      true,
    );
    expect(answer.status, answer.message).toBe("succeeded");
    expect(uploads).toHaveLength(1);
    const upload = uploads[0];
    if (upload === undefined) throw new Error("no upload");
    expect(upload.url).toBe("/bundles/POS-T1.tar.gz?sig=abc");
    expect(upload.contentType).toBe("application/gzip");
    expect(answer.result).toMatchObject({
      url: `${uploadBase}/bundles/POS-T1.tar.gz`,
      bytes: upload.body.length,
      sha256: createHash("sha256").update(upload.body).digest("hex"),
    });
    expect(responses.some((r) => r.id === "u-1" && r.status === "accepted")).toBe(true);

    const files = await untar(gunzipSync(upload.body));
    expect([...files.keys()].sort()).toEqual([
      "bundle.json",
      "config.json",
      "events.jsonl",
      "logs.jsonl",
      "status.json",
    ]);
    const everything = [...files.values()].join("\n");
    const documents = [...files.entries()].flatMap(([name, text]) =>
      name.endsWith(".jsonl")
        ? text
            .trim()
            .split("\n")
            .map((line) => JSON.parse(line) as unknown)
        : [JSON.parse(text) as unknown],
    );
    expect(documents.flatMap(cardNumbersIn)).toEqual([]);
    for (const secret of [...SECRETS, CONFIG_SECRET]) expect(everything).not.toContain(secret);
    const logLines = (files.get("logs.jsonl") ?? "")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { line: string });
    expect(logLines).toHaveLength(CARD_LINES.length + 200);
    expect(files.get("events.jsonl")).toContain("pos-app.crashed");
    expect(JSON.parse(files.get("config.json") ?? "{}")).toMatchObject({ deviceId: configFile.deviceId });
    expect(JSON.parse(files.get("bundle.json") ?? "{}")).toMatchObject({
      deviceId: configFile.deviceId,
      logs: { count: CARD_LINES.length + 200, cut: false },
    });
  });

  it("keeps the newest lines when the archive holds more than maxBytes allows", async () => {
    const filler = Array.from({ length: 3000 }, (_, i) => ({
      source: "noise",
      level: "debug",
      line: `${i} ${createHash("sha256").update(String(i)).digest("base64")}`,
    }));
    for (let i = 0; i < filler.length; i += 1000) {
      await postIntake(configFile.intakePort, "/v1/logs", filler.slice(i, i + 1000));
    }
    const maxBytes = 64 * 1024;
    const answer = await run(
      signedCommand("u-small", "logs.upload", { url: `${uploadBase}/small`, maxBytes }),
      true,
    );
    expect(answer.status, answer.message).toBe("succeeded");
    const upload = uploads.find((u) => u.url === "/small");
    expect(upload?.body.length).toBeLessThanOrEqual(maxBytes);
    expect(answer.result).toMatchObject({ logs: { cut: true } });
    const files = await untar(gunzipSync(upload?.body ?? Buffer.alloc(0)));
    const last = (files.get("logs.jsonl") ?? "").trim().split("\n").at(-1) ?? "{}";
    expect((JSON.parse(last) as { line: string }).line).toBe(filler.at(-1)?.line);
  });

  it("fails with UPLOAD_FAILED naming the status when the server refuses the bundle", async () => {
    const answer = await run(
      signedCommand("u-denied", "logs.upload", { url: `${uploadBase}/denied?token=zzz` }),
      true,
    );
    expect(answer).toMatchObject({ status: "failed", code: "UPLOAD_FAILED" });
    expect(answer.message).toContain("HTTP 403");
    expect(answer.message).not.toContain("zzz");
  });
});

/**
 * Card numbers in the values of a JSON document: strings by the oracle; integers too, except times in
 * ms (2000-2090), whose 13 digits can hold a Luhn-valid window while no 12-19-digit PAN is such a time.
 */
function cardNumbersIn(value: unknown): string[] {
  if (typeof value === "string") return findCardNumbers(value);
  if (typeof value === "number") return isPlausibleTime(value) ? [] : findCardNumbers(String(value));
  if (Array.isArray(value)) return value.flatMap(cardNumbersIn);
  if (typeof value === "object" && value !== null) return Object.values(value).flatMap(cardNumbersIn);
  return [];
}

async function untar(data: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
      stream.on("end", () => {
        files.set(header.name, Buffer.concat(chunks).toString("utf8"));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  extract.end(data);
  await done;
  return files;
}
