import { randomBytes } from "node:crypto";
import forge from "node-forge";
import { AgentError, errorMessage } from "../shared/errors.js";

// node-forge issues keys and certificates only (Node has no API for that); it never verifies
// anything that decides trust (REFERENCE.md 1). Key generation itself is delegated by node-forge
// to node:crypto's generateKeyPairSync when it runs under Node.

export type Role = "release" | "operator" | "device";
export const ROLES: readonly Role[] = ["release", "operator", "device"];

export interface KeyAndCert {
  /** PKCS#8 PEM, unencrypted: keep it mode 0600. */
  keyPem: string;
  certPem: string;
}

const RSA_BITS = 3072;
const DAY_MS = 86_400_000;
/** Back-dating absorbs clock skew between the issuing laptop and the terminals. */
const BACKDATE_MS = 5 * 60_000;

export interface CreateRootCaOptions {
  cn: string;
  /** Default 3650. */
  validityDays?: number;
  /** ms since the epoch; default Date.now(). notBefore is this minus 5 minutes. */
  now?: number;
}

/** A self-signed root: RSA-3072, SHA-256, CA:true pathlen 1 (one intermediate at most), keyCertSign + cRLSign. */
export function createRootCa(options: CreateRootCaOptions): KeyAndCert {
  const keys = forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  const subject = [{ name: "commonName", value: checkCn(options.cn) }];
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  setValidity(cert, options.now ?? Date.now(), options.validityDays ?? 3650);
  cert.setSubject(subject);
  cert.setIssuer(subject);
  const ski = cert.generateSubjectKeyIdentifier().getBytes();
  cert.setExtensions([
    { name: "basicConstraints", critical: true, cA: true, pathLenConstraint: 1 },
    { name: "keyUsage", critical: true, keyCertSign: true, cRLSign: true },
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: ski },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { keyPem: privateKeyPem(keys.privateKey), certPem: forge.pki.certificateToPem(cert) };
}

export interface IssueLeafOptions {
  ca: KeyAndCert;
  role: Role;
  cn: string;
  /** Default 825; never past the CA's own notAfter. */
  validityDays?: number;
  /** ms since the epoch; default Date.now(). notBefore is this minus 5 minutes. */
  now?: number;
}

/**
 * A leaf under `ca`: RSA-3072, SHA-256, CA:false, digitalSignature, and one extended key usage:
 * release → codeSigning (manifests), operator and device → clientAuth (commands, MQTT TLS).
 */
export function issueLeaf(options: IssueLeafOptions): KeyAndCert {
  const { caKey, caCert } = readCa(options.ca);
  const keys = forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  setValidity(cert, options.now ?? Date.now(), options.validityDays ?? 825);
  if (cert.validity.notAfter > caCert.validity.notAfter) cert.validity.notAfter = caCert.validity.notAfter;
  if (cert.validity.notAfter <= cert.validity.notBefore) {
    throw new AgentError("BAD_REQUEST", "the CA certificate has expired; no leaf can be issued under it");
  }
  cert.setSubject([{ name: "commonName", value: checkCn(options.cn) }]);
  cert.setIssuer(caCert.subject.attributes);
  const caSki = caCert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | null;
  const authorityKeyId =
    caSki?.subjectKeyIdentifier !== undefined
      ? forge.util.hexToBytes(caSki.subjectKeyIdentifier)
      : caCert.generateSubjectKeyIdentifier().getBytes();
  cert.setExtensions([
    { name: "basicConstraints", critical: true, cA: false },
    { name: "keyUsage", critical: true, digitalSignature: true },
    options.role === "release"
      ? { name: "extKeyUsage", codeSigning: true }
      : { name: "extKeyUsage", clientAuth: true },
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: authorityKeyId },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { keyPem: privateKeyPem(keys.privateKey), certPem: forge.pki.certificateToPem(cert) };
}

function readCa(ca: KeyAndCert): { caKey: forge.pki.rsa.PrivateKey; caCert: forge.pki.Certificate } {
  let caKey: forge.pki.rsa.PrivateKey;
  let caCert: forge.pki.Certificate;
  try {
    caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  } catch (cause) {
    throw new AgentError(
      "BAD_REQUEST",
      `the CA key is not an unencrypted RSA PEM key (${errorMessage(cause)})`,
      {
        cause,
      },
    );
  }
  try {
    caCert = forge.pki.certificateFromPem(ca.certPem);
  } catch (cause) {
    throw new AgentError(
      "BAD_REQUEST",
      `the CA certificate is not an RSA PEM certificate (${errorMessage(cause)})`,
      {
        cause,
      },
    );
  }
  const caPublic = caCert.publicKey as forge.pki.rsa.PublicKey;
  if (
    caPublic.n === undefined ||
    caPublic.n.compareTo(caKey.n) !== 0 ||
    caPublic.e.compareTo(caKey.e) !== 0
  ) {
    throw new AgentError("BAD_REQUEST", "the CA key does not belong to the CA certificate");
  }
  const constraints = caCert.getExtension("basicConstraints") as { cA?: boolean } | null;
  if (constraints?.cA !== true) {
    throw new AgentError(
      "BAD_REQUEST",
      "the CA certificate is not a CA (basicConstraints CA:true is missing)",
    );
  }
  return { caKey, caCert };
}

function checkCn(cn: string): string {
  if (cn.trim().length === 0 || cn.length > 64) {
    throw new AgentError("BAD_REQUEST", "the common name must be 1 to 64 characters");
  }
  return cn;
}

function setValidity(cert: forge.pki.Certificate, now: number, days: number): void {
  if (!Number.isFinite(days) || days <= 0) {
    throw new AgentError("BAD_REQUEST", `the validity must be a positive number of days, not ${days}`);
  }
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(now + days * DAY_MS);
}

/** 16 random bytes, positive and minimally encoded in DER (first byte 0x01..0x7f). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f || 0x01;
  return bytes.toString("hex");
}

function privateKeyPem(key: forge.pki.rsa.PrivateKey): string {
  return forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key)));
}
