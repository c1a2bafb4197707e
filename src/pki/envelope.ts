import type { KeyObject } from "node:crypto";
import { z } from "zod";

/**
 * The signed envelope of CONTRACT.md section 7: JWS (RFC 7515) General JSON Serialization.
 * Only the protected header is trusted; an unprotected `header` is carried but never read.
 * At most 16 signatures: each costs a chain walk and a public-key operation, and no threshold needs more.
 */
export const Envelope = z.object({
  payload: z.string(),
  signatures: z
    .array(
      z.object({
        protected: z.string(),
        signature: z.string(),
        header: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .min(1)
    .max(16),
});
export type Envelope = z.infer<typeof Envelope>;

export type EnvelopeSignature = Envelope["signatures"][number];

export const ENVELOPE_TYPES = ["pos-command+json", "pos-manifest+json"] as const;
export type EnvelopeType = (typeof ENVELOPE_TYPES)[number];

export const ALGS = ["PS256", "RS256", "ES256", "EdDSA"] as const;
export type Alg = (typeof ALGS)[number];

export function isAlg(value: unknown): value is Alg {
  return (ALGS as readonly unknown[]).includes(value);
}

/** Which key each JWS algorithm takes (RFC 7518 3, RFC 8037); shared with verification. */
export function algFitsKey(alg: Alg, key: KeyObject): boolean {
  switch (alg) {
    case "PS256":
    case "RS256":
      return key.asymmetricKeyType === "rsa";
    case "ES256":
      return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
    case "EdDSA":
      return key.asymmetricKeyType === "ed25519";
  }
}

/**
 * The protected header as we read it: unknown parameters are allowed (RFC 7515 4.1) except `crit`,
 * which names extensions a verifier must understand; we understand none, so verification refuses it.
 */
export const ProtectedHeader = z.looseObject({
  alg: z.string(),
  typ: z.string().optional(),
  x5c: z.array(z.string()).optional(),
  crit: z.unknown().optional(),
});
export type ProtectedHeader = z.infer<typeof ProtectedHeader>;

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function toBase64url(bytes: Buffer | string): string {
  return (typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes).toString("base64url");
}

/**
 * Strict base64url (no padding, canonical): Buffer.from silently skips bad characters and ignores
 * trailing bits, which would let two different strings carry one signature.
 */
export function fromBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? bytes : undefined;
}

/** Strict standard base64 with padding, as x5c carries DER certificates (RFC 7515 4.1.6). */
export function fromBase64(text: string): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0 || !BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, "base64");
  return bytes.toString("base64") === text ? bytes : undefined;
}

/** Every `-----BEGIN CERTIFICATE-----` block in a PEM text (a bundle may hold several). */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
