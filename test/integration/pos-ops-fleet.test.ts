import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { type Broker, startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { type Fleet, startFleet } from "../../scripts/sim/fleet.mjs";
import { createRootCa, issueLeaf } from "../../src/pki/issue.js";
import { verifyEnvelope } from "../../src/pki/verify-envelope.js";
import { suiteResources } from "../helpers/suite-resources.js";
import { createTestCa } from "../helpers/test-pki.js";

// Runs the built bin (npm run build first), as operators do.
const OPS = resolve(import.meta.dirname, "../../bin/pos-ops");
const SILENT = ["POS-007", "POS-023", "POS-041"];
const GROUP = ["POS-001", "POS-002", "POS-003", "POS-007"];
const SLOW = "POS-010";
const SLOW_MS = 700;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function ops(args: string[]): Promise<CliResult> {
  const started = Date.now();
  return new Promise((done) => {
    execFile(process.execPath, [OPS, ...args], (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      done({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The table's rows by device (the header skipped). */
function rows(stdout: string): Map<string, string> {
  const byDevice = new Map<string, string>();
  for (const line of stdout.split("\n").slice(1)) {
    const device = line.split(/\s+/)[0];
    if (device === undefined || device === "") continue;
    expect(byDevice.has(device), `one row for ${device}`).toBe(false);
    byDevice.set(device, line);
  }
  return byDevice;
}

describe("pos-ops cmd and diag against 50 simulated terminals", () => {
  const { dir, cleanups } = suiteResources("pos-ops-fleet");
  let broker: Broker;
  let fleet: Fleet;
  const base = (): string[] => ["--broker", broker.url, "--tenant", "acme"];

  beforeAll(async () => {
    broker = await startMosquitto({ dir: join(dir, "broker"), persistence: false });
    cleanups.push(() => broker.kill());
    fleet = await startFleet({
      brokerUrl: broker.url,
      count: 50,
      silent: SILENT,
      slow: { [SLOW]: SLOW_MS },
      groups: { "store-12": GROUP },
    });
    cleanups.push(() => fleet.stop());
  });

  it("prints a row for every terminal and `no answer` for exactly the silent ones at the deadline", async () => {
    const result = await ops(["diag", ...base(), "--target", fleet.deviceIds.join(","), "--wait", "3"]);
    expect(result.code).toBe(1);
    const byDevice = rows(result.stdout);
    expect([...byDevice.keys()]).toEqual(fleet.deviceIds);
    const silentRows = [...byDevice].filter(([, line]) => /\bno answer\b/.test(line)).map(([id]) => id);
    expect(silentRows).toEqual(SILENT);
    for (const id of fleet.deviceIds.filter((device) => !SILENT.includes(device))) {
      const { summary } = fleet.reportFor(id);
      const line = byDevice.get(id) ?? "";
      const expected = new RegExp(
        `^${id}\\s+${summary.pass}\\s+${summary.warn}\\s+${summary.fail}\\s+${(summary.worst ?? "-").replace(".", "\\.")}\\s+\\(\\d+ ms\\)$`,
      );
      expect(line).toMatch(expected);
    }
    const slowMs = Number(/\((\d+) ms\)/.exec(byDevice.get(SLOW) ?? "")?.[1]);
    expect(slowMs).toBeGreaterThanOrEqual(SLOW_MS);
    // It waited for the silent ones until the deadline, and no longer than it needed to.
    expect(result.ms).toBeGreaterThanOrEqual(3000);
    expect(result.ms).toBeLessThan(8000);
    expect(result.stderr).toMatch(/50 device\(s\): 47 answered within 3 s, 3 no answer/);
  });

  it("exits 0 before the deadline when every listed terminal answers with no failing check", async () => {
    const healthy = fleet.deviceIds
      .filter((id) => !SILENT.includes(id) && id !== SLOW && fleet.reportFor(id).summary.fail === 0)
      .slice(0, 10);
    const result = await ops(["diag", ...base(), "--target", healthy.join(","), "--wait", "20"]);
    expect(result.stderr).toMatch(/10 device\(s\): 10 answered/);
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(10_000);
    expect([...rows(result.stdout).keys()]).toEqual(healthy);
  });

  it("exits 1 when a terminal reports a failing check, and runs only the --checks asked for", async () => {
    const failing = fleet.deviceIds.find(
      (id) => !SILENT.includes(id) && fleet.reportFor(id).summary.fail > 0,
    );
    expect(failing).toBeDefined();
    const worst = fleet.reportFor(failing as string).summary.worst as string;
    const checks = [worst, "clock"].filter((name, i, all) => all.indexOf(name) === i);
    const result = await ops([
      "diag",
      ...base(),
      "--target",
      `${failing},POS-001`,
      "--checks",
      checks.join(","),
      "--json",
      "--wait",
      "10",
    ]);
    expect(result.code).toBe(1);
    const lines = result.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    const [row] = lines.map(
      (line) =>
        JSON.parse(line) as { deviceId: string; worst: string; report: { checks: Array<{ name: string }> } },
    );
    expect(row?.deviceId).toBe(failing);
    expect(row?.worst).toBe(worst);
    expect(row?.report.checks.map((check) => check.name).sort()).toEqual([...checks].sort());
  });

  it("sends a ping to one terminal, prints its succeeded response and exits 0", async () => {
    const result = await ops(["cmd", ...base(), "--target", "POS-001", "ping"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^POS-001 {2}succeeded\n\{\n {2}"pong": true,/);
    const request = fleet.received("POS-001").at(-1) as Record<string, number | string>;
    expect(request).toMatchObject({ cmd: "ping", args: {}, target: "POS-001" });
    expect(request.id).toMatch(/^[A-Za-z0-9._:-]{8,128}$/);
    expect(Number(request.expiresAt) - Number(request.issuedAt)).toBe(60_000);
  });

  it("prints one JSON per response with --json, and a repeated --id is answered as a duplicate", async () => {
    const args = ["cmd", ...base(), "--target", "POS-002", "--id", "c-repeat-1", "--json", "diagnostics.run"];
    const first = await ops(args);
    expect(first.code).toBe(0);
    const statuses = first.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { status: string; id: string; duplicate?: boolean });
    expect(statuses.map((response) => response.status)).toEqual(["accepted", "succeeded"]);
    const again = await ops(args);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout.trim())).toMatchObject({
      id: "c-repeat-1",
      status: "succeeded",
      duplicate: true,
    });
  });

  it("exits 1 with the code when the terminal rejects the command", async () => {
    const result = await ops(["cmd", ...base(), "--target", "POS-003", "--args", '{"x":1}', "self.destruct"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^POS-003 {2}rejected {2}UNKNOWN_COMMAND {2}no command self\.destruct$/m);
  });

  it("exits 1 saying so when a terminal never answers", async () => {
    const result = await ops(["cmd", ...base(), "--target", "POS-007", "--wait", "1", "ping"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("no answer from POS-007 within 1 s\n");
  });

  it("reaches the group's members, and only them, through the group topic", async () => {
    const before = new Map(fleet.deviceIds.map((id) => [id, fleet.received(id).length]));
    const result = await ops(["cmd", ...base(), "--target", "group:store-12", "--wait", "1.5", "ping"]);
    expect(result.code).toBe(0);
    const answered = [...result.stdout.matchAll(/^(POS-\d+) {2}succeeded$/gm)].map((m) => m[1]).sort();
    expect(answered).toEqual(GROUP.filter((id) => !SILENT.includes(id)));
    const reached = fleet.deviceIds.filter((id) => fleet.received(id).length > (before.get(id) ?? 0));
    expect(reached).toEqual(GROUP);
    expect(fleet.received("POS-007").at(-1)).toMatchObject({ target: "group:store-12", cmd: "ping" });
    expect(result.stderr).toMatch(/group:store-12: 3 device\(s\) answered within 1\.5 s \(3 succeeded\)/);
  });

  it("prints diag rows for the group members that answered and says the others are not known", async () => {
    const result = await ops(["diag", ...base(), "--target", "group:store-12", "--wait", "1.5"]);
    expect([...rows(result.stdout).keys()]).toEqual(["POS-001", "POS-002", "POS-003"]);
    expect(result.stderr).toMatch(/members that did not answer have no row/);
    const anyFailing = ["POS-001", "POS-002", "POS-003"].some((id) => fleet.reportFor(id).summary.fail > 0);
    expect(result.code).toBe(anyFailing ? 1 : 0);
  });

  it("wraps the command in a pos-command+json envelope with --sign", async () => {
    const ca = createRootCa({ cn: "Fleet Operators" });
    const operator = issueLeaf({ ca, role: "operator", cn: "alice" });
    const keys = join(dir, "keys");
    mkdirSync(keys, { recursive: true });
    writeFileSync(join(keys, "alice.key.pem"), operator.keyPem, { mode: 0o600 });
    writeFileSync(join(keys, "alice.cert.pem"), operator.certPem);
    const sign = `${join(keys, "alice.key.pem")},${join(keys, "alice.cert.pem")}`;
    const result = await ops([
      "cmd",
      ...base(),
      "--target",
      "POS-004",
      "--sign",
      sign,
      "--wait",
      "120",
      "ping",
    ]);
    expect(result.code).toBe(0);
    const envelope = fleet.received("POS-004").at(-1);
    const verified = verifyEnvelope(envelope, {
      typ: "pos-command+json",
      rootsPem: [ca.certPem],
      threshold: 1,
      now: Date.now(),
    });
    expect(verified.ok).toBe(true);
    if (!verified.ok) return;
    expect(verified.value.signers[0]?.subject).toBe("CN=alice");
    const command = verified.value.payload as {
      cmd: string;
      target: string;
      issuedAt: number;
      expiresAt: number;
    };
    expect(command).toMatchObject({ cmd: "ping", target: "POS-004" });
    expect(command.expiresAt - command.issuedAt).toBe(120_000);
  });

  it("refuses bad usage with exit 2 and one sentence", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["cmd", ...base(), "ping"], /^pos-ops cmd: --target DEVICE\|group:G is required\n$/],
      [["cmd", ...base(), "--target", "POS-001", "--args", "[1]", "ping"], /--args must be a JSON object/],
      [["cmd", ...base(), "--target", "POS 1", "ping"], /--target "POS 1" is not a device id/],
      [["diag", ...base(), "--target", "POS-001,group:x"], /a list of device ids or one group:G/],
      [["diag", ...base(), "--target", "POS-001", "--wait", "soon"], /--wait must be a number of seconds/],
      [["cmd", "--tenant", "acme", "--target", "POS-001", "ping"], /--broker URL is required/],
    ];
    for (const [args, message] of cases) {
      const result = await ops(args);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("answers --help for each subcommand", async () => {
    for (const sub of ["cmd", "diag"]) {
      const result = await ops([sub, "--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: pos-ops ${sub} --broker URL`));
    }
  });
});

describe("pos-ops cmd over mutual TLS", () => {
  const { dir, cleanups } = suiteResources("pos-ops-fleet-tls");
  let url = "";
  let ca: ReturnType<typeof createTestCa>;
  let operator: { cert: string; key: string };

  beforeAll(async () => {
    ca = createTestCa(join(dir, "ca"), "fleet-test-ca");
    const server = ca.issue("server", { cn: "localhost", san: "IP:127.0.0.1,DNS:localhost" });
    operator = ca.issue("operator", { cn: "ops-console", clientAuth: true });
    const device = ca.issue("device", { cn: "POS-T9", clientAuth: true });
    const broker = await startMosquitto({
      dir: join(dir, "broker"),
      persistence: false,
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
    const fleet = await startFleet({
      brokerUrl: url,
      deviceIds: ["POS-T9"],
      mqttOptions: {
        ca: readFileSync(ca.cert),
        cert: readFileSync(device.cert),
        key: readFileSync(device.key),
        rejectUnauthorized: true,
      },
    });
    cleanups.push(() => fleet.stop());
  });

  it("connects with --ca, --cert and --key and gets the answer", async () => {
    const result = await ops([
      "cmd",
      ...["--broker", url, "--tenant", "acme", "--target", "POS-T9"],
      ...["--ca", ca.cert, "--cert", operator.cert, "--key", operator.key],
      "ping",
    ]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^POS-T9 {2}succeeded/);
  });

  it("refuses a broker whose certificate does not chain to --ca, in one sentence", async () => {
    const rogue = createTestCa(join(dir, "rogue"), "rogue-ca");
    const result = await ops([
      "cmd",
      ...["--broker", url, "--tenant", "acme", "--target", "POS-T9", "--wait", "2"],
      ...["--ca", rogue.cert, "--cert", operator.cert, "--key", operator.key],
      "ping",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^error: cannot connect to the broker at mqtts:\/\/127\.0\.0\.1:\d+: .*certificate/,
    );
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });
});
