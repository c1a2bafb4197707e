import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { CheckOutcome } from "../../../src/diagnostics/check.js";
import { certificatesCheck } from "../../../src/diagnostics/checks.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 5, 1);

describe("certificatesCheck", () => {
  let root: KeyAndCert;
  let valid: KeyAndCert;
  let expired: KeyAndCert;
  let soon: KeyAndCert;
  let future: KeyAndCert;

  beforeAll(() => {
    root = createRootCa({ cn: "Diag Root", now: NOW - 1000 * DAY });
    valid = issueLeaf({ ca: root, role: "device", cn: "POS-0001", now: NOW - DAY });
    expired = issueLeaf({ ca: root, role: "device", cn: "POS-old", now: NOW - 900 * DAY, validityDays: 825 });
    soon = issueLeaf({ ca: root, role: "operator", cn: "op", now: NOW - DAY, validityDays: 11 });
    future = createRootCa({ cn: "Tomorrow Root", now: NOW + 2 * DAY });
  });

  function check(files: Array<{ label: string; pem?: string; path?: string }>): Promise<CheckOutcome> {
    const dir = makeTmpDir("diag-certs");
    const written = files.map((f, i) => {
      const path = f.path ?? join(dir, `cert-${i}.pem`);
      if (f.pem !== undefined) writeFileSync(path, f.pem);
      return { label: f.label, path };
    });
    return certificatesCheck({ files: written, now: () => NOW }).run(new AbortController().signal);
  }

  it("passes with a note when no certificate is configured", async () => {
    expect(await certificatesCheck({ files: [], now: () => NOW }).run(new AbortController().signal)).toEqual({
      status: "pass",
      detail: "no certificates configured",
    });
  });

  it("passes valid certificates, a bundle included, and names the first to expire", async () => {
    const outcome = await check([
      { label: "device certificate", pem: valid.certPem },
      { label: "operator root", pem: `${root.certPem}\n${valid.certPem}` },
    ]);
    expect(outcome.status).toBe("pass");
    expect(outcome.detail).toMatch(
      /^3 certificates valid; the first to expire is the device certificate in 824 days \(\d{4}-\d\d-\d\d\)$/,
    );
    expect(outcome.data?.certificates).toHaveLength(3);
  });

  it("fails an expired certificate, saying when it expired", async () => {
    const outcome = await check([
      { label: "device certificate", pem: expired.certPem },
      { label: "operator root", pem: root.certPem },
    ]);
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toMatch(/^device certificate \S+cert-0\.pem: expired on \d{4}-\d\d-\d\d$/);
  });

  it("warns when fewer than 30 days are left", async () => {
    const outcome = await check([{ label: "operator root", pem: soon.certPem }]);
    expect(outcome.status).toBe("warn");
    expect(outcome.detail).toMatch(/: expires in 10 days \(\d{4}-\d\d-\d\d\)$/);
  });

  it("fails a certificate that is not valid yet", async () => {
    const outcome = await check([{ label: "release root", pem: future.certPem }]);
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toMatch(/release root \S+: not valid before /);
  });

  it("fails a missing file, a file without a certificate and a damaged certificate", async () => {
    // Half the body: the DER no longer parses.
    const lines = valid.certPem.trim().split("\n");
    const damaged = [...lines.slice(0, Math.floor(lines.length / 2)), lines.at(-1)].join("\n");
    const outcome = await check([
      { label: "device certificate", path: "/nonexistent/device.pem" },
      { label: "operator root", pem: "not a pem\n" },
      { label: "release root", pem: damaged },
      { label: "broker CA", pem: root.certPem },
    ]);
    expect(outcome.status).toBe("fail");
    const problems = outcome.detail.split("; ");
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^device certificate \/nonexistent\/device\.pem: cannot be read \(ENOENT/);
    expect(problems[1]).toMatch(/^operator root \S+: holds no PEM certificate$/);
    expect(problems[2]).toMatch(/^release root \S+: not a readable certificate/);
  });

  it("takes fail over warn when both are found", async () => {
    const outcome = await check([
      { label: "operator root", pem: soon.certPem },
      { label: "device certificate", pem: expired.certPem },
    ]);
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toContain("expires in 10 days");
    expect(outcome.detail).toContain("expired on");
  });
});
