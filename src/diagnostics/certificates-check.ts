import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { splitPemCertificates } from "../pki/envelope.js";
import { errorMessage } from "../shared/errors.js";
import { type CheckStatus, type DiagnosticCheck, worse } from "./check.js";

const DAY_MS = 86_400_000;
export const CERT_WARN_DAYS = 30;

export interface CertificateFile {
  /** What the file is for: "device certificate", "operator root"… */
  label: string;
  path: string;
}

interface CertificateFinding {
  label: string;
  path: string;
  status: CheckStatus;
  problem?: string;
  subject?: string;
  notAfter?: string;
  daysLeft?: number;
}

/**
 * Expiry of every certificate in the given PEM files (a bundle may hold several). Fail: unreadable, no
 * certificate, expired, not yet valid. Warn: less than 30 days left. Pass when no file is configured.
 */
export function certificatesCheck(deps: { files: CertificateFile[]; now(): number }): DiagnosticCheck {
  return {
    name: "certificates",
    async run() {
      if (deps.files.length === 0) return { status: "pass", detail: "no certificates configured" };
      const now = deps.now();
      const findings = deps.files.flatMap((file) => inspect(file, now));
      let status: CheckStatus = "pass";
      for (const f of findings) status = worse(status, f.status);
      const problems = findings
        .filter((f) => f.status !== "pass")
        .map((f) => `${f.label} ${f.path}: ${f.problem}`);
      let detail: string;
      if (problems.length > 0) {
        detail = problems.join("; ");
      } else {
        const first = findings.reduce((a, b) => ((a.daysLeft ?? 0) <= (b.daysLeft ?? 0) ? a : b));
        const count = findings.length;
        detail = `${count} certificate${count === 1 ? "" : "s"} valid; the first to expire is the ${first.label} in ${first.daysLeft} days (${first.notAfter})`;
      }
      return { status, detail, data: { certificates: findings } };
    },
  };
}

function inspect(file: CertificateFile, now: number): CertificateFinding[] {
  const base = { label: file.label, path: file.path };
  let text: string;
  try {
    text = readFileSync(file.path, "utf8");
  } catch (error) {
    return [{ ...base, status: "fail", problem: `cannot be read (${errorMessage(error)})` }];
  }
  const pems = splitPemCertificates(text);
  if (pems.length === 0) return [{ ...base, status: "fail", problem: "holds no PEM certificate" }];
  return pems.map((pem, index) => {
    const which = pems.length === 1 ? "" : `certificate ${index + 1}: `;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (error) {
      return {
        ...base,
        status: "fail",
        problem: `${which}not a readable certificate (${errorMessage(error)})`,
      };
    }
    const notBefore = Date.parse(cert.validFrom);
    const notAfter = Date.parse(cert.validTo);
    const daysLeft = Math.floor((notAfter - now) / DAY_MS);
    const facts = { ...base, subject: cert.subject.replace(/\n/g, ", "), notAfter: iso(notAfter), daysLeft };
    if (notAfter <= now) return { ...facts, status: "fail", problem: `${which}expired on ${iso(notAfter)}` };
    if (notBefore > now)
      return { ...facts, status: "fail", problem: `${which}not valid before ${iso(notBefore)}` };
    if (notAfter - now < CERT_WARN_DAYS * DAY_MS) {
      return { ...facts, status: "warn", problem: `${which}expires in ${daysLeft} days (${iso(notAfter)})` };
    }
    return { ...facts, status: "pass" };
  });
}

function iso(ms: number): string {
  return Number.isNaN(ms) ? "an unreadable date" : new Date(ms).toISOString().slice(0, 10);
}
