import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Runs the openssl CLI in `cwd`; returns stdout. */
export function openssl(args: string[], cwd: string, input?: Buffer): Buffer {
  return execFileSync("openssl", args, { cwd, input, stdio: ["pipe", "pipe", "pipe"] });
}

export type KeyType = "rsa" | "rsa1024" | "ec" | "ed25519";

const GENPKEY: Record<KeyType, string[]> = {
  rsa: ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
  rsa1024: ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
  ec: ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
  ed25519: ["-algorithm", "ED25519"],
};

export interface OpensslLeaf {
  keyPath: string;
  certPath: string;
  keyPem: string;
  certPem: string;
}

/** A leaf made entirely by the openssl CLI (key, CSR, certificate) under the CA files given. */
export function opensslLeaf(
  dir: string,
  name: string,
  options: {
    caCert: string;
    caKey: string;
    keyType: KeyType;
    /** extendedKeyUsage value, e.g. "clientAuth" or "clientAuth,codeSigning". */
    eku: string;
    cn: string;
    /** basicConstraints CA:TRUE: a CA certificate presented as a leaf. */
    ca?: boolean;
  },
): OpensslLeaf {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    [
      `basicConstraints=critical,CA:${options.ca ? "TRUE" : "FALSE"}`,
      `keyUsage=critical,digitalSignature${options.ca ? ",keyCertSign" : ""}`,
      `extendedKeyUsage=${options.eku}`,
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid",
      "",
    ].join("\n"),
  );
  openssl(["genpkey", ...GENPKEY[options.keyType], "-out", keyPath], dir);
  openssl(["req", "-new", "-key", keyPath, "-subj", `/CN=${options.cn}`, "-out", `${name}.csr`], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      options.caCert,
      "-CAkey",
      options.caKey,
      "-set_serial",
      `0x${Buffer.from(name).toString("hex").slice(0, 30)}01`,
      "-days",
      "2",
      "-sha256",
      "-extfile",
      ext,
      "-out",
      certPath,
    ],
    dir,
  );
  return {
    keyPath,
    certPath,
    keyPem: readFileSync(keyPath, "utf8"),
    certPem: readFileSync(certPath, "utf8"),
  };
}

/** `openssl dgst -sha256 -sign KEY` over `input`, with extra -sigopt pairs (e.g. PSS padding). */
export function opensslSign(dir: string, keyPath: string, input: Buffer, sigopts: string[] = []): Buffer {
  const file = join(dir, "signing-input.bin");
  writeFileSync(file, input);
  return openssl(
    ["dgst", "-sha256", "-sign", keyPath, ...sigopts.flatMap((opt) => ["-sigopt", opt]), file],
    dir,
  );
}

/** DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs, short lengths for P-256) → the raw 32-byte r ‖ s JWS wants. */
export function derToRaw(der: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 2;
  for (let i = 0; i < 2; i += 1) {
    const length = der[offset + 1] ?? 0;
    const value = der.subarray(offset + 2, offset + 2 + length);
    const trimmed = value.subarray(Math.max(0, value.length - 32));
    parts.push(Buffer.concat([Buffer.alloc(32 - trimmed.length), trimmed]));
    offset += 2 + length;
  }
  return Buffer.concat(parts);
}
