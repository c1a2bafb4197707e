import { describe, expect, it } from "vitest";
import {
  Envelope,
  fromBase64,
  fromBase64url,
  splitPemCertificates,
  toBase64url,
} from "../../../src/pki/envelope.js";

describe("base64url helpers", () => {
  it("round-trips bytes when they are encoded and decoded", () => {
    const bytes = Buffer.from([0, 251, 255, 62, 63, 1]);
    const text = toBase64url(bytes);
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(fromBase64url(text)?.equals(bytes)).toBe(true);
    expect(fromBase64url("")?.length).toBe(0);
  });

  it("refuses base64url when it has padding, foreign characters or non-canonical trailing bits", () => {
    expect(fromBase64url("AA==")).toBeUndefined();
    expect(fromBase64url("A+B/")).toBeUndefined();
    expect(fromBase64url("AB C")).toBeUndefined();
    expect(fromBase64url("A")).toBeUndefined();
    // "AB" and "AC" decode to the same byte in lenient decoders; only "AA" is canonical for 0x00.
    expect(fromBase64url("AA")).toBeDefined();
    expect(fromBase64url("AB")).toBeUndefined();
  });

  it("refuses standard base64 when it is unpadded, url-safe or empty", () => {
    expect(fromBase64("AAAA")?.length).toBe(3);
    expect(fromBase64("AA==")?.length).toBe(1);
    expect(fromBase64("AA")).toBeUndefined();
    expect(fromBase64("A-_A")).toBeUndefined();
    expect(fromBase64("")).toBeUndefined();
  });
});

describe("Envelope schema", () => {
  it("accepts the General JSON shape when it has one to sixteen signatures", () => {
    const signature = { protected: "e30", signature: "AA", header: { kid: "x" } };
    expect(Envelope.safeParse({ payload: "e30", signatures: [signature] }).success).toBe(true);
    expect(Envelope.safeParse({ payload: "e30", signatures: [] }).success).toBe(false);
    expect(Envelope.safeParse({ payload: "e30", signatures: Array(17).fill(signature) }).success).toBe(false);
    expect(Envelope.safeParse({ payload: 1, signatures: [signature] }).success).toBe(false);
  });
});

describe("splitPemCertificates", () => {
  it("finds every certificate when a bundle holds several and other blocks", () => {
    const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    const key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
    expect(splitPemCertificates(`${cert}\n${key}\n${cert}\n`)).toEqual([cert, cert]);
    expect(splitPemCertificates("nothing")).toEqual([]);
  });
});
