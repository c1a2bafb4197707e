import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope, EnvelopeType } from "../../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { signEnvelope } from "../../../src/pki/sign-envelope.js";
import { loadRootsPem, type VerifyOptions, verifyEnvelope } from "../../../src/pki/verify-envelope.js";
import { type OpensslLeaf, openssl, opensslLeaf } from "../../helpers/openssl-tools.js";
import { b64url, flipByte, handmade, x5c } from "./jws-tools.js";

const COMMAND: EnvelopeType = "pos-command+json";
const MANIFEST: EnvelopeType = "pos-manifest+json";
const DAY = 86_400_000;
const cmd = { id: "c-1", cmd: "ping", args: {}, target: "POS-0001", issuedAt: 1, expiresAt: 2 };
const manifest = { v: 1, component: "pos-app", version: "2.4.1" };

let dir: string;
let root: KeyAndCert;
let otherRoot: KeyAndCert;
let operatorA: KeyAndCert;
let operatorB: KeyAndCert;
let release: KeyAndCert;
let stranger: KeyAndCert;
let expired: KeyAndCert;
let notYetValid: KeyAndCert;
let ecOperator: OpensslLeaf;
let edRelease: OpensslLeaf;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pki-verify-"));
  root = createRootCa({ cn: "Root" });
  otherRoot = createRootCa({ cn: "Other Root" });
  operatorA = issueLeaf({ ca: root, role: "operator", cn: "alice" });
  operatorB = issueLeaf({ ca: root, role: "operator", cn: "bob" });
  release = issueLeaf({ ca: root, role: "release", cn: "release-1" });
  stranger = issueLeaf({ ca: otherRoot, role: "operator", cn: "mallory" });
  expired = issueLeaf({
    ca: root,
    role: "operator",
    cn: "old",
    now: Date.now() - 30 * DAY,
    validityDays: 10,
  });
  notYetValid = issueLeaf({ ca: root, role: "operator", cn: "early", now: Date.now() + 10 * DAY });
  writeFileSync(join(dir, "root.pem"), root.certPem);
  writeFileSync(join(dir, "root.key"), root.keyPem);
  const ca = { caCert: "root.pem", caKey: "root.key" };
  ecOperator = opensslLeaf(dir, "ec-op", { ...ca, keyType: "ec", eku: "clientAuth", cn: "ec-op" });
  edRelease = opensslLeaf(dir, "ed-rel", { ...ca, keyType: "ed25519", eku: "codeSigning", cn: "ed-rel" });
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function options(typ: EnvelopeType, extra: Partial<VerifyOptions> = {}): VerifyOptions {
  return { typ, rootsPem: [root.certPem], threshold: 1, now: Date.now(), ...extra };
}

function signWith(leaf: KeyAndCert | OpensslLeaf, typ: EnvelopeType, payload: object, existing?: Envelope) {
  return signEnvelope({
    payload,
    typ,
    keyPem: leaf.keyPem,
    chainPem: [leaf.certPem],
    ...(existing === undefined ? {} : { existing }),
  });
}

function codeOf(envelope: unknown, opts: VerifyOptions): string {
  const result = verifyEnvelope(envelope, opts);
  return result.ok ? "ok" : result.error.code;
}

function headerOf(envelope: Envelope, index = 0): Record<string, unknown> {
  const signature = envelope.signatures[index];
  if (signature === undefined) throw new Error("no such signature");
  return JSON.parse(Buffer.from(signature.protected, "base64url").toString("utf8"));
}

describe("verifyEnvelope round trips", () => {
  it("accepts a PS256 command and returns payload and signer when an operator signs it", () => {
    const envelope = signWith(operatorA, COMMAND, cmd);
    expect(headerOf(envelope)).toMatchObject({ alg: "PS256", typ: COMMAND, x5c: x5c(operatorA.certPem) });
    const result = verifyEnvelope(envelope, options(COMMAND));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.payload).toEqual(cmd);
    expect(result.value.payloadBytes.toString("utf8")).toBe(JSON.stringify(cmd));
    expect(result.value.signers).toHaveLength(1);
    expect(result.value.signers[0]).toMatchObject({ subject: "CN=alice", alg: "PS256" });
    expect(result.value.signers[0]?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(result.value.signers[0]?.notAfter).toBeGreaterThan(Date.now() + 800 * DAY);
  });

  it("accepts an RS256 manifest when a release key signs it", () => {
    const envelope = signEnvelope({
      payload: manifest,
      typ: MANIFEST,
      keyPem: release.keyPem,
      chainPem: [release.certPem],
      alg: "RS256",
    });
    expect(headerOf(envelope).alg).toBe("RS256");
    const result = verifyEnvelope(envelope, options(MANIFEST));
    expect(result.ok && result.value.signers[0]?.alg).toBe("RS256");
  });

  it("accepts an ES256 command with a raw 64-byte r||s signature when a P-256 operator signs it", () => {
    const envelope = signWith(ecOperator, COMMAND, cmd);
    expect(headerOf(envelope).alg).toBe("ES256");
    expect(Buffer.from(envelope.signatures[0]?.signature ?? "", "base64url")).toHaveLength(64);
    const result = verifyEnvelope(envelope, options(COMMAND));
    expect(result.ok && result.value.signers[0]?.subject).toBe("CN=ec-op");
  });

  it("accepts an EdDSA manifest when an Ed25519 release key signs it", () => {
    const envelope = signWith(edRelease, MANIFEST, manifest);
    expect(headerOf(envelope).alg).toBe("EdDSA");
    const result = verifyEnvelope(envelope, options(MANIFEST));
    expect(result.ok && result.value.signers[0]?.alg).toBe("EdDSA");
  });

  it("accepts a chain that includes the root itself", () => {
    const envelope = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem: operatorA.keyPem,
      chainPem: [operatorA.certPem, root.certPem],
    });
    expect(headerOf(envelope).x5c).toHaveLength(2);
    expect(codeOf(envelope, options(COMMAND))).toBe("ok");
  });

  it("accepts when the signer's root is one of several configured, in a bundle file", () => {
    const bundle = join(dir, "bundle.pem");
    writeFileSync(bundle, `${otherRoot.certPem}\n${root.certPem}`);
    const roots = loadRootsPem([bundle]);
    expect(roots).toHaveLength(2);
    expect(codeOf(signWith(operatorA, COMMAND, cmd), options(COMMAND, { rootsPem: roots }))).toBe("ok");
  });
});

describe("verifyEnvelope refusals", () => {
  it("refuses with SIGNATURE_INVALID when a signature byte is flipped", () => {
    const envelope = signWith(operatorA, COMMAND, cmd);
    const signature = envelope.signatures[0];
    if (signature === undefined) throw new Error("unsigned");
    const forged = { ...envelope, signatures: [{ ...signature, signature: flipByte(signature.signature) }] };
    expect(codeOf(forged, options(COMMAND))).toBe("SIGNATURE_INVALID");
  });

  it("refuses with SIGNATURE_INVALID when the payload is tampered with", () => {
    const envelope = signWith(operatorA, COMMAND, cmd);
    const tampered = { ...envelope, payload: b64url({ ...cmd, cmd: "agent.restart" }) };
    expect(codeOf(tampered, options(COMMAND))).toBe("SIGNATURE_INVALID");
  });

  it("refuses with UNTRUSTED_SIGNER when the chain ends at another root", () => {
    expect(codeOf(signWith(stranger, COMMAND, cmd), options(COMMAND))).toBe("UNTRUSTED_SIGNER");
    // The same envelope passes when that root is configured: the refusal is about trust, not the signature.
    expect(
      codeOf(signWith(stranger, COMMAND, cmd), options(COMMAND, { rootsPem: [otherRoot.certPem] })),
    ).toBe("ok");
  });

  it("refuses with UNTRUSTED_SIGNER when the x5c claims a trusted root it was not issued by", () => {
    const envelope = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem: stranger.keyPem,
      chainPem: [stranger.certPem, root.certPem],
    });
    expect(codeOf(envelope, options(COMMAND))).toBe("UNTRUSTED_SIGNER");
  });

  it("refuses with UNTRUSTED_SIGNER when a release certificate signs a command", () => {
    const result = verifyEnvelope(signWith(release, COMMAND, cmd), options(COMMAND));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe("UNTRUSTED_SIGNER");
    expect(result.error.message).toMatch(/clientAuth/);
  });

  it("refuses with UNTRUSTED_SIGNER when a command leaf carries codeSigning besides clientAuth", () => {
    const both = opensslLeaf(dir, "both", {
      caCert: "root.pem",
      caKey: "root.key",
      keyType: "ec",
      eku: "clientAuth,codeSigning",
      cn: "both",
    });
    const result = verifyEnvelope(signWith(both, COMMAND, cmd), options(COMMAND));
    expect(result.ok || result.error.code).toBe("UNTRUSTED_SIGNER");
    expect(result.ok || result.error.message).toMatch(/code-signing/);
    expect(codeOf(signWith(both, MANIFEST, manifest), options(MANIFEST))).toBe("ok");
  });

  it("refuses with UNTRUSTED_SIGNER when the signing leaf is a CA certificate", () => {
    const caLeaf = opensslLeaf(dir, "ca-leaf", {
      caCert: "root.pem",
      caKey: "root.key",
      keyType: "ec",
      eku: "clientAuth",
      cn: "ca-leaf",
      ca: true,
    });
    const result = verifyEnvelope(signWith(caLeaf, COMMAND, cmd), options(COMMAND));
    expect(result.ok || result.error.message).toMatch(/is a CA certificate/);
  });

  it("refuses with UNTRUSTED_SIGNER when the configured root is not a CA certificate", () => {
    openssl(
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "nonca.key",
      ]
        .concat(["-out", "nonca.pem", "-days", "2", "-subj", "/CN=Not A CA"])
        .concat([
          "-addext",
          "basicConstraints=critical,CA:FALSE",
          "-addext",
          "keyUsage=critical,keyCertSign,digitalSignature",
        ]),
      dir,
    );
    const leaf = opensslLeaf(dir, "under-nonca", {
      caCert: "nonca.pem",
      caKey: "nonca.key",
      keyType: "ec",
      eku: "clientAuth",
      cn: "under-nonca",
    });
    const rootsPem = [readFileSync(join(dir, "nonca.pem"), "utf8")];
    expect(codeOf(signWith(leaf, COMMAND, cmd), options(COMMAND, { rootsPem }))).toBe("UNTRUSTED_SIGNER");
  });

  it("refuses with UNTRUSTED_SIGNER when the leaf's RSA key is shorter than 2048 bits", () => {
    const weak = opensslLeaf(dir, "weak", {
      caCert: "root.pem",
      caKey: "root.key",
      keyType: "rsa1024",
      eku: "clientAuth",
      cn: "weak",
    });
    const result = verifyEnvelope(signWith(weak, COMMAND, cmd), options(COMMAND));
    expect(result.ok || `${result.error.code}: ${result.error.message}`).toMatch(/^UNTRUSTED_SIGNER: .*2048/);
  });

  it("refuses with UNTRUSTED_SIGNER when x5c holds more than four certificates", () => {
    const chainPem = [operatorA.certPem, root.certPem, root.certPem, root.certPem];
    const four = signEnvelope({ payload: cmd, typ: COMMAND, keyPem: operatorA.keyPem, chainPem });
    expect(codeOf(four, options(COMMAND))).toBe("ok");
    const five = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem: operatorA.keyPem,
      chainPem: [...chainPem, root.certPem],
    });
    const result = verifyEnvelope(five, options(COMMAND));
    expect(result.ok || `${result.error.code}: ${result.error.message}`).toMatch(
      /^UNTRUSTED_SIGNER: .*more than 4/,
    );
  });

  it("refuses with UNTRUSTED_SIGNER when an operator certificate signs a manifest", () => {
    const result = verifyEnvelope(signWith(operatorA, MANIFEST, manifest), options(MANIFEST));
    expect(result.ok || result.error.code).toBe("UNTRUSTED_SIGNER");
    expect(result.ok || result.error.message).toMatch(/codeSigning/);
  });

  it("refuses with EXPIRED when the signer's certificate has expired", () => {
    expect(codeOf(signWith(expired, COMMAND, cmd), options(COMMAND))).toBe("EXPIRED");
  });

  it("refuses with EXPIRED when the signer's certificate is not yet valid", () => {
    const result = verifyEnvelope(signWith(notYetValid, COMMAND, cmd), options(COMMAND));
    expect(result.ok || result.error.code).toBe("EXPIRED");
    expect(result.ok || result.error.message).toMatch(/not valid before/);
  });

  it("refuses with EXPIRED when the configured root has expired though the leaf has not", () => {
    const oldRoot = createRootCa({ cn: "Old Root", now: Date.now() - 3 * DAY, validityDays: 1 });
    writeFileSync(join(dir, "old-root.pem"), oldRoot.certPem);
    writeFileSync(join(dir, "old-root.key"), oldRoot.keyPem);
    const leaf = opensslLeaf(dir, "under-old", {
      caCert: "old-root.pem",
      caKey: "old-root.key",
      keyType: "ec",
      eku: "clientAuth",
      cn: "under-old",
    });
    const result = verifyEnvelope(
      signWith(leaf, COMMAND, cmd),
      options(COMMAND, { rootsPem: [oldRoot.certPem] }),
    );
    expect(result.ok || result.error.code).toBe("EXPIRED");
    expect(result.ok || result.error.message).toMatch(/Old Root.*expired/);
    // A fresh self-signed certificate for the root's key in x5c does not renew the configured root.
    openssl(
      [
        "req",
        "-x509",
        "-key",
        "old-root.key",
        "-out",
        "old-root-again.pem",
        "-days",
        "9",
        "-subj",
        "/CN=Old Root",
      ],
      dir,
    );
    const withFresh = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem: leaf.keyPem,
      chainPem: [leaf.certPem, readFileSync(join(dir, "old-root-again.pem"), "utf8")],
    });
    expect(codeOf(withFresh, options(COMMAND, { rootsPem: [oldRoot.certPem] }))).toBe("EXPIRED");
  });

  it("refuses with SIGNATURE_INVALID when a manifest signature is presented for a command", () => {
    const envelope = signWith(release, MANIFEST, manifest);
    const result = verifyEnvelope(envelope, options(COMMAND));
    expect(result.ok || result.error.code).toBe("SIGNATURE_INVALID");
    expect(result.ok || result.error.message).toMatch(/typ/);
    expect(codeOf(signWith(operatorA, COMMAND, cmd), options(MANIFEST))).toBe("SIGNATURE_INVALID");
  });

  it("refuses with SIGNATURE_INVALID when alg is none or not on the allowed list", () => {
    const header = { typ: COMMAND, x5c: x5c(operatorA.certPem) };
    const none = {
      payload: b64url(cmd),
      signatures: [{ protected: b64url({ alg: "none", ...header }), signature: "" }],
    };
    const refused = verifyEnvelope(none, options(COMMAND));
    expect(refused.ok || `${refused.error.code}: ${refused.error.message}`).toMatch(
      /^SIGNATURE_INVALID: .*alg "none" is not allowed/,
    );
    const hs256 = handmade({
      header: { alg: "HS256", ...header },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "RS256",
    });
    expect(codeOf(hs256, options(COMMAND))).toBe("SIGNATURE_INVALID");
  });

  it("refuses with SIGNATURE_INVALID when the alg does not fit the key or the signature scheme", () => {
    const header = { typ: COMMAND, x5c: x5c(operatorA.certPem) };
    const es256OnRsa = handmade({
      header: { alg: "ES256", ...header },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "RS256",
    });
    const mismatch = verifyEnvelope(es256OnRsa, options(COMMAND));
    expect(mismatch.ok || `${mismatch.error.code}: ${mismatch.error.message}`).toMatch(
      /^SIGNATURE_INVALID: .*ES256 does not fit the rsa key/,
    );
    const pkcs1AsPss = handmade({
      header: { alg: "PS256", ...header },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "RS256",
    });
    expect(codeOf(pkcs1AsPss, options(COMMAND))).toBe("SIGNATURE_INVALID");
    const control = handmade({
      header: { alg: "RS256", ...header },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "RS256",
    });
    expect(codeOf(control, options(COMMAND))).toBe("ok");
  });

  it("refuses with SIGNATURE_INVALID when the protected header names crit extensions", () => {
    const envelope = handmade({
      header: { alg: "PS256", typ: COMMAND, x5c: x5c(operatorA.certPem), crit: ["exp"], exp: 1 },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "PS256",
    });
    expect(codeOf(envelope, options(COMMAND))).toBe("SIGNATURE_INVALID");
  });

  it("refuses with UNTRUSTED_SIGNER when x5c is missing, even if an unprotected header carries it", () => {
    const envelope = handmade({
      header: { alg: "PS256", typ: COMMAND },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "PS256",
    });
    expect(codeOf(envelope, options(COMMAND))).toBe("UNTRUSTED_SIGNER");
    const signature = envelope.signatures[0];
    if (signature === undefined) throw new Error("unsigned");
    const unprotected = {
      ...envelope,
      signatures: [{ ...signature, header: { x5c: x5c(operatorA.certPem) } }],
    };
    expect(codeOf(unprotected, options(COMMAND))).toBe("UNTRUSTED_SIGNER");
    const empty = handmade({
      header: { alg: "PS256", typ: COMMAND, x5c: [] },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "PS256",
    });
    expect(codeOf(empty, options(COMMAND))).toBe("UNTRUSTED_SIGNER");
  });

  it("refuses with BAD_REQUEST when the envelope, its base64url or its JSON is malformed", () => {
    const good = signWith(operatorA, COMMAND, cmd);
    const signature = good.signatures[0];
    if (signature === undefined) throw new Error("unsigned");
    expect(codeOf("not an envelope", options(COMMAND))).toBe("BAD_REQUEST");
    expect(codeOf({ payload: good.payload, signatures: [] }, options(COMMAND))).toBe("BAD_REQUEST");
    expect(codeOf({ ...good, payload: `${good.payload}!` }, options(COMMAND))).toBe("BAD_REQUEST");
    expect(codeOf({ ...good, payload: b64url("{not json") }, options(COMMAND))).toBe("BAD_REQUEST");
    const badHeader = { ...signature, protected: b64url("{not json") };
    expect(codeOf({ ...good, signatures: [badHeader] }, options(COMMAND))).toBe("BAD_REQUEST");
    const badX5c = handmade({
      header: { alg: "PS256", typ: COMMAND, x5c: ["not*base64"] },
      payload: cmd,
      keyPem: operatorA.keyPem,
      scheme: "PS256",
    });
    expect(codeOf(badX5c, options(COMMAND))).toBe("BAD_REQUEST");
  });
});

describe("verifyEnvelope thresholds", () => {
  it("refuses with THRESHOLD_NOT_MET when two signers are needed and one signed", () => {
    const result = verifyEnvelope(signWith(operatorA, COMMAND, cmd), options(COMMAND, { threshold: 2 }));
    expect(result.ok || result.error.code).toBe("THRESHOLD_NOT_MET");
  });

  it("accepts when two signers are needed and two distinct operators signed", () => {
    const once = signWith(operatorA, COMMAND, cmd);
    const twice = signWith(operatorB, COMMAND, cmd, once);
    expect(twice.payload).toBe(once.payload);
    expect(twice.signatures).toHaveLength(2);
    const result = verifyEnvelope(twice, options(COMMAND, { threshold: 2 }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.signers.map((signer) => signer.subject)).toEqual(["CN=alice", "CN=bob"]);
  });

  it("counts the same signer once when it signed twice", () => {
    const twice = signWith(operatorA, COMMAND, cmd, signWith(operatorA, COMMAND, cmd));
    expect(twice.signatures).toHaveLength(2);
    expect(codeOf(twice, options(COMMAND, { threshold: 2 }))).toBe("THRESHOLD_NOT_MET");
    const result = verifyEnvelope(twice, options(COMMAND));
    expect(result.ok && result.value.signers).toHaveLength(1);
  });

  it("refuses with THRESHOLD_NOT_MET naming the failure when one of two signatures is untrusted", () => {
    const mixed = signWith(stranger, COMMAND, cmd, signWith(operatorA, COMMAND, cmd));
    const result = verifyEnvelope(mixed, options(COMMAND, { threshold: 2 }));
    expect(result.ok || result.error.code).toBe("THRESHOLD_NOT_MET");
    expect(result.ok || result.error.message).toMatch(/signature 2: .*UNTRUSTED_SIGNER/);
    expect(codeOf(mixed, options(COMMAND))).toBe("ok");
  });

  it("reports the first signature's failure when no signature is valid", () => {
    const good = signWith(operatorA, COMMAND, cmd);
    const signature = good.signatures[0];
    if (signature === undefined) throw new Error("unsigned");
    const forged = { ...signature, signature: flipByte(signature.signature) };
    const both = signWith(stranger, COMMAND, cmd, { payload: good.payload, signatures: [forged] });
    expect(codeOf(both, options(COMMAND, { threshold: 2 }))).toBe("SIGNATURE_INVALID");
  });

  it("never accepts an envelope without valid signatures when the threshold is zero", () => {
    expect(codeOf(signWith(stranger, COMMAND, cmd), options(COMMAND, { threshold: 0 }))).toBe(
      "UNTRUSTED_SIGNER",
    );
  });
});

describe("loadRootsPem", () => {
  it("names the file when it holds no certificate", () => {
    const file = join(dir, "empty.pem");
    writeFileSync(file, "nothing here\n");
    expect(() => loadRootsPem([file])).toThrow(new RegExp(`${file}: holds no PEM certificate`));
    expect(() => loadRootsPem([join(dir, "missing.pem")])).toThrow(/missing\.pem: cannot read/);
  });
});
