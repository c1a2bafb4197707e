import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { VerifyReport } from "../../src/cli/verify-release-cli.js";
import { LAST_TRUSTED_KEY } from "../../src/metrics/clock-sanity.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import { silentLogger } from "../../src/shared/logger.js";
import { openDatabase } from "../../src/store/database.js";
import { createMetaStore } from "../../src/store/meta.js";
import { createUpdateJournal } from "../../src/store/update-journal.js";
import { type CliResult, runBin } from "../helpers/run-bin.js";
import { suiteResources } from "../helpers/suite-resources.js";

// Runs the built CLI (`npm run build` first), as a technician checking a release on site would.
const DAY = 86_400_000;

const verify = (args: string[]): Promise<CliResult> => runBin("pos-agent", ["verify", ...args]);

function manifest(version: string): Record<string, unknown> {
  const now = Date.now();
  return {
    v: 1,
    component: "pos-app",
    version,
    securityVersion: 3,
    issuedAt: new Date(now - 60_000).toISOString(),
    expiresAt: new Date(now + 90 * DAY).toISOString(),
    compatible: { models: ["A920"], minAgentVersion: "0.1.0" },
    artifact: {
      url: `https://updates.example/pos-app-${version}.tar.gz`,
      size: 1024,
      sha256: "a".repeat(64),
    },
    files: [{ path: "bin/app.js", size: 2048, sha256: "b".repeat(64), mode: "0755" }],
  };
}

describe("pos-agent verify", () => {
  const { dir } = suiteResources("pos-verify");
  let alice: KeyAndCert;
  let bob: KeyAndCert;

  /** A config in `dir` whose roots and dataDir are relative paths, resolved against the file. */
  function writeConfig(name: string): string {
    const file = join(dir, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        deviceId: "POS-VERIFY",
        tenant: "acme",
        model: "A920",
        dataDir: `data-${name}`,
        mqtt: { urls: ["mqtt://127.0.0.1:1883"] },
        trust: { releaseRoots: ["trust/release-root.pem"], threshold: 2 },
      }),
    );
    return file;
  }

  /** The manifest of `version` (with `overrides`) signed by alice and bob, written to DIR/name. */
  function writeEnvelope(name: string, version: string, overrides: Record<string, unknown> = {}): string {
    const payload = { ...manifest(version), ...overrides };
    const once = signEnvelope({
      payload,
      typ: "pos-manifest+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    const twice = signEnvelope({
      payload,
      typ: "pos-manifest+json",
      keyPem: bob.keyPem,
      chainPem: [bob.certPem],
      existing: once,
    });
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify(twice));
    return file;
  }

  beforeAll(() => {
    const root = createRootCa({ cn: "Release Root" });
    alice = issueLeaf({ ca: root, role: "release", cn: "alice" });
    bob = issueLeaf({ ca: root, role: "release", cn: "bob" });
    mkdirSync(join(dir, "trust"));
    writeFileSync(join(dir, "trust", "release-root.pem"), root.certPem);
    // pos-app 2.4.1 live in the "installed" data directory, with a security floor of 3 in its database.
    const component = join(dir, "data-installed", "components", "pos-app");
    mkdirSync(join(component, "releases", "2.4.1"), { recursive: true });
    symlinkSync("releases/2.4.1", join(component, "current"));
    const opened = openDatabase({
      dataDir: join(dir, "data-installed"),
      log: silentLogger,
      now: Date.now,
      walLimitBytes: 4 * 1024 * 1024,
    });
    createUpdateJournal(opened.db).raiseSecurityFloor("pos-app", 3);
    opened.db.close();
  });

  it("answers --help with exit 0", async () => {
    const result = await verify(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: pos-agent verify \[--config FILE\] \[--json\] ENVELOPE/);
  });

  it("accepts a release two release keys signed, exit 0 with one line", async () => {
    const result = await verify(["--config", writeConfig("fresh"), writeEnvelope("2.4.1.json", "2.4.1")]);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("accept: pos-app 2.4.1 (securityVersion 3) signed by CN=alice, CN=bob\n");
    expect(result.code).toBe(0);
  });

  it("rejects a securityVersion below the floor the agent's database holds", async () => {
    const file = writeEnvelope("2.5.0-low.json", "2.5.0", { securityVersion: 2 });
    const result = await verify(["--config", writeConfig("installed"), file]);
    expect(result.stdout).toBe(
      "reject: DOWNGRADE: securityVersion 2 is below the security floor 3 of pos-app\n",
    );
    expect(result.code).toBe(1);
  });

  it("rejects a version not newer than the installed one, exit 1 naming the code and both versions", async () => {
    const result = await verify(["--config", writeConfig("installed"), writeEnvelope("2.4.0.json", "2.4.0")]);
    expect(result.stdout).toBe("reject: DOWNGRADE: version 2.4.0 is not newer than installed 2.4.1\n");
    expect(result.code).toBe(1);
  });

  it("rejects a release signed once when trust.threshold is 2", async () => {
    const single = signEnvelope({
      payload: manifest("2.5.0"),
      typ: "pos-manifest+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    const file = join(dir, "single.json");
    writeFileSync(file, JSON.stringify(single));
    const result = await verify(["--config", writeConfig("installed"), file]);
    expect(result.stdout).toMatch(/^reject: THRESHOLD_NOT_MET: 2 distinct valid signers needed, 1 found\n$/);
    expect(result.code).toBe(1);
  });

  it("defers with clock.untrusted when the wall clock is behind the last trusted time the daemon recorded", async () => {
    const config = writeConfig("clock-behind");
    const opened = openDatabase({
      dataDir: join(dir, "data-clock-behind"),
      log: silentLogger,
      now: Date.now,
      walLimitBytes: 4 * 1024 * 1024,
    });
    createMetaStore(opened.db).setJson(LAST_TRUSTED_KEY, { wall: Date.now() + 2 * DAY });
    opened.db.close();
    const result = await verify(["--config", config, "--json", writeEnvelope("2.4.1-b.json", "2.4.1")]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as VerifyReport;
    expect(report).toMatchObject({ decision: "reject", code: "DEFERRED", retryable: true });
    expect(report.decision === "reject" && report.message).toMatch(
      /^clock\.untrusted: wall clock is 2 days behind the last trusted time /,
    );
    expect(report.clock).toMatchObject({ trusted: false });
    expect(report.clock.floor).toBeGreaterThan(Date.now() + DAY);
  });

  it("prints the decision as JSON with --json", async () => {
    const accepted = await verify([
      "--config",
      writeConfig("fresh"),
      "--json",
      writeEnvelope("2.4.1-c.json", "2.4.1"),
    ]);
    expect(accepted.code).toBe(0);
    const report = JSON.parse(accepted.stdout) as VerifyReport;
    expect(report).toMatchObject({
      decision: "accept",
      component: "pos-app",
      version: "2.4.1",
      securityVersion: 3,
      installedVersion: null,
      securityFloor: 0,
      clock: { trusted: true },
    });
    expect(report.decision === "accept" && report.signers.map((signer) => signer.subject)).toEqual([
      "CN=alice",
      "CN=bob",
    ]);

    const rejected = await verify([
      "--config",
      writeConfig("installed"),
      "--json",
      writeEnvelope("2.4.0-c.json", "2.4.0"),
    ]);
    expect(rejected.code).toBe(1);
    expect(JSON.parse(rejected.stdout)).toMatchObject({
      decision: "reject",
      code: "DOWNGRADE",
      details: { field: "version", value: "2.4.0", installedVersion: "2.4.1" },
    });
  });

  it("exits 2 naming the envelope when it is missing or not JSON", async () => {
    const config = writeConfig("fresh");
    const missing = await verify(["--config", config, join(dir, "nope.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe(
      `pos-agent verify: cannot read the envelope ${join(dir, "nope.json")}: no such file\n`,
    );
    const garbage = join(dir, "garbage.json");
    writeFileSync(garbage, "{ not json");
    const notJson = await verify(["--config", config, garbage]);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toMatch(new RegExp(`^pos-agent verify: the envelope ${garbage} is not JSON`));
  });

  it("exits 2 when no ENVELOPE is named, or a trust root file is missing", async () => {
    const none = await verify(["--config", writeConfig("fresh")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/name the ENVELOPE file/);
    const config = join(dir, "no-roots.json");
    writeFileSync(
      config,
      JSON.stringify({
        deviceId: "POS-VERIFY",
        tenant: "acme",
        dataDir: "data-no-roots",
        mqtt: { urls: ["mqtt://127.0.0.1:1883"] },
        trust: { releaseRoots: ["trust/missing.pem"] },
      }),
    );
    const result = await verify(["--config", config, writeEnvelope("2.4.1-d.json", "2.4.1")]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(join(dir, "trust", "missing.pem"));
  });
});
