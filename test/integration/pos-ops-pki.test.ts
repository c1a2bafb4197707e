import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EnvelopeType } from "../../src/pki/envelope.js";
import { loadRootsPem, verifyEnvelope } from "../../src/pki/verify-envelope.js";
import { type CliResult, runBin } from "../helpers/run-bin.js";

// Runs the built bin (npm run build first), as operators do.
const ops = (args: string[], cwd: string): Promise<CliResult> => runBin("pos-ops", args, { cwd });

const command = {
  id: "c-9",
  cmd: "diagnostics.run",
  args: {},
  target: "POS-0001",
  issuedAt: 1,
  expiresAt: 2,
};
const manifest = { v: 1, component: "pos-app", version: "2.4.1", securityVersion: 3 };

describe("pos-ops pki and sign", () => {
  let dir: string;
  let roots: string[];

  const verify = (file: string, typ: EnvelopeType, threshold = 1) =>
    verifyEnvelope(JSON.parse(readFileSync(join(dir, file), "utf8")), {
      typ,
      rootsPem: roots,
      threshold,
      now: Date.now(),
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pos-ops-pki-"));
    writeFileSync(join(dir, "cmd.json"), `${JSON.stringify(command, null, 2)}\n`);
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates a root CA with a 0600 key when pki init is run", async () => {
    const result = await ops(["pki", "init", "--out", "ca", "--cn", "Acme Root", "--days", "30"], dir);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(statSync(join(dir, "ca/ca.key.pem")).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(join(dir, "ca/ca.cert.pem")));
    expect(cert.subject).toBe("CN=Acme Root");
    expect(cert.ca).toBe(true);
    expect(Date.parse(cert.validTo) - Date.now()).toBeLessThan(31 * 86_400_000);
    roots = loadRootsPem([join(dir, "ca/ca.cert.pem")]);
  });

  it("refuses with exit 1 naming the file when pki init would overwrite a CA", async () => {
    const before = readFileSync(join(dir, "ca/ca.key.pem"), "utf8");
    const result = await ops(["pki", "init", "--out", "ca"], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ca\/ca\.key\.pem already exists/);
    expect(readFileSync(join(dir, "ca/ca.key.pem"), "utf8")).toBe(before);
  });

  it("issues operator and release leaves with their key usages when pki issue is run", async () => {
    for (const [role, cn] of [
      ["operator", "alice"],
      ["operator", "bob"],
      ["release", "rel-1"],
    ] as const) {
      const result = await ops(
        ["pki", "issue", "--ca", "ca", "--role", role, "--cn", cn, "--out", "keys"],
        dir,
      );
      expect(result.code, result.stderr).toBe(0);
      expect(statSync(join(dir, `keys/${cn}.key.pem`)).mode & 0o777).toBe(0o600);
      const cert = new X509Certificate(readFileSync(join(dir, `keys/${cn}.cert.pem`)));
      expect(cert.subject).toBe(`CN=${cn}`);
      expect(cert.issuer).toBe("CN=Acme Root");
      expect(cert.keyUsage).toEqual([role === "release" ? "1.3.6.1.5.5.7.3.3" : "1.3.6.1.5.5.7.3.2"]);
    }
    const again = await ops(
      ["pki", "issue", "--ca", "ca", "--role", "operator", "--cn", "alice", "--out", "keys"],
      dir,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/keys\/alice\.key\.pem already exists/);
  });

  it("signs a command to stdout that verifyEnvelope accepts when an operator signs it", async () => {
    const result = await ops(
      ["sign", "--key", "keys/alice.key.pem", "--cert", "keys/alice.cert.pem", "cmd.json"],
      dir,
    );
    expect(result.code, result.stderr).toBe(0);
    writeFileSync(join(dir, "cmd.env.json"), result.stdout);
    const verified = verify("cmd.env.json", "pos-command+json");
    expect(verified.ok).toBe(true);
    if (!verified.ok) return;
    expect(verified.value.payload).toEqual(command);
    expect(verified.value.signers.map((signer) => signer.subject)).toEqual(["CN=alice"]);
    expect(verify("cmd.env.json", "pos-manifest+json").ok).toBe(false);
  });

  it("adds a second operator's signature in place so that a threshold of two is met", async () => {
    expect(verify("cmd.env.json", "pos-command+json", 2).ok).toBe(false);
    const result = await ops(
      [
        "sign",
        "--key",
        "keys/bob.key.pem",
        "--cert",
        "keys/bob.cert.pem",
        "cmd.env.json",
        "--out",
        "cmd.env.json",
      ],
      dir,
    );
    expect(result.code, result.stderr).toBe(0);
    const envelope = JSON.parse(readFileSync(join(dir, "cmd.env.json"), "utf8"));
    expect(envelope.signatures).toHaveLength(2);
    const verified = verify("cmd.env.json", "pos-command+json", 2);
    expect(verified.ok && verified.value.signers.map((signer) => signer.subject)).toEqual([
      "CN=alice",
      "CN=bob",
    ]);
  });

  it("signs a manifest when the JSON has no cmd key, and a release key is used", async () => {
    const result = await ops(
      [
        "sign",
        "--key",
        "keys/rel-1.key.pem",
        "--cert",
        "keys/rel-1.cert.pem",
        "manifest.json",
        "--out",
        "m.env.json",
      ],
      dir,
    );
    expect(result.code, result.stderr).toBe(0);
    const verified = verify("m.env.json", "pos-manifest+json");
    expect(verified.ok && verified.value.payload).toEqual(manifest);
    const asCommand = verify("m.env.json", "pos-command+json");
    expect(asCommand.ok || asCommand.error.code).toBe("SIGNATURE_INVALID");
  });

  it("warns, and terminals refuse, when a release certificate signs a command", async () => {
    const result = await ops(
      [
        "sign",
        "--key",
        "keys/rel-1.key.pem",
        "--cert",
        "keys/rel-1.cert.pem",
        "cmd.json",
        "--out",
        "bad.env.json",
      ],
      dir,
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: keys\/rel-1\.cert\.pem is not an operator certificate/);
    const verified = verify("bad.env.json", "pos-command+json");
    expect(verified.ok || verified.error.code).toBe("UNTRUSTED_SIGNER");
  });

  it("exits 1 with a sentence naming the files when the key does not belong to the certificate", async () => {
    const result = await ops(
      ["sign", "--key", "keys/bob.key.pem", "--cert", "keys/alice.cert.pem", "cmd.json"],
      dir,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /keys\/bob\.key\.pem is not the key of the certificate in keys\/alice\.cert\.pem/,
    );
    writeFileSync(join(dir, "broken.json"), "{ nope");
    const broken = await ops(
      ["sign", "--key", "keys/bob.key.pem", "--cert", "keys/bob.cert.pem", "broken.json"],
      dir,
    );
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/^error: broken\.json: not valid JSON/);
  });

  it("exits 2 with one sentence naming the option when the usage is wrong", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["pki", "init"], /--out DIR is required/],
      [["pki", "init", "--out", "x", "--days", "0"], /--days must be/],
      [["pki", "issue", "--ca", "ca", "--role", "admin", "--cn", "eve", "--out", "keys"], /--role must be/],
      [
        ["pki", "issue", "--ca", "ca", "--role", "operator", "--cn", "Eve Smith", "--out", "keys"],
        /--cn "Eve Smith"/,
      ],
      [["pki", "issue", "--role", "operator", "--cn", "eve", "--out", "keys"], /--ca DIR is required/],
      [["pki", "revoke"], /unknown subcommand "revoke"/],
      [["sign", "--key", "k", "--cert", "c"], /name the JSON FILE/],
      [
        ["sign", "--key", "k", "--cert", "c", "--typ", "firmware", "cmd.json"],
        /--typ must be command or manifest/,
      ],
      [["sign", "--cert", "c", "cmd.json"], /--key KEY is required/],
      [["sign", "--bogus", "cmd.json"], /bogus/],
    ];
    for (const [args, message] of cases) {
      const result = await ops(args, dir);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toMatch(message);
      expect(result.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });

  it("answers --help with exit 0 for every subcommand", async () => {
    for (const args of [
      ["--help"],
      ["pki", "--help"],
      ["pki", "init", "--help"],
      ["pki", "issue", "--help"],
      ["sign", "--help"],
    ]) {
      const result = await ops(args, dir);
      expect(result.code, args.join(" ")).toBe(0);
      expect(result.stdout, args.join(" ")).toMatch(/Usage/);
    }
  });
});
