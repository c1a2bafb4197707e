import { createPrivateKey, X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { isAgentError } from "../../../src/shared/errors.js";
import { openssl } from "../../helpers/openssl-tools.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

function text(certPem: string, dir: string): string {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(file, certPem);
  return openssl(["x509", "-in", file, "-noout", "-text"], dir).toString("utf8");
}

describe("createRootCa and issueLeaf", () => {
  let root: KeyAndCert;
  const now = Date.UTC(2026, 0, 1);

  beforeAll(() => {
    root = createRootCa({ cn: "Test Root", now });
  });

  it("makes a self-signed RSA-3072 CA with pathlen 1 and keyCertSign when asked for a root", () => {
    const dir = makeTmpDir("pki-issue");
    const cert = new X509Certificate(root.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe("CN=Test Root");
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    expect(cert.checkPrivateKey(createPrivateKey(root.keyPem))).toBe(true);
    expect(root.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const dump = text(root.certPem, dir);
    expect(dump).toMatch(/CA:TRUE, pathlen:1/);
    expect(dump).toMatch(/Certificate Sign, CRL Sign/);
    expect(dump).toMatch(/sha256WithRSAEncryption/);
    expect(Date.parse(cert.validFrom)).toBe(now - 5 * 60_000);
    expect(Date.parse(cert.validTo)).toBe(now + 3650 * 86_400_000);
  });

  it("gives each role its extended key usage when issuing leaves", () => {
    const release = new X509Certificate(issueLeaf({ ca: root, role: "release", cn: "rel", now }).certPem);
    const operator = new X509Certificate(issueLeaf({ ca: root, role: "operator", cn: "op", now }).certPem);
    const device = new X509Certificate(issueLeaf({ ca: root, role: "device", cn: "POS-0001", now }).certPem);
    expect(release.keyUsage).toEqual([CODE_SIGNING]);
    expect(operator.keyUsage).toEqual([CLIENT_AUTH]);
    expect(device.keyUsage).toEqual([CLIENT_AUTH]);
    for (const leaf of [release, operator, device]) {
      expect(leaf.ca).toBe(false);
      expect(leaf.issuer).toBe("CN=Test Root");
      expect(leaf.checkIssued(new X509Certificate(root.certPem))).toBe(true);
      expect(leaf.verify(new X509Certificate(root.certPem).publicKey)).toBe(true);
      expect(Date.parse(leaf.validTo)).toBe(now + 825 * 86_400_000);
    }
  });

  it("makes leaves that openssl verify accepts when checked against the root", () => {
    const dir = makeTmpDir("pki-issue");
    const leaf = issueLeaf({ ca: root, role: "operator", cn: "op", now });
    const fresh = createRootCa({ cn: "Fresh Root" });
    const freshLeaf = issueLeaf({ ca: fresh, role: "operator", cn: "op" });
    writeFileSync(join(dir, "ca.pem"), fresh.certPem);
    writeFileSync(join(dir, "leaf.pem"), freshLeaf.certPem);
    const out = openssl(
      ["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", "ca.pem", "leaf.pem"],
      dir,
    ).toString();
    expect(out).toMatch(/leaf.pem: OK/);
    const dump = text(leaf.certPem, dir);
    expect(dump).toMatch(/CA:FALSE/);
    expect(dump).toMatch(/Digital Signature/);
    expect(dump).toMatch(/TLS Web Client Authentication/);
  });

  it("uses a random positive 16-byte serial when issuing", () => {
    const serials = new Set<string>();
    for (let i = 0; i < 3; i += 1) {
      const serial = new X509Certificate(issueLeaf({ ca: root, role: "device", cn: "d", now }).certPem)
        .serialNumber;
      expect(serial).toMatch(/^[0-7][0-9A-F]{31}$/);
      serials.add(serial);
    }
    expect(serials.size).toBe(3);
  });

  it("stops a leaf at the CA's notAfter when the asked validity runs past it", () => {
    const shortRoot = createRootCa({ cn: "Short Root", validityDays: 10, now });
    const leaf = new X509Certificate(issueLeaf({ ca: shortRoot, role: "operator", cn: "op", now }).certPem);
    expect(Date.parse(leaf.validTo)).toBe(now + 10 * 86_400_000);
  });

  it("refuses with BAD_REQUEST when the CA key does not belong to the CA certificate", () => {
    const other = createRootCa({ cn: "Other Root", now });
    const mixed = { keyPem: other.keyPem, certPem: root.certPem };
    expect(() => issueLeaf({ ca: mixed, role: "operator", cn: "op" })).toThrow(/does not belong/);
    try {
      issueLeaf({ ca: mixed, role: "operator", cn: "op" });
    } catch (error) {
      expect(isAgentError(error) && error.code).toBe("BAD_REQUEST");
    }
  });

  it("refuses when the issuing certificate is not a CA", () => {
    const leaf = issueLeaf({ ca: root, role: "operator", cn: "op", now });
    expect(() => issueLeaf({ ca: leaf, role: "operator", cn: "sub" })).toThrow(/not a CA/);
  });
});
