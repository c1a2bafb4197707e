import { constants, createHash, type KeyObject, verify, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { AgentError, type ErrorCode, errorMessage, isAgentError } from "../shared/errors.js";
import { err, ok, type Result } from "../shared/result.js";
import {
  type Alg,
  algFitsKey,
  Envelope,
  type EnvelopeSignature,
  type EnvelopeType,
  fromBase64,
  fromBase64url,
  isAlg,
  ProtectedHeader,
  splitPemCertificates,
} from "./envelope.js";

// Everything here is node:crypto (OpenSSL). node-forge has had signature-forgery CVEs
// (REFERENCE.md 1) and never decides trust.

const CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
/** Leaf plus intermediates plus, optionally, the root: our roots allow one intermediate (pathlen 1). */
const MAX_CHAIN = 4;
const MIN_RSA_BITS = 2048;

export interface VerifiedSigner {
  /** The leaf's subject, e.g. "CN=alice". */
  subject: string;
  /** SHA-256 of the leaf's SubjectPublicKeyInfo (DER), "AB:CD:…": one key is one signer, whatever its certificates. */
  fingerprint256: string;
  alg: Alg;
  /** The leaf's notAfter, ms since the epoch. */
  notAfter: number;
}

export interface VerifyOptions {
  typ: EnvelopeType;
  /** PEM certificates (a string may hold several); the chain must end at one of them. */
  rootsPem: string[];
  /** Distinct valid signers needed; below 1 counts as 1 (an envelope is never accepted unsigned). */
  threshold: number;
  /** ms since the epoch; every certificate of a chain must be valid at this instant. */
  now: number;
  /**
   * Implied by typ: commands need a leaf with the clientAuth extended key usage and without
   * codeSigning (a release key never authorises a command); manifests need codeSigning.
   */
}

export interface VerifiedEnvelope {
  /** The payload parsed as JSON. */
  payload: unknown;
  payloadBytes: Buffer;
  /** Distinct valid signers, in signature order. */
  signers: VerifiedSigner[];
}

/**
 * Verifies a JWS envelope (CONTRACT.md 7). Codes: BAD_REQUEST (malformed envelope, base64 or JSON),
 * SIGNATURE_INVALID (typ mismatch, alg not allowed or not fitting the key, `crit`, bad signature),
 * UNTRUSTED_SIGNER (no x5c, broken chain, no configured root, wrong key usage), EXPIRED (a certificate
 * expired or not yet valid at `now`), THRESHOLD_NOT_MET (some but too few distinct valid signers).
 * When no signature is valid the first signature's failure is returned.
 */
export function verifyEnvelope(
  envelope: unknown,
  options: VerifyOptions,
): Result<VerifiedEnvelope, AgentError> {
  try {
    return ok(verifyOrThrow(envelope, options));
  } catch (error) {
    if (isAgentError(error)) return err(error);
    return err(
      new AgentError("INTERNAL", `envelope verification failed: ${errorMessage(error)}`, { cause: error }),
    );
  }
}

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new AgentError(code, message, cause === undefined ? {} : { cause });
}

function verifyOrThrow(envelope: unknown, options: VerifyOptions): VerifiedEnvelope {
  const parsed = Envelope.safeParse(envelope);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail("BAD_REQUEST", `malformed envelope: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`);
  }
  const payloadBytes = fromBase64url(parsed.data.payload);
  if (payloadBytes === undefined) fail("BAD_REQUEST", "malformed envelope: payload is not base64url");
  let payload: unknown;
  try {
    payload = JSON.parse(payloadBytes.toString("utf8"));
  } catch (cause) {
    fail("BAD_REQUEST", "malformed envelope: payload is not JSON", cause);
  }

  const roots = readRoots(options.rootsPem);
  const signers = new Map<string, VerifiedSigner>();
  const failures: AgentError[] = [];
  parsed.data.signatures.forEach((signature, index) => {
    try {
      const signer = checkSignature(signature, parsed.data.payload, options, roots);
      if (!signers.has(signer.fingerprint256)) signers.set(signer.fingerprint256, signer);
    } catch (error) {
      const cause = isAgentError(error)
        ? error
        : new AgentError("INTERNAL", errorMessage(error), { cause: error });
      failures.push(new AgentError(cause.code, `signature ${index + 1}: ${cause.message}`, { cause }));
    }
  });

  const threshold = Math.max(1, Math.ceil(options.threshold));
  if (signers.size >= threshold) return { payload, payloadBytes, signers: [...signers.values()] };
  const first = failures[0];
  if (signers.size === 0 && first !== undefined) throw first;
  const reasons = failures.map((failure) => `${failure.message} (${failure.code})`).join("; ");
  fail(
    "THRESHOLD_NOT_MET",
    `${threshold} distinct valid signers needed, ${signers.size} found${reasons ? `; ${reasons}` : ""}`,
  );
}

function readRoots(rootsPem: string[]): X509Certificate[] {
  return rootsPem.flatMap(splitPemCertificates).map((pem) => {
    try {
      return new X509Certificate(pem);
    } catch (cause) {
      return fail("INTERNAL", "a configured trust root is not a readable certificate", cause);
    }
  });
}

function checkSignature(
  signature: EnvelopeSignature,
  payloadB64: string,
  options: VerifyOptions,
  roots: X509Certificate[],
): VerifiedSigner {
  const headerBytes = fromBase64url(signature.protected);
  if (headerBytes === undefined) fail("BAD_REQUEST", "the protected header is not base64url");
  let headerJson: unknown;
  try {
    headerJson = JSON.parse(headerBytes.toString("utf8"));
  } catch (cause) {
    fail("BAD_REQUEST", "the protected header is not JSON", cause);
  }
  const header = ProtectedHeader.safeParse(headerJson);
  if (!header.success) fail("BAD_REQUEST", "the protected header lacks a string alg or has a malformed x5c");
  const { alg, typ, x5c, crit } = header.data;
  if (crit !== undefined) fail("SIGNATURE_INVALID", "the protected header names critical extensions (crit)");
  if (typ !== options.typ) {
    fail("SIGNATURE_INVALID", `signed as typ "${String(typ)}", but "${options.typ}" is required`);
  }
  if (!isAlg(alg)) fail("SIGNATURE_INVALID", `alg "${alg}" is not allowed`);
  if (x5c === undefined || x5c.length === 0) fail("UNTRUSTED_SIGNER", "no x5c certificate chain");
  if (x5c.length > MAX_CHAIN) fail("UNTRUSTED_SIGNER", `x5c holds more than ${MAX_CHAIN} certificates`);
  const chain = x5c.map((entry, index) => readX5c(entry, index));
  const leaf = chain[0] as X509Certificate;

  if (!algFitsKey(alg, leaf.publicKey)) {
    fail(
      "SIGNATURE_INVALID",
      `${alg} does not fit the ${String(leaf.publicKey.asymmetricKeyType)} key of "${leaf.subject}"`,
    );
  }
  const signatureBytes = fromBase64url(signature.signature);
  if (signatureBytes === undefined) fail("BAD_REQUEST", "the signature is not base64url");
  const input = Buffer.from(`${signature.protected}.${payloadB64}`, "ascii");
  if (!verifyInput(alg, input, leaf.publicKey, signatureBytes)) {
    fail("SIGNATURE_INVALID", `the signature of "${leaf.subject}" does not verify`);
  }

  checkChain(chain, roots, options.now);
  checkLeafUse(leaf, options.typ);
  return {
    subject: leaf.subject,
    fingerprint256: keyFingerprint(leaf.publicKey),
    alg,
    notAfter: Date.parse(leaf.validTo),
  };
}

function readX5c(entry: string, index: number): X509Certificate {
  const der = fromBase64(entry);
  if (der === undefined) fail("BAD_REQUEST", `x5c[${index}] is not base64`);
  try {
    return new X509Certificate(der);
  } catch (cause) {
    return fail("BAD_REQUEST", `x5c[${index}] is not a DER certificate`, cause);
  }
}

function verifyInput(alg: Alg, input: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    switch (alg) {
      case "PS256":
        return verify(
          "sha256",
          input,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
          signature,
        );
      case "RS256":
        return verify("sha256", input, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
      case "ES256":
        return (
          signature.length === 64 && verify("sha256", input, { key, dsaEncoding: "ieee-p1363" }, signature)
        );
      case "EdDSA":
        return verify(null, input, key, signature);
    }
  } catch {
    return false;
  }
}

/**
 * Each certificate must be issued and signed by the next, and the last by a configured root; when
 * the chain carries the root itself, its last certificate is self-issued and the same walk ends it.
 * Every certificate walked, and the configured root, must be valid at `now`; not yet valid is
 * EXPIRED too (one code for "outside its validity period").
 */
function checkChain(chain: X509Certificate[], roots: X509Certificate[], now: number): void {
  for (let index = 0; index < chain.length; index += 1) {
    const cert = chain[index] as X509Certificate;
    checkTime(cert, now);
    const issuer = chain[index + 1];
    if (issuer === undefined) {
      const root = roots.find((candidate) => issuedBy(cert, candidate));
      if (root === undefined) fail("UNTRUSTED_SIGNER", `"${cert.issuer}" is not a trusted root`);
      checkTime(root, now);
      return;
    }
    if (!issuer.ca) fail("UNTRUSTED_SIGNER", `"${issuer.subject}" in x5c is not a CA certificate`);
    if (!issuedBy(cert, issuer)) {
      fail(
        "UNTRUSTED_SIGNER",
        `"${cert.subject}" is not issued by the next x5c certificate "${issuer.subject}"`,
      );
    }
  }
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function checkTime(cert: X509Certificate, now: number): void {
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!(now >= notBefore))
    fail("EXPIRED", `certificate "${cert.subject}" is not valid before ${cert.validFrom}`);
  if (!(now <= notAfter)) fail("EXPIRED", `certificate "${cert.subject}" expired at ${cert.validTo}`);
}

function checkLeafUse(leaf: X509Certificate, typ: EnvelopeType): void {
  if (leaf.ca) fail("UNTRUSTED_SIGNER", `"${leaf.subject}" is a CA certificate, not a signing leaf`);
  const key = leaf.publicKey;
  if (key.asymmetricKeyType === "rsa" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    fail("UNTRUSTED_SIGNER", `"${leaf.subject}" has an RSA key shorter than ${MIN_RSA_BITS} bits`);
  }
  // Node names the extended key usages `keyUsage` (OIDs); undefined when the extension is absent.
  const usages = leaf.keyUsage ?? [];
  if (typ === "pos-manifest+json" && !usages.includes(CODE_SIGNING)) {
    fail("UNTRUSTED_SIGNER", `"${leaf.subject}" lacks the codeSigning extended key usage a release needs`);
  }
  if (typ === "pos-command+json") {
    if (!usages.includes(CLIENT_AUTH)) {
      fail("UNTRUSTED_SIGNER", `"${leaf.subject}" lacks the clientAuth extended key usage a command needs`);
    }
    if (usages.includes(CODE_SIGNING)) {
      fail(
        "UNTRUSTED_SIGNER",
        `"${leaf.subject}" is a code-signing (release) certificate; it cannot sign commands`,
      );
    }
  }
}

function keyFingerprint(key: KeyObject): string {
  const digest = createHash("sha256")
    .update(key.export({ type: "spki", format: "der" }))
    .digest("hex");
  return (digest.toUpperCase().match(/../g) ?? []).join(":");
}

/** Reads PEM trust-root files (each may hold several certificates); throws BAD_REQUEST naming the file. */
export function loadRootsPem(files: string[]): string[] {
  return files.flatMap((file) => {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (cause) {
      return fail("BAD_REQUEST", `${file}: cannot read the trust root file (${errorMessage(cause)})`, cause);
    }
    const pems = splitPemCertificates(text);
    if (pems.length === 0) fail("BAD_REQUEST", `${file}: holds no PEM certificate`);
    return pems.map((pem, index) => {
      try {
        new X509Certificate(pem);
        return pem;
      } catch (cause) {
        return fail("BAD_REQUEST", `${file}: certificate ${index + 1} is not readable`, cause);
      }
    });
  });
}
