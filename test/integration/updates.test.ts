import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { toBase64url } from "../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../src/pki/issue.js";
import {
  type CommandClient,
  connectCommandClient,
  type FleetResponse,
} from "../../src/transport/command-client.js";
import type { Manifest } from "../../src/updates/manifest.js";
import { type AgentProcess, startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { type OpensslLeaf, opensslLeaf, opensslSign } from "../helpers/openssl-tools.js";
import { publishRelease, type TreeSpec } from "../helpers/release-fixtures.js";
import { type ReleaseServer, startReleaseServer } from "../helpers/release-server.js";
import { sendSigned } from "../helpers/signed-command.js";
import { suiteResources } from "../helpers/suite-resources.js";
import { createTestCa } from "../helpers/test-pki.js";
import { makeUpdatePki } from "../helpers/update-pki.js";
import { type UpdateStateWatch, watchUpdateStates } from "../helpers/update-states.js";

const APP = "pos-app";
const BIN = resolve(import.meta.dirname, "../../bin/pos-agent");

/** A healthy release: the health check looks for `ready` in the live tree. */
const healthy = (version: string, extra: TreeSpec = {}): TreeSpec => ({
  ready: "yes",
  "bin/app.sh": { content: `#!/bin/sh\necho ${version}\n`, mode: 0o755 },
  VERSION: version,
  ...extra,
});

describe("signed updates through the agent", () => {
  const { dir, cleanups } = suiteResources("pos-updates");
  let agent: AgentProcess;
  let client: CommandClient;
  let watch: UpdateStateWatch;
  let server: ReleaseServer;
  let releaser: KeyAndCert;
  let operator: KeyAndCert;
  let stranger: KeyAndCert;
  let opensslRelease: OpensslLeaf;
  let configFile: Awaited<ReturnType<typeof writeAgentConfig>>;
  let appDir = "";
  const lockFile = join(dir, "txn.lock");
  let seq = 0;

  beforeAll(async () => {
    // A second release root made by the openssl CLI alone, with a leaf that signs with `openssl dgst`.
    const opensslCa = createTestCa(join(dir, "openssl-ca"), "OpenSSL Release Root");
    opensslRelease = opensslLeaf(join(dir, "openssl-ca"), "ossl-rsa", {
      caCert: opensslCa.cert,
      caKey: opensslCa.key,
      keyType: "rsa",
      eku: "codeSigning",
      cn: "ossl-release",
    });
    const pki = makeUpdatePki(dir, "Test", readFileSync(opensslCa.cert, "utf8"));
    ({ releaser, operator } = pki);
    stranger = issueLeaf({ ca: createRootCa({ cn: "Elsewhere" }), role: "release", cn: "mallory" });

    server = await startReleaseServer();
    cleanups.push(() => server.close());
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    configFile = await writeAgentConfig({
      dir,
      brokerUrl: broker.url,
      extra: {
        model: "A920",
        trust: { releaseRoots: [pki.releaseRoots], operatorRoots: [pki.operatorRoots] },
        components: {
          [APP]: {
            restart: ["sh", "-c", "echo restarted >> restarts.log"],
            healthCheck: { command: ["sh", "-c", "test -f ready"], timeoutSec: 3 },
            keep: 2,
          },
        },
        updates: { lockFiles: [lockFile] },
      },
    });
    appDir = join(configFile.dataDir, "components", APP);
    agent = await startAgent(configFile);
    await agent.waitForLog((line) => line.msg === "subscribed");
    client = await connectCommandClient({ url: broker.url });
    watch = await watchUpdateStates(broker.url, configFile.root, "update-watcher");
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await watch?.close();
    await agent?.kill("SIGKILL");
  });

  const live = () =>
    existsSync(join(appDir, "current")) ? readlinkSync(join(appDir, "current")) : undefined;
  const staging = () => (existsSync(join(appDir, ".staging")) ? readdirSync(join(appDir, ".staging")) : []);

  function command(cmd: string, args: object): Promise<FleetResponse> {
    seq += 1;
    return sendSigned({
      client,
      tenant: configFile.tenant,
      deviceId: configFile.deviceId,
      operator,
      id: `u-${seq}`,
      cmd,
      args,
      timeoutMs: 45_000,
    });
  }

  const release = (
    version: string,
    files: TreeSpec,
    extra: Partial<Parameters<typeof publishRelease>[0]> = {},
  ) =>
    publishRelease({
      workDir: dir,
      server,
      component: APP,
      version,
      files,
      signers: [releaser],
      models: ["A920"],
      securityVersion: 1,
      ...extra,
    });

  let v1: Manifest;

  it("installs a first release, restarts the component and commits it after the health check", async () => {
    const published = await release("1.0.0", healthy("1.0.0"), { securityVersion: 1 });
    v1 = published.manifest;
    const answer = await command("update.apply", { manifest: published.envelope });
    expect(answer.status, answer.message).toBe("succeeded");
    expect(answer.result).toMatchObject({ component: APP, toVersion: "1.0.0", state: "committed" });
    expect(live()).toBe(join("releases", "1.0.0"));
    expect(readFileSync(join(appDir, "current", "VERSION"), "utf8")).toBe("1.0.0");
    expect(readFileSync(join(appDir, "restarts.log"), "utf8")).toBe("restarted\n");
    expect(staging()).toEqual([]);
    const seen = watch.states.filter((s) => s.toVersion === "1.0.0").map((s) => s.state);
    expect(seen).toContain("committed");
    expect(seen.indexOf("downloading")).toBeLessThan(seen.indexOf("committed"));
  });

  it("installs a delta: only the changed file travels, the rest comes from the live release by hash", async () => {
    const published = await release("1.1.0", healthy("1.1.0"), { base: v1, securityVersion: 1 });
    expect(published.manifest.artifact.type).toBe("delta");
    const answer = await command("update.apply", { manifest: published.envelope });
    expect(answer.status, answer.message).toBe("succeeded");
    expect(live()).toBe(join("releases", "1.1.0"));
    expect(readFileSync(join(appDir, "current", "ready"), "utf8")).toBe("yes");
    expect(readFileSync(join(appDir, "current", "bin/app.sh"), "utf8")).toContain("1.1.0");
  });

  it("rolls an unhealthy release back within its window, with the reason, and leaves the floor where it was", async () => {
    const before = live();
    const published = await release(
      "2.0.0",
      { VERSION: "2.0.0", "bin/app.sh": "exit 1" },
      { securityVersion: 5 },
    );
    const answer = await command("update.apply", { manifest: published.envelope });
    expect(answer).toMatchObject({ status: "failed", code: "HEALTH_CHECK_FAILED" });
    expect(answer.message).toMatch(/rolled_back.*unhealthy for the whole 3 s window/);
    expect(live()).toBe(before);
    expect(existsSync(join(appDir, "releases", "2.0.0"))).toBe(false);
    const last = watch.last("2.0.0");
    expect(last).toMatchObject({ state: "rolled_back", code: "HEALTH_CHECK_FAILED" });
    // The failed 2.0.0 carried securityVersion 5; the floor stays at 1, so 1.2.0 (securityVersion 1) installs.
    const next = await release("1.2.0", healthy("1.2.0"), { securityVersion: 1 });
    const ok = await command("update.apply", { manifest: next.envelope });
    expect(ok.status, ok.message).toBe("succeeded");
    expect(live()).toBe(join("releases", "1.2.0"));
  });

  it("keeps only `keep` releases after a commit", () => {
    expect(readdirSync(join(appDir, "releases")).sort()).toEqual(["1.1.0", "1.2.0"]);
  });

  it("defers while the POS app holds a lock file, and says why", async () => {
    writeFileSync(lockFile, "txn 42");
    cleanups.push(async () => rmSync(lockFile, { force: true }));
    const published = await release("1.3.0", healthy("1.3.0"));
    const answer = await command("update.apply", { manifest: published.envelope });
    expect(answer.status, answer.message).toBe("succeeded");
    expect(answer.result).toMatchObject({ state: "deferred" });
    expect(answer.result?.message).toContain(lockFile);
    expect(watch.last("1.3.0")).toMatchObject({
      state: "deferred",
      reason: "lock_held",
    });
    expect(live()).toBe(join("releases", "1.2.0"));
    rmSync(lockFile);
  });

  it("defers while an app holds an intake lock and goes on as soon as it is released", async () => {
    const base = `http://127.0.0.1:${configFile.intakePort}`;
    const taken = await fetch(`${base}/v1/locks/payment`, {
      method: "POST",
      body: JSON.stringify({ ttlSec: 120 }),
    });
    expect(taken.status).toBe(200);
    const published = await release("1.4.0", healthy("1.4.0"));
    const answer = await command("update.apply", { manifest: published.envelope });
    expect(answer.result).toMatchObject({ state: "deferred" });
    expect(watch.last("1.4.0")).toMatchObject({ reason: "lock_held" });
    // 1.3.0, still deferred by the lock file of the test before, was replaced, and says so.
    expect(watch.last("1.3.0")).toMatchObject({
      state: "failed",
      code: "DEFERRED",
      message: "superseded by 1.4.0",
    });
    expect(live()).toBe(join("releases", "1.2.0"));
    await fetch(`${base}/v1/locks/payment`, { method: "DELETE" });
    await watch.reached("1.4.0", "committed", 20_000);
    expect(live()).toBe(join("releases", "1.4.0"));
  });

  describe("refuses every attack with its code and leaves current and staging as they were", () => {
    const rows: Array<{ name: string; code: string; make: () => Promise<unknown> }> = [
      {
        name: "a tampered payload (bad signature)",
        code: "SIGNATURE_INVALID",
        make: async () => {
          const { envelope, manifest } = await release("9.0.0", healthy("9.0.0"));
          return {
            ...envelope,
            payload: toBase64url(Buffer.from(JSON.stringify({ ...manifest, securityVersion: 99 }))),
          };
        },
      },
      {
        name: "a signer from an untrusted root",
        code: "UNTRUSTED_SIGNER",
        make: async () => (await release("9.0.1", healthy("9.0.1"), { signers: [stranger] })).envelope,
      },
      {
        name: "an operator (command) key signing a release",
        code: "UNTRUSTED_SIGNER",
        make: async () => (await release("9.0.2", healthy("9.0.2"), { signers: [operator] })).envelope,
      },
      {
        name: "a downgrade",
        code: "DOWNGRADE",
        make: async () => (await release("1.0.1", healthy("1.0.1"))).envelope,
      },
      {
        name: "an incompatible model",
        code: "INCOMPATIBLE",
        make: async () => (await release("9.0.3", healthy("9.0.3"), { models: ["A80"] })).envelope,
      },
      {
        name: "an artifact with a flipped byte",
        code: "HASH_MISMATCH",
        make: async () => {
          const published = await release("9.1.0", healthy("9.1.0"));
          const bytes = Buffer.from(readFileSync(published.artifactFile));
          const at = Math.floor(bytes.length / 2);
          bytes[at] = (bytes[at] ?? 0) ^ 0x01;
          server.put(published.artifactPath, bytes);
          return published.envelope;
        },
      },
      {
        name: "a truncated artifact",
        code: "DOWNLOAD_FAILED",
        make: async () => {
          const published = await release("9.1.1", healthy("9.1.1"));
          server.put(published.artifactPath, readFileSync(published.artifactFile).subarray(0, 100));
          return published.envelope;
        },
      },
      {
        name: "an artifact extended past its size",
        code: "TOO_LARGE",
        make: async () => {
          const published = await release("9.1.2", healthy("9.1.2"));
          server.put(published.artifactPath, readFileSync(published.artifactFile), { extraBytes: "endless" });
          return published.envelope;
        },
      },
      {
        name: "an artifact holding a file the manifest does not list",
        code: "BAD_PATH",
        make: async () =>
          (
            await release("9.1.3", healthy("9.1.3", { "extra.bin": "smuggled" }), {
              edit: (m) => ({ ...m, files: m.files.filter((f) => f.path !== "extra.bin") }),
            })
          ).envelope,
      },
    ];
    for (const row of rows) {
      it(`${row.name}: ${row.code}`, async () => {
        const before = live();
        const envelope = await row.make();
        const answer = await command("update.apply", { manifest: envelope });
        expect(answer.status).not.toBe("succeeded");
        expect(answer.code, answer.message).toBe(row.code);
        expect(live()).toBe(before);
        expect(staging()).toEqual([]);
      });
    }
  });

  it("answers update.status with the newest job", async () => {
    const answer = await command("update.status", {});
    expect(answer.status).toBe("succeeded");
    expect(answer.result?.updates).toEqual(
      expect.arrayContaining([expect.objectContaining({ component: APP })]),
    );
  });

  it("rolls back to the previous release on update.rollback", async () => {
    const answer = await command("update.rollback", { component: APP });
    expect(answer.status, answer.message).toBe("succeeded");
    // Reported as the job that undid 1.4.0 and went back to 1.2.0.
    expect(answer.result).toMatchObject({ state: "rolled_back", fromVersion: "1.2.0", toVersion: "1.4.0" });
    expect(live()).toBe(join("releases", "1.2.0"));
  });

  it("rolls back on the terminal with pos-agent rollback once the daemon is stopped, and reports it after", async () => {
    const next = await release("1.5.0", healthy("1.5.0"));
    expect((await command("update.apply", { manifest: next.envelope })).status).toBe("succeeded");
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, "rollback", "--config", configFile.path, ...args], {
        encoding: "utf8",
      });

    const busy = cli(APP);
    expect(busy.status).toBe(1);
    expect(busy.stderr).toMatch(/another pos-agent \(pid \d+\) is running.*stop it first/);

    agent.child.kill("SIGTERM");
    await agent.exited;
    const done = cli(APP);
    expect(done.stderr).toBe("");
    expect(done.stdout).toBe("rolled back pos-app 1.5.0 -> 1.2.0\n");
    expect(done.status).toBe(0);
    expect(live()).toBe(join("releases", "1.2.0"));
    expect(readFileSync(join(appDir, "restarts.log"), "utf8").trim().split("\n").length).toBeGreaterThan(1);

    const nothing = cli(APP);
    expect(nothing.status).toBe(1);
    expect(nothing.stderr).toContain("has no release older than 1.2.0");

    watch.states.length = 0;
    agent = await startAgent(configFile);
    await watch.reached("1.5.0", "rolled_back", 15_000);
    expect(watch.states.at(-1)).toMatchObject({ toVersion: "1.5.0", state: "rolled_back" });
    const status = spawnSync(process.execPath, [BIN, "status", "--json", "--config", configFile.path], {
      encoding: "utf8",
    });
    expect(JSON.parse(status.stdout).components).toEqual([
      expect.objectContaining({
        name: APP,
        version: "1.2.0",
        securityFloor: 1,
        update: expect.objectContaining({ toVersion: "1.5.0", state: "rolled_back" }),
      }),
    ]);
  });

  it("installs a release signed with openssl dgst under an OpenSSL-made chain", async () => {
    const built = await release("1.6.0", healthy("1.6.0"));
    const b64url = (value: object | Buffer) =>
      (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString("base64url");
    const x5c = [new X509Certificate(opensslRelease.certPem).raw.toString("base64")];
    const protectedB64 = b64url({ alg: "RS256", typ: "pos-manifest+json", x5c });
    const payloadB64 = b64url(built.manifest);
    const signature = opensslSign(
      join(dir, "openssl-ca"),
      opensslRelease.keyPath,
      Buffer.from(`${protectedB64}.${payloadB64}`),
    );
    const envelope = {
      payload: payloadB64,
      signatures: [{ protected: protectedB64, signature: b64url(signature) }],
    };
    const answer = await command("update.apply", { manifest: envelope });
    expect(answer.status, answer.message).toBe("succeeded");
    expect(answer.result).toMatchObject({ toVersion: "1.6.0", state: "committed" });
    expect(live()).toBe(join("releases", "1.6.0"));
  });
});
