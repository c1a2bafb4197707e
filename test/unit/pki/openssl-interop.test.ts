import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope, EnvelopeType } from "../../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { signEnvelope } from "../../../src/pki/sign-envelope.js";
import { type VerifyOptions, verifyEnvelope } from "../../../src/pki/verify-envelope.js";
import { derToRaw, openssl, opensslLeaf, opensslSign } from "../../helpers/openssl-tools.js";
import { createTestCa } from "../../helpers/test-pki.js";
import { b64url, x5c } from "./jws-tools.js";

const COMMAND: EnvelopeType = "pos-command+json";
const MANIFEST: EnvelopeType = "pos-manifest+json";
const manifest = { v: 1, component: "pos-app", version: "2.4.1" };
const cmd = { id: "c-2", cmd: "ping", args: {}, target: "POS-0001", issuedAt: 1, expiresAt: 2 };

let dir: string;
let root: KeyAndCert;
let release: KeyAndCert;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pki-openssl-"));
  root = createRootCa({ cn: "Root" });
  release = issueLeaf({ ca: root, role: "release", cn: "release-1" });
  writeFileSync(join(dir, "root.pem"), root.certPem);
  writeFileSync(join(dir, "root.key"), root.keyPem);
  writeFileSync(join(dir, "release.key"), release.keyPem);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function options(typ: EnvelopeType, rootsPem = [root.certPem], threshold = 1): VerifyOptions {
  return { typ, rootsPem, threshold, now: Date.now() };
}

/** An envelope whose one signature comes from `signer` (e.g. the openssl CLI) over the JWS signing input. */
function externallySigned(
  header: Record<string, unknown>,
  payload: object,
  signer: (input: Buffer) => Buffer,
): Envelope {
  const protectedB64 = b64url(header);
  const payloadB64 = b64url(payload);
  const signature = signer(Buffer.from(`${protectedB64}.${payloadB64}`, "ascii"));
  return { payload: payloadB64, signatures: [{ protected: protectedB64, signature: b64url(signature) }] };
}

function codeOf(envelope: unknown, opts: VerifyOptions): string {
  const result = verifyEnvelope(envelope, opts);
  return result.ok ? "ok" : `${result.error.code}: ${result.error.message}`;
}

describe("signatures made by openssl", () => {
  it("accepts RS256 when openssl dgst -sha256 -sign made the signature (PKCS#1 v1.5)", () => {
    const header = { alg: "RS256", typ: MANIFEST, x5c: x5c(release.certPem) };
    const envelope = externallySigned(header, manifest, (input) => opensslSign(dir, "release.key", input));
    expect(codeOf(envelope, options(MANIFEST))).toBe("ok");
  });

  it("accepts PS256 when openssl dgst signed with PSS padding and a 32-byte salt", () => {
    const header = { alg: "PS256", typ: MANIFEST, x5c: x5c(release.certPem) };
    const pss = ["rsa_padding_mode:pss", "rsa_pss_saltlen:32"];
    const envelope = externallySigned(header, manifest, (input) =>
      opensslSign(dir, "release.key", input, pss),
    );
    expect(codeOf(envelope, options(MANIFEST))).toBe("ok");
  });

  it("refuses PS256 with SIGNATURE_INVALID when openssl used its default maximum salt, not the hash length", () => {
    const header = { alg: "PS256", typ: MANIFEST, x5c: x5c(release.certPem) };
    const pss = ["rsa_padding_mode:pss", "rsa_pss_saltlen:max"];
    const envelope = externallySigned(header, manifest, (input) =>
      opensslSign(dir, "release.key", input, pss),
    );
    expect(codeOf(envelope, options(MANIFEST))).toMatch(/^SIGNATURE_INVALID/);
  });

  it("accepts ES256 when an openssl dgst DER signature is converted to raw r||s, and refuses the DER itself", () => {
    const leaf = opensslLeaf(dir, "ec-op", {
      caCert: "root.pem",
      caKey: "root.key",
      keyType: "ec",
      eku: "clientAuth",
      cn: "ec-op",
    });
    const header = { alg: "ES256", typ: COMMAND, x5c: x5c(leaf.certPem) };
    let der: Buffer = Buffer.alloc(0);
    const raw = externallySigned(header, cmd, (input) => {
      der = opensslSign(dir, leaf.keyPath, input);
      return derToRaw(der);
    });
    expect(codeOf(raw, options(COMMAND))).toBe("ok");
    const signature = raw.signatures[0];
    if (signature === undefined) throw new Error("unsigned");
    const asDer = { ...raw, signatures: [{ ...signature, signature: b64url(der) }] };
    expect(codeOf(asDer, options(COMMAND))).toMatch(/^SIGNATURE_INVALID/);
  });

  it("accepts EdDSA when openssl pkeyutl -rawin signed with an Ed25519 key", () => {
    const leaf = opensslLeaf(dir, "ed-rel", {
      caCert: "root.pem",
      caKey: "root.key",
      keyType: "ed25519",
      eku: "codeSigning",
      cn: "ed-rel",
    });
    const header = { alg: "EdDSA", typ: MANIFEST, x5c: x5c(leaf.certPem) };
    const envelope = externallySigned(header, manifest, (input) => {
      writeFileSync(join(dir, "ed-input.bin"), input);
      return openssl(["pkeyutl", "-sign", "-rawin", "-inkey", leaf.keyPath, "-in", "ed-input.bin"], dir);
    });
    expect(codeOf(envelope, options(MANIFEST))).toBe("ok");
  });
});

describe("certificates made by openssl", () => {
  it("accepts a command when root and leaf both come from the openssl CLI", () => {
    const ca = createTestCa(join(dir, "test-ca"), "OpenSSL Root");
    const leaf = ca.issue("op", { cn: "openssl-op", clientAuth: true });
    const envelope = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem: readFileSync(leaf.key, "utf8"),
      chainPem: [readFileSync(leaf.cert, "utf8")],
    });
    expect(codeOf(envelope, options(COMMAND, [readFileSync(ca.cert, "utf8")]))).toBe("ok");
    expect(codeOf(envelope, options(COMMAND))).toMatch(/^UNTRUSTED_SIGNER/);
  });

  describe("with an intermediate CA", () => {
    let intermediatePem: string;
    let leafKeyPem: string;
    let leafPem: string;

    beforeAll(() => {
      writeFileSync(
        join(dir, "int.ext"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n" +
          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
      );
      openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "int.key"], dir);
      openssl(["req", "-new", "-key", "int.key", "-subj", "/CN=Intermediate", "-out", "int.csr"], dir);
      openssl(
        [
          "x509",
          "-req",
          "-in",
          "int.csr",
          "-CA",
          "root.pem",
          "-CAkey",
          "root.key",
          "-set_serial",
          "7",
        ].concat(["-days", "2", "-sha256", "-extfile", "int.ext", "-out", "int.pem"]),
        dir,
      );
      intermediatePem = readFileSync(join(dir, "int.pem"), "utf8");
      const leaf = opensslLeaf(dir, "int-leaf", {
        caCert: "int.pem",
        caKey: "int.key",
        keyType: "rsa",
        eku: "codeSigning",
        cn: "int-leaf",
      });
      leafKeyPem = leaf.keyPem;
      leafPem = leaf.certPem;
    });

    it("accepts when x5c carries the leaf and the intermediate", () => {
      const envelope = signEnvelope({
        payload: manifest,
        typ: MANIFEST,
        keyPem: leafKeyPem,
        chainPem: [leafPem, intermediatePem],
      });
      expect(codeOf(envelope, options(MANIFEST))).toBe("ok");
    });

    it("refuses with UNTRUSTED_SIGNER when the intermediate is left out of x5c", () => {
      const envelope = signEnvelope({
        payload: manifest,
        typ: MANIFEST,
        keyPem: leafKeyPem,
        chainPem: [leafPem],
      });
      expect(codeOf(envelope, options(MANIFEST))).toMatch(/^UNTRUSTED_SIGNER/);
    });

    it("refuses with UNTRUSTED_SIGNER when a non-CA leaf acts as the intermediate", () => {
      // openssl signs with any key it is given; the verifier must insist on CA:TRUE.
      const fakeIssuer = opensslLeaf(dir, "fake-int", {
        caCert: "root.pem",
        caKey: "root.key",
        keyType: "ec",
        eku: "codeSigning",
        cn: "fake-int",
      });
      const leaf = opensslLeaf(dir, "under-fake", {
        caCert: fakeIssuer.certPath,
        caKey: fakeIssuer.keyPath,
        keyType: "ec",
        eku: "codeSigning",
        cn: "under-fake",
      });
      const envelope = signEnvelope({
        payload: manifest,
        typ: MANIFEST,
        keyPem: leaf.keyPem,
        chainPem: [leaf.certPem, fakeIssuer.certPem],
      });
      expect(codeOf(envelope, options(MANIFEST))).toMatch(/^UNTRUSTED_SIGNER: .*not a CA/);
    });
  });

  it("counts one key once when it signs under two different certificates", () => {
    writeFileSync(
      join(dir, "twin.ext"),
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n" +
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "twin.key"], dir);
    openssl(["req", "-new", "-key", "twin.key", "-subj", "/CN=twin", "-out", "twin.csr"], dir);
    const certs = ["11", "12"].map((serial) => {
      openssl(
        [
          "x509",
          "-req",
          "-in",
          "twin.csr",
          "-CA",
          "root.pem",
          "-CAkey",
          "root.key",
          "-set_serial",
          serial,
        ].concat(["-days", "2", "-sha256", "-extfile", "twin.ext", "-out", `twin-${serial}.pem`]),
        dir,
      );
      return readFileSync(join(dir, `twin-${serial}.pem`), "utf8");
    });
    expect(certs[0]).not.toBe(certs[1]);
    const keyPem = readFileSync(join(dir, "twin.key"), "utf8");
    const once = signEnvelope({ payload: cmd, typ: COMMAND, keyPem, chainPem: [certs[0] ?? ""] });
    const twice = signEnvelope({
      payload: cmd,
      typ: COMMAND,
      keyPem,
      chainPem: [certs[1] ?? ""],
      existing: once,
    });
    expect(codeOf(twice, options(COMMAND))).toBe("ok");
    expect(codeOf(twice, options(COMMAND, [root.certPem], 2))).toMatch(/^THRESHOLD_NOT_MET/);
  });
});
