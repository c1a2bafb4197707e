import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestCa {
  dir: string;
  cert: string;
  key: string;
  /** Issues a leaf signed by this CA; returns the cert and key paths. */
  issue(
    name: string,
    options: { cn: string; san?: string; clientAuth?: boolean },
  ): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A throwaway CA made with the openssl CLI (P-256 keys: fast), for TLS tests against a real broker. */
export function createTestCa(dir: string, cn: string): TestCa {
  mkdirSync(dir, { recursive: true });
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    ["req", "-x509", ...ecKey, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${cn}`],
    dir,
  );
  return {
    dir,
    cert: join(dir, "ca.pem"),
    key: join(dir, "ca.key"),
    issue(name, options) {
      const ext = [
        "basicConstraints=critical,CA:FALSE",
        `extendedKeyUsage=${options.clientAuth ? "clientAuth" : "serverAuth"}`,
        ...(options.san ? [`subjectAltName=${options.san}`] : []),
      ].join("\n");
      writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
      openssl(
        ["req", ...ecKey, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${options.cn}`],
        dir,
      );
      openssl(
        [
          "x509",
          "-req",
          "-in",
          `${name}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-out",
          `${name}.pem`,
          "-days",
          "2",
          "-extfile",
          `${name}.ext`,
        ],
        dir,
      );
      return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
    },
  };
}
