import { constants, createPrivateKey, sign, X509Certificate } from "node:crypto";
import type { Envelope } from "../../../src/pki/envelope.js";

/** base64 DER of each PEM certificate, as x5c carries them. */
export function x5c(...certPems: string[]): string[] {
  return certPems.map((pem) => new X509Certificate(pem).raw.toString("base64"));
}

export function b64url(value: string | Buffer | object): string {
  if (Buffer.isBuffer(value)) return value.toString("base64url");
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value), "utf8").toString("base64url");
}

/**
 * Builds a one-signature envelope by hand, bypassing signEnvelope, so tests can make headers
 * the signer would refuse to write. `alg` picks the signing scheme; `header` is written as given.
 */
export function handmade(options: {
  header: Record<string, unknown>;
  payload: object | string;
  keyPem: string;
  scheme: "PS256" | "RS256" | "ES256" | "EdDSA";
}): Envelope {
  const protectedB64 = b64url(options.header);
  const payloadB64 = b64url(options.payload);
  const key = createPrivateKey(options.keyPem);
  const input = Buffer.from(`${protectedB64}.${payloadB64}`, "ascii");
  const signature =
    options.scheme === "PS256"
      ? sign("sha256", input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
      : options.scheme === "RS256"
        ? sign("sha256", input, { key, padding: constants.RSA_PKCS1_PADDING })
        : options.scheme === "ES256"
          ? sign("sha256", input, { key, dsaEncoding: "ieee-p1363" })
          : sign(null, input, key);
  return { payload: payloadB64, signatures: [{ protected: protectedB64, signature: b64url(signature) }] };
}

/** Flips one bit of a base64url string's decoded bytes. */
export function flipByte(value: string, index = 10): string {
  const bytes = Buffer.from(value, "base64url");
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  return bytes.toString("base64url");
}
