import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { type Config, Config as ConfigSchema } from "../../../src/config/schema.js";
import { type CheckResult, DIAGNOSTIC_CHECK_NAMES, runDiagnostics } from "../../../src/diagnostics/check.js";
import {
  brokerConnectionCheck,
  type ConnectionState,
  openLocalDiagnostics,
  storedClockTrust,
} from "../../../src/diagnostics/local-checks.js";
import { LAST_TRUSTED_KEY, TRUST_KEY } from "../../../src/metrics/clock-sanity.js";
import { createMetaStore } from "../../../src/store/meta.js";
import { openTestOutbox } from "../../helpers/test-outbox.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const NOW = Date.UTC(2026, 0, 1, 12);
const MINUTE = 60_000;

function run(check: { run(signal: AbortSignal): Promise<unknown> }) {
  return check.run(new AbortController().signal) as Promise<Omit<CheckResult, "name" | "durationMs">>;
}

function metaOf(values: Record<string, unknown>) {
  return { getJson: <T>(key: string) => values[key] as T | undefined };
}

describe("brokerConnectionCheck", () => {
  const broker = (running: boolean, connection: ConnectionState | undefined) =>
    run(
      brokerConnectionCheck({ daemonRunning: () => running, connection: () => connection, now: () => NOW }),
    );

  it("passes while the running daemon says it is connected", async () => {
    const outcome = await broker(true, {
      connected: true,
      url: "mqtts://broker-a:8883",
      sessionId: 7,
      since: NOW - 5 * MINUTE,
    });
    expect(outcome).toMatchObject({
      status: "pass",
      detail: "the daemon is connected to mqtts://broker-a:8883 for 5 min, session 7",
    });
  });

  it("fails with the last error while the running daemon is disconnected", async () => {
    const outcome = await broker(true, {
      connected: false,
      url: "mqtts://broker-a:8883",
      since: NOW - 10 * MINUTE,
      lastError: "connect ECONNREFUSED",
    });
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toBe(
      "the daemon is disconnected from mqtts://broker-a:8883 for 10 min (connect ECONNREFUSED)",
    );
  });

  it("fails saying the daemon is not running, whatever it last recorded", async () => {
    const outcome = await broker(false, { connected: true, url: "mqtt://b:1883" });
    expect(outcome).toMatchObject({
      status: "fail",
      detail: "daemon not running, so no broker connection; last connected to mqtt://b:1883",
    });
    expect((await broker(false, undefined)).detail).toBe("daemon not running, so no broker connection");
  });

  it("fails when the running daemon never connected", async () => {
    expect((await broker(true, undefined)).detail).toBe("the daemon has not connected to a broker yet");
  });
});

describe("storedClockTrust", () => {
  it("is unknown when the agent recorded nothing", () => {
    expect(storedClockTrust(metaOf({}), NOW)).toBeUndefined();
    expect(storedClockTrust(undefined, NOW)).toBeUndefined();
  });

  it("reads a recorded distrust with its reason", () => {
    const meta = metaOf({
      [TRUST_KEY]: { trusted: false, reason: "wall clock is before the build", since: NOW },
    });
    expect(storedClockTrust(meta, NOW)).toEqual({ trusted: false, reason: "wall clock is before the build" });
  });

  it("reads a last trusted time without a recorded change as trusted, as the agent does", () => {
    expect(storedClockTrust(metaOf({ [LAST_TRUSTED_KEY]: { wall: NOW - MINUTE } }), NOW)).toEqual({
      trusted: true,
    });
  });

  it("distrusts a clock now well behind the last trusted time", () => {
    const meta = metaOf({
      [TRUST_KEY]: { trusted: true, since: NOW },
      [LAST_TRUSTED_KEY]: { wall: NOW + 60 * MINUTE },
    });
    const trust = storedClockTrust(meta, NOW);
    expect(trust?.trusted).toBe(false);
    expect(trust?.reason).toMatch(/^wall clock is 60 min behind the last trusted time /);
  });

  it("ignores a malformed record", () => {
    expect(storedClockTrust(metaOf({ [TRUST_KEY]: { trusted: "yes" } }), NOW)).toBeUndefined();
  });
});

function configFor(dataDir: string, extra: Record<string, unknown> = {}): Config {
  return ConfigSchema.parse({
    deviceId: "POS-1",
    tenant: "acme",
    dataDir,
    mqtt: { urls: ["mqtt://127.0.0.1:1883"] },
    ...extra,
  });
}

async function diagnose(config: Config) {
  const local = openLocalDiagnostics(config, { now: () => NOW });
  try {
    const report = await runDiagnostics(local.checks, { deviceId: config.deviceId, now: () => NOW });
    return Object.fromEntries(report.checks.map((c) => [c.name, c]));
  } finally {
    local.close();
  }
}

/** A live process whose command line says pos-agent, as `isAgentProcess` wants. */
function fakeDaemon(): ChildProcess {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e6)", "pos-agent-test-daemon"], {
    stdio: "ignore",
  });
  onTestFinished(() => {
    child.kill("SIGKILL");
  });
  return child;
}

describe("openLocalDiagnostics", () => {
  it("fails the database check and warns on outbox and clock where the agent never ran", async () => {
    const dir = makeTmpDir("diag-local");
    const checks = await diagnose(configFor(join(dir, "data")));
    expect(checks.database?.status).toBe("fail");
    expect(checks.database?.detail).toBe(
      `no agent database at ${join(dir, "data", "agent.db")}: the agent has not run with this data directory yet`,
    );
    expect(checks.outbox?.status).toBe("warn");
    expect(checks.clock).toMatchObject({ status: "warn", detail: "unknown: the agent has not run yet" });
    expect(checks.broker).toMatchObject({
      status: "fail",
      detail: "daemon not running, so no broker connection",
    });
  });

  it("fails the database check naming the file when it is not a database", async () => {
    const dir = makeTmpDir("diag-local");
    writeFileSync(
      join(dir, "agent.db"),
      "this is not SQLite at all, just text long enough to be read".repeat(100),
    );
    const checks = await diagnose(configFor(dir));
    expect(checks.database?.status).toBe("fail");
    expect(checks.database?.detail).toMatch(/agent\.db/);
    expect(checks.database?.detail).toMatch(/not a database/);
  });

  it("reads the outbox, the clock trust and the daemon's connection from a real database", async () => {
    const { dir, db, outbox, close } = openTestOutbox("diag-local", { now: () => NOW });
    outbox.append([{ stream: "events", ts: NOW - 2 * 3_600_000, body: { type: "x" } }]);
    const daemon = fakeDaemon();
    const meta = createMetaStore(db);
    meta.setJson("daemon", { pid: daemon.pid, startedAt: NOW - MINUTE });
    meta.setJson("connection", {
      connected: true,
      url: "mqtt://127.0.0.1:1883",
      sessionId: 3,
      since: NOW - MINUTE,
    });
    meta.setJson(TRUST_KEY, { trusted: false, reason: "wall clock went back 2 h", since: NOW });
    // Beside the "running daemon", which still holds its writer connection.
    const checks = await diagnose(
      configFor(dir, {
        peripherals: [{ name: "printer", path: "/dev/ttyS1", driver: "escpos" }],
        components: { "pos-app": { restart: ["true"] } },
      }),
    );
    close();
    expect(checks.database).toMatchObject({ status: "pass" });
    expect(checks.outbox?.status).toBe("warn");
    expect(checks.outbox?.detail).toMatch(/^backlog oldest record over 1 h old: 1 records, /);
    expect(checks.clock).toMatchObject({
      status: "fail",
      detail: "wall clock untrusted: wall clock went back 2 h",
    });
    expect(checks.broker).toMatchObject({
      status: "pass",
      detail: "the daemon is connected to mqtt://127.0.0.1:1883 for 60 s, session 3",
    });
    expect(checks.peripherals).toMatchObject({ status: "pass" });
    expect(checks.peripherals?.detail).toMatch(
      /^1 configured \(printer\); checked by the running agent only/,
    );
    expect(checks.components).toMatchObject({ status: "pass", detail: "pos-app (version unknown)" });
    expect(checks.certificates).toMatchObject({ status: "pass", detail: "no certificates configured" });
    expect(Object.keys(checks)).toEqual([...DIAGNOSTIC_CHECK_NAMES]);
  });

  it("checks the configured certificate files", async () => {
    const dir = makeTmpDir("diag-local");
    const checks = await diagnose(
      configFor(dir, {
        mqtt: {
          urls: ["mqtts://127.0.0.1:8883"],
          tls: { cert: join(dir, "missing-device.pem"), key: join(dir, "device.key") },
        },
        trust: { operatorRoots: [join(dir, "missing-operator.pem")] },
      }),
    );
    expect(checks.certificates?.status).toBe("fail");
    expect(checks.certificates?.detail).toContain("device certificate");
    expect(checks.certificates?.detail).toContain("operator root");
  });
});
