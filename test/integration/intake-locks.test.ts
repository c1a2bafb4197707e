import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { createIntakeServer } from "../../src/intake/server.js";
import { silentLogger } from "../../src/shared/logger.js";
import { createIntakeLocks } from "../../src/updates/intake-locks.js";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { suiteResources } from "../helpers/suite-resources.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const NOW = 1_767_225_600_000;

type Answer = { status: number; body: Record<string, unknown> };

async function request(base: string, method: string, path: string, body?: string): Promise<Answer> {
  const init: RequestInit = { method, headers: { "content-type": "application/json" } };
  if (body !== undefined) init.body = body;
  const response = await fetch(base + path, init);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const unused = (what: string) => () => {
  throw new Error(`the lock endpoints must not use ${what}`);
};

/** A real intake server on an ephemeral port; only the locks are real, the rest throws if touched. */
async function startLockIntake(options: { withLocks: boolean }) {
  const clock = { now: NOW };
  const locks = createIntakeLocks({
    dir: join(makeTmpDir("intake-locks"), "locks"),
    now: () => clock.now,
    log: silentLogger,
  });
  const server = createIntakeServer({
    host: "127.0.0.1",
    port: 0,
    outbox: { append: unused("the outbox") },
    health: unused("health"),
    now: () => clock.now,
    guard: { line: unused("the guard"), value: unused("the guard") },
    log: silentLogger,
    ...(options.withLocks ? { locks } : {}),
  });
  const { port } = await server.start();
  onTestFinished(() => server.stop());
  const base = `http://127.0.0.1:${port}`;
  return {
    clock,
    locks,
    call: (method: string, path: string, body?: string) => request(base, method, path, body),
  };
}

describe("intake lock endpoints", () => {
  it("takes, extends, lists and releases a lock", async () => {
    const intake = await startLockIntake({ withLocks: true });
    expect(await intake.call("POST", "/v1/locks/payment", '{"ttlSec":60}')).toEqual({
      status: 200,
      body: { name: "payment", expiresAt: NOW + 60_000 },
    });
    intake.clock.now = NOW + 30_000;
    expect(await intake.call("POST", "/v1/locks/payment", '{"ttlSec":60}')).toEqual({
      status: 200,
      body: { name: "payment", expiresAt: NOW + 90_000 },
    });
    await intake.call("POST", "/v1/locks/refund", '{"ttlSec":10}');
    expect(await intake.call("GET", "/v1/locks")).toEqual({
      status: 200,
      body: {
        locks: [
          { name: "payment", expiresAt: NOW + 90_000 },
          { name: "refund", expiresAt: NOW + 40_000 },
        ],
      },
    });
    expect(intake.locks.held().map((lock) => lock.name)).toEqual(["payment", "refund"]);
    expect(await intake.call("DELETE", "/v1/locks/payment")).toEqual({
      status: 200,
      body: { released: true },
    });
    expect(await intake.call("DELETE", "/v1/locks/payment")).toEqual({
      status: 200,
      body: { released: false },
    });
    intake.clock.now = NOW + 40_000;
    expect(await intake.call("GET", "/v1/locks")).toEqual({ status: 200, body: { locks: [] } });
  });

  const bad: Array<{
    name: string;
    method: string;
    path: string;
    body?: string;
    status: number;
    errors: string[];
  }> = [
    {
      name: "a missing ttlSec",
      method: "POST",
      path: "/v1/locks/payment",
      body: "{}",
      status: 400,
      errors: ["ttlSec: Invalid input: expected number, received undefined"],
    },
    {
      name: "a TTL over an hour",
      method: "POST",
      path: "/v1/locks/payment",
      body: '{"ttlSec":3601}',
      status: 400,
      errors: ["ttlSec: must be 1 to 3600 seconds"],
    },
    {
      name: "a TTL of zero",
      method: "POST",
      path: "/v1/locks/payment",
      body: '{"ttlSec":0}',
      status: 400,
      errors: ["ttlSec: must be 1 to 3600 seconds"],
    },
    {
      name: "a fractional TTL",
      method: "POST",
      path: "/v1/locks/payment",
      body: '{"ttlSec":1.5}',
      status: 400,
      errors: ["ttlSec: must be a whole number of seconds"],
    },
    {
      name: "an unknown field",
      method: "POST",
      path: "/v1/locks/payment",
      body: '{"ttlSec":5,"owner":"pos"}',
      status: 400,
      errors: ['owner: Unrecognized key: "owner"'],
    },
    {
      name: "a body that is not an object",
      method: "POST",
      path: "/v1/locks/payment",
      body: "[5]",
      status: 400,
      errors: ["(body): Invalid input: expected object, received array"],
    },
    {
      name: "a body that is not JSON",
      method: "POST",
      path: "/v1/locks/payment",
      body: "ttl=5",
      status: 400,
      errors: [expect.stringMatching(/^\(body\): not valid JSON/) as unknown as string],
    },
    {
      name: "a name with a colon",
      method: "POST",
      path: "/v1/locks/a:b",
      body: '{"ttlSec":5}',
      status: 400,
      errors: ["(name): must be 1-64 characters of A-Z a-z 0-9 . _ -"],
    },
    {
      name: "an escaped slash in the name",
      method: "DELETE",
      path: "/v1/locks/..%2Fcounters",
      status: 400,
      errors: ["(name): must be 1-64 characters of A-Z a-z 0-9 . _ -"],
    },
    {
      name: "no name",
      method: "POST",
      path: "/v1/locks/",
      body: '{"ttlSec":5}',
      status: 400,
      errors: ["(name): must be 1-64 characters of A-Z a-z 0-9 . _ -"],
    },
    {
      name: "a GET of one lock",
      method: "GET",
      path: "/v1/locks/payment",
      status: 405,
      errors: ["use POST or DELETE here, not GET"],
    },
    {
      name: "a POST to the list",
      method: "POST",
      path: "/v1/locks",
      body: "{}",
      status: 405,
      errors: ["use GET here, not POST"],
    },
  ];
  for (const row of bad) {
    it(`refuses ${row.name} with ${row.status} and takes no lock`, async () => {
      const intake = await startLockIntake({ withLocks: true });
      expect(await intake.call(row.method, row.path, row.body)).toEqual({
        status: row.status,
        body: { code: "BAD_REQUEST", errors: row.errors },
      });
      expect(intake.locks.held()).toEqual([]);
    });
  }

  it("answers 409 BUSY past the maximum number of live locks", async () => {
    const intake = await startLockIntake({ withLocks: true });
    for (let i = 0; i < 64; i += 1) intake.locks.take(`lock-${i}`, 60);
    const answer = await intake.call("POST", "/v1/locks/one-more", '{"ttlSec":5}');
    expect(answer.status).toBe(409);
    expect(answer.body.code).toBe("BUSY");
  });

  it("answers 404 on the lock endpoints when the agent has no lock registry", async () => {
    const intake = await startLockIntake({ withLocks: false });
    expect(await intake.call("GET", "/v1/locks")).toEqual({
      status: 404,
      body: { code: "BAD_REQUEST", errors: ["no such endpoint: GET /v1/locks"] },
    });
    expect((await intake.call("POST", "/v1/locks/payment", '{"ttlSec":5}')).status).toBe(404);
  });
});

describe("intake locks in a real agent", () => {
  const { dir, cleanups } = suiteResources("pos-intake-locks");

  it("takes, lists and releases locks over HTTP, and keeps a held lock across a restart", async () => {
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    const config = await writeAgentConfig({ dir: join(dir, "agent"), brokerUrl: broker.url });
    const base = `http://127.0.0.1:${config.intakePort}`;
    const call = (method: string, path: string, body?: string) => request(base, method, path, body);

    const first = await startAgent(config);
    cleanups.push(() => first.kill("SIGKILL"));
    const before = Date.now();
    const taken = await call("POST", "/v1/locks/payment", '{"ttlSec":600}');
    expect(taken.status).toBe(200);
    expect(taken.body.name).toBe("payment");
    const expiresAt = taken.body.expiresAt as number;
    expect(expiresAt).toBeGreaterThanOrEqual(before + 600_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 600_000);

    expect((await call("POST", "/v1/locks/receipt", '{"ttlSec":600}')).status).toBe(200);
    expect(await call("GET", "/v1/locks")).toEqual({
      status: 200,
      body: { locks: [taken.body, expect.objectContaining({ name: "receipt" })] },
    });
    expect(await call("DELETE", "/v1/locks/receipt")).toEqual({ status: 200, body: { released: true } });
    const refused = await call("POST", "/v1/locks/payment", '{"ttlSec":"long"}');
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: "BAD_REQUEST" });
    expect(readdirSync(join(config.dataDir, "locks"))).toEqual(["payment.json"]);

    expect((await first.kill("SIGTERM")).code).toBe(0);
    const second = await startAgent(config);
    cleanups.push(() => second.kill("SIGKILL"));
    // A payment in progress does not end because the agent restarted.
    expect(await call("GET", "/v1/locks")).toEqual({ status: 200, body: { locks: [taken.body] } });
    expect(await call("DELETE", "/v1/locks/payment")).toEqual({ status: 200, body: { released: true } });
    expect(await call("GET", "/v1/locks")).toEqual({ status: 200, body: { locks: [] } });
    expect((await second.kill("SIGTERM")).code).toBe(0);
  });
});
