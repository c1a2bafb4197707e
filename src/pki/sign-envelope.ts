import { constants, createPrivateKey, type KeyObject, sign, X509Certificate } from "node:crypto";
import { AgentError } from "../shared/errors.js";
import {
  type Alg,
  algFitsKey,
  Envelope,
  type EnvelopeType,
  fromBase64url,
  ProtectedHeader,
  splitPemCertificates,
  toBase64url,
} from "./envelope.js";

export interface SignEnvelopeOptions {
  /** An object is serialised with JSON.stringify; a Buffer is signed as it is. */
  payload: Buffer | object;
  typ: EnvelopeType;
  keyPem: string;
  /** Leaf first, then intermediates; the root is not needed (verifiers hold it). */
  chainPem: string[];
  /** Default by key type: RSA → PS256, EC P-256 → ES256, Ed25519 → EdDSA. */
  alg?: Alg;
  /** Adds a signature to this envelope; its payload must be the same bytes. */
  existing?: Envelope;
}

/** Signs a payload into a JWS General JSON envelope (CONTRACT.md 7). Throws AgentError BAD_REQUEST on misuse. */
export function signEnvelope(options: SignEnvelopeOptions): Envelope {
  const payloadBytes = Buffer.isBuffer(options.payload)
    ? options.payload
    : Buffer.from(JSON.stringify(options.payload), "utf8");
  const payload = toBase64url(payloadBytes);
  if (options.existing !== undefined) checkExisting(options.existing, payloadBytes, options.typ);

  const key = readPrivateKey(options.keyPem);
  const certs = options.chainPem.flatMap(splitPemCertificates).map(readCertificate);
  const leaf = certs[0];
  if (leaf === undefined) throw new AgentError("BAD_REQUEST", "the certificate chain holds no certificate");
  if (!leaf.checkPrivateKey(key)) {
    throw new AgentError("BAD_REQUEST", `the private key does not match the certificate "${leaf.subject}"`);
  }
  const alg = options.alg ?? defaultAlg(key);
  checkAlgFitsKey(alg, key);

  const header = {
    alg,
    typ: options.typ,
    x5c: certs.map((cert) => cert.raw.toString("base64")),
  };
  const protectedB64 = toBase64url(JSON.stringify(header));
  const signature = signInput(alg, Buffer.from(`${protectedB64}.${payload}`, "ascii"), key);
  const entry = { protected: protectedB64, signature: toBase64url(signature) };
  return {
    payload,
    signatures: [...(options.existing?.signatures ?? []), entry],
  };
}

function checkExisting(existing: Envelope, payloadBytes: Buffer, typ: EnvelopeType): void {
  const parsed = Envelope.safeParse(existing);
  if (!parsed.success) throw new AgentError("BAD_REQUEST", "the existing envelope is malformed");
  const existingBytes = fromBase64url(existing.payload);
  if (existingBytes === undefined || !existingBytes.equals(payloadBytes)) {
    throw new AgentError("BAD_REQUEST", "the payload differs from the existing envelope's payload");
  }
  if (existing.signatures.length >= 16) {
    throw new AgentError(
      "BAD_REQUEST",
      "the existing envelope already holds 16 signatures, the most allowed",
    );
  }
  // Mixing types in one envelope would make each verifier see a different count of signers.
  for (const signature of existing.signatures) {
    const bytes = fromBase64url(signature.protected);
    const header = bytes === undefined ? undefined : safeJson(bytes.toString("utf8"));
    const parsedHeader = ProtectedHeader.safeParse(header);
    if (!parsedHeader.success) {
      throw new AgentError("BAD_REQUEST", "a protected header of the existing envelope is malformed");
    }
    if (parsedHeader.data.typ !== typ) {
      throw new AgentError(
        "BAD_REQUEST",
        `the existing envelope is signed as "${String(parsedHeader.data.typ)}", not "${typ}"`,
      );
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function readPrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (cause) {
    throw new AgentError("BAD_REQUEST", "the private key is not a readable unencrypted PEM key", { cause });
  }
}

function readCertificate(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (cause) {
    throw new AgentError("BAD_REQUEST", "a certificate in the chain is not a readable PEM certificate", {
      cause,
    });
  }
}

function defaultAlg(key: KeyObject): Alg {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return "PS256";
    case "ec":
      return "ES256";
    case "ed25519":
      return "EdDSA";
    default:
      throw new AgentError(
        "BAD_REQUEST",
        `keys of type "${String(key.asymmetricKeyType)}" cannot sign envelopes`,
      );
  }
}

function checkAlgFitsKey(alg: Alg, key: KeyObject): void {
  if (!algFitsKey(alg, key)) {
    throw new AgentError(
      "BAD_REQUEST",
      `${alg} cannot be used with this ${String(key.asymmetricKeyType)} key`,
    );
  }
}

function signInput(alg: Alg, data: Buffer, key: KeyObject): Buffer {
  switch (alg) {
    case "PS256":
      // RFC 7518 3.5: the salt is as long as the hash.
      return sign("sha256", data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    case "RS256":
      return sign("sha256", data, { key, padding: constants.RSA_PKCS1_PADDING });
    case "ES256":
      // RFC 7518 3.4: JWS wants raw r||s, not the DER that OpenSSL makes by default.
      return sign("sha256", data, { key, dsaEncoding: "ieee-p1363" });
    case "EdDSA":
      return sign(null, data, key);
  }
}
