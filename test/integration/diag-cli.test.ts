import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { DiagnosticsReport } from "../../src/diagnostics/check.js";
import { DIAGNOSTIC_CHECK_NAMES } from "../../src/diagnostics/check.js";
import { LAST_TRUSTED_KEY } from "../../src/metrics/clock-sanity.js";
import { createRootCa, issueLeaf } from "../../src/pki/issue.js";
import { silentLogger } from "../../src/shared/logger.js";
import { openDatabase } from "../../src/store/database.js";
import { createMetaStore } from "../../src/store/meta.js";
import { type CliResult, runBin } from "../helpers/run-bin.js";
import { suiteResources } from "../helpers/suite-resources.js";

// Runs the built CLI (`npm run build` first), as a technician on site would.
const ALL_CHECKS = DIAGNOSTIC_CHECK_NAMES;

const diag = (args: string[]): Promise<CliResult> => runBin("pos-agent", ["diag", ...args]);

function writeConfig(dir: string, name: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      deviceId: "POS-DIAG",
      tenant: "acme",
      dataDir: join(dir, name),
      mqtt: { urls: ["mqtt://127.0.0.1:1883"] },
      ...extra,
    }),
  );
  return file;
}

describe("pos-agent diag", () => {
  const { dir, cleanups } = suiteResources("pos-diag");
  let daemon: ChildProcess;

  beforeAll(() => {
    // A live process whose command line names pos-agent stands in for a running daemon's pid.
    daemon = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e6)", "pos-agent-stand-in"], {
      stdio: "ignore",
    });
    cleanups.push(async () => daemon.kill("SIGKILL"));
  });

  it("answers --help with exit 0", async () => {
    const result = await diag(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: pos-agent diag \[--config FILE\] \[--json\]/);
  });

  it("exits 2 naming the file when the config is missing or invalid", async () => {
    const missing = await diag(["--config", join(dir, "nope.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("nope.json");
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ deviceId: "POS-1" }));
    expect((await diag(["--config", bad])).code).toBe(2);
  });

  it("fails the database check with a clear detail and exits 1 where the agent never ran", async () => {
    const config = writeConfig(dir, "never-ran");
    const table = await diag(["--config", config]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^diagnostics of POS-DIAG at /);
    expect(table.stdout).toMatch(
      /^database\s+fail\s+\d+\s+no agent database at \S+never-ran\/agent\.db: the agent has not run with this data directory yet$/m,
    );
    expect(table.stdout).toMatch(/^FAILED: \d pass, \d warn, \d fail of 9; worst: database$/m);

    const json = await diag(["--config", config, "--json"]);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as DiagnosticsReport;
    expect(report.checks.map((c) => c.name)).toEqual(ALL_CHECKS);
    expect(report.summary.worst).toBe("database");
    expect(report.checks.find((c) => c.name === "clock")).toMatchObject({
      status: "warn",
      detail: "unknown: the agent has not run yet",
    });
  });

  it("prints a parsable JSON report with every check from an existing database", async () => {
    const now = Date.now();
    const certs = join(dir, "certs");
    mkdirSync(certs, { recursive: true });
    const root = createRootCa({ cn: "Diag Root" });
    const device = issueLeaf({ ca: root, role: "device", cn: "POS-DIAG" });
    const operatorRoot = createRootCa({ cn: "Operators", validityDays: 10 });
    writeFileSync(join(certs, "ca.pem"), root.certPem);
    writeFileSync(join(certs, "device.pem"), device.certPem);
    writeFileSync(join(certs, "device.key"), device.keyPem, { mode: 0o600 });
    writeFileSync(join(certs, "operators.pem"), operatorRoot.certPem);
    const config = writeConfig(dir, "ran", {
      mqtt: {
        urls: ["mqtts://127.0.0.1:8883"],
        tls: { ca: "certs/ca.pem", cert: "certs/device.pem", key: "certs/device.key" },
      },
      trust: { operatorRoots: ["certs/operators.pem"] },
      peripherals: [{ name: "printer", path: "/dev/ttyS1", driver: "escpos" }],
    });

    const opened = openDatabase({
      dataDir: join(dir, "ran"),
      log: silentLogger,
      now: () => now,
      walLimitBytes: 4 * 1024 * 1024,
    });
    const meta = createMetaStore(opened.db);
    meta.setJson("daemon", { pid: daemon.pid, startedAt: now - 60_000 });
    meta.setJson("connection", { connected: true, url: "mqtts://127.0.0.1:8883", sessionId: 4, since: now });
    meta.setJson(LAST_TRUSTED_KEY, { wall: now - 60_000 });
    // Still open, as a running daemon's would be.
    cleanups.push(async () => opened.db.close());

    const result = await diag(["--config", config, "--json"]);
    const report = JSON.parse(result.stdout) as DiagnosticsReport;
    expect(report.deviceId).toBe("POS-DIAG");
    expect(report.checks.map((c) => c.name)).toEqual(ALL_CHECKS);
    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    for (const name of ["database", "outbox", "clock", "broker", "peripherals", "components"]) {
      expect(byName[name]?.status, `${name}: ${byName[name]?.detail}`).toBe("pass");
    }
    expect(byName.database?.detail).toContain("quick_check ok");
    expect(byName.outbox?.detail).toMatch(/^0 records, /);
    expect(byName.broker?.detail).toMatch(/^the daemon is connected to mqtts:\/\/127\.0\.0\.1:8883/);
    expect(byName.certificates?.status).toBe("warn");
    expect(byName.certificates?.detail).toMatch(/^operator root \S+operators\.pem: expires in 9 days/);
    expect(byName.certificates?.data?.certificates).toHaveLength(3);
    for (const check of report.checks) {
      expect(check.durationMs).toBeGreaterThanOrEqual(0);
      expect(check.detail.length).toBeGreaterThan(0);
    }
    // Disk and memory are this host's: whatever they say, the exit code follows the fails.
    expect(result.code).toBe(report.summary.fail > 0 ? 1 : 0);
    expect(report.summary.pass + report.summary.warn + report.summary.fail).toBe(9);
  });
});
