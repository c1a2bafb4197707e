import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "../../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { signEnvelope } from "../../../src/pki/sign-envelope.js";
import { isAgentError } from "../../../src/shared/errors.js";
import { opensslLeaf } from "../../helpers/openssl-tools.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

let root: KeyAndCert;
let alice: KeyAndCert;
let bob: KeyAndCert;

beforeAll(() => {
  root = createRootCa({ cn: "Root" });
  alice = issueLeaf({ ca: root, role: "operator", cn: "alice" });
  bob = issueLeaf({ ca: root, role: "operator", cn: "bob" });
});

function header(envelope: Envelope, index = 0): Record<string, unknown> {
  return JSON.parse(Buffer.from(envelope.signatures[index]?.protected ?? "", "base64url").toString("utf8"));
}

function codeOf(run: () => unknown): string {
  try {
    run();
    return "ok";
  } catch (error) {
    return isAgentError(error) ? `${error.code}: ${error.message}` : `not an AgentError: ${String(error)}`;
  }
}

describe("signEnvelope", () => {
  it("writes the JSON of an object payload as base64url bytes when given an object", () => {
    const payload = { cmd: "ping", note: "é" };
    const envelope = signEnvelope({
      payload,
      typ: "pos-command+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    expect(Buffer.from(envelope.payload, "base64url").toString("utf8")).toBe(JSON.stringify(payload));
    expect(envelope.payload).not.toMatch(/[+/=]/);
    expect(envelope.signatures).toHaveLength(1);
  });

  it("signs a Buffer payload byte for byte when given a Buffer", () => {
    const bytes = Buffer.from('{ "cmd" : "ping" }\n');
    const envelope = signEnvelope({
      payload: bytes,
      typ: "pos-command+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    expect(Buffer.from(envelope.payload, "base64url").equals(bytes)).toBe(true);
  });

  it("writes alg, typ and the chain as standard base64 DER into the protected header", () => {
    const envelope = signEnvelope({
      payload: {},
      typ: "pos-manifest+json",
      keyPem: alice.keyPem,
      chainPem: [`${alice.certPem}${root.certPem}`],
    });
    const written = header(envelope);
    expect(Object.keys(written)).toEqual(["alg", "typ", "x5c"]);
    expect(written.typ).toBe("pos-manifest+json");
    expect(written.x5c).toHaveLength(2);
    expect((written.x5c as string[])[0]).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it("picks the alg from the key type when none is given", () => {
    const dir = makeTmpDir("pki-sign");
    writeFileSync(join(dir, "root.pem"), root.certPem);
    writeFileSync(join(dir, "root.key"), root.keyPem);
    const ca = { caCert: "root.pem", caKey: "root.key", eku: "clientAuth" as const };
    const ec = opensslLeaf(dir, "ec", { ...ca, keyType: "ec", cn: "ec" });
    const ed = opensslLeaf(dir, "ed", { ...ca, keyType: "ed25519", cn: "ed" });
    const cases = [
      { leaf: alice, alg: "PS256" },
      { leaf: ec, alg: "ES256" },
      { leaf: ed, alg: "EdDSA" },
    ];
    for (const { leaf, alg } of cases) {
      const envelope = signEnvelope({
        payload: {},
        typ: "pos-command+json",
        keyPem: leaf.keyPem,
        chainPem: [leaf.certPem],
      });
      expect(header(envelope).alg).toBe(alg);
    }
  });

  it("adds a signature and keeps the first when given an existing envelope", () => {
    const first = signEnvelope({
      payload: { cmd: "ping" },
      typ: "pos-command+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    const second = signEnvelope({
      payload: Buffer.from(first.payload, "base64url"),
      typ: "pos-command+json",
      keyPem: bob.keyPem,
      chainPem: [bob.certPem],
      existing: first,
    });
    expect(second.payload).toBe(first.payload);
    expect(second.signatures[0]).toEqual(first.signatures[0]);
    expect(second.signatures).toHaveLength(2);
  });

  it("refuses with BAD_REQUEST when the existing envelope carries another payload", () => {
    const first = signEnvelope({
      payload: { cmd: "ping" },
      typ: "pos-command+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    const run = () =>
      signEnvelope({
        payload: { cmd: "agent.restart" },
        typ: "pos-command+json",
        keyPem: bob.keyPem,
        chainPem: [bob.certPem],
        existing: first,
      });
    expect(codeOf(run)).toMatch(/^BAD_REQUEST: the payload differs/);
  });

  it("refuses with BAD_REQUEST when the existing envelope is signed as another typ", () => {
    const first = signEnvelope({
      payload: { v: 1 },
      typ: "pos-manifest+json",
      keyPem: alice.keyPem,
      chainPem: [alice.certPem],
    });
    const run = () =>
      signEnvelope({
        payload: { v: 1 },
        typ: "pos-command+json",
        keyPem: bob.keyPem,
        chainPem: [bob.certPem],
        existing: first,
      });
    expect(codeOf(run)).toMatch(/^BAD_REQUEST: .*pos-manifest\+json/);
  });

  it("refuses with BAD_REQUEST when the key does not belong to the leaf certificate", () => {
    const run = () =>
      signEnvelope({ payload: {}, typ: "pos-command+json", keyPem: bob.keyPem, chainPem: [alice.certPem] });
    expect(codeOf(run)).toMatch(/^BAD_REQUEST: the private key does not match the certificate "CN=alice"/);
  });

  it("refuses with BAD_REQUEST when the alg does not fit the key", () => {
    const run = () =>
      signEnvelope({
        payload: {},
        typ: "pos-command+json",
        keyPem: alice.keyPem,
        chainPem: [alice.certPem],
        alg: "ES256",
      });
    expect(codeOf(run)).toMatch(/^BAD_REQUEST: ES256 cannot be used/);
  });

  it("refuses with BAD_REQUEST when the chain holds no certificate", () => {
    const run = () =>
      signEnvelope({ payload: {}, typ: "pos-command+json", keyPem: alice.keyPem, chainPem: ["junk"] });
    expect(codeOf(run)).toMatch(/^BAD_REQUEST: the certificate chain holds no certificate/);
  });
});
