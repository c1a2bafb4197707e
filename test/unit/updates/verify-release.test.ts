import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "../../../src/pki/envelope.js";
import { createRootCa, issueLeaf, type KeyAndCert } from "../../../src/pki/issue.js";
import { signEnvelope } from "../../../src/pki/sign-envelope.js";
import type { ErrorCode } from "../../../src/shared/errors.js";
import {
  clockFloor,
  decideRelease,
  type InstalledState,
  type ReleaseContext,
} from "../../../src/updates/verify-release.js";
import { derToRaw, type OpensslLeaf, opensslLeaf, opensslSign } from "../../helpers/openssl-tools.js";
import { suiteResources } from "../../helpers/suite-resources.js";
import { createTestCa } from "../../helpers/test-pki.js";
import { b64url, x5c } from "../pki/jws-tools.js";

const MANIFEST = "pos-manifest+json";
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Manifest times are set from this; contexts read the clock when they are made (openssl certificates start "now"). */
const T0 = Date.now();
const iso = (ms: number) => new Date(ms).toISOString();

const { dir } = suiteResources("verify-release");
let root: KeyAndCert;
let otherRoot: KeyAndCert;
let alice: KeyAndCert;
let bob: KeyAndCert;
let operator: KeyAndCert;
let stranger: KeyAndCert;
/** Valid from ten days on: "not yet valid" at any floor before that. */
let late: KeyAndCert;
let opensslRoot: string;
let opensslEc: OpensslLeaf;
let opensslRsa: OpensslLeaf;

beforeAll(() => {
  // RSA-3072 keys take a while: made once for the file.
  root = createRootCa({ cn: "Release Root" });
  otherRoot = createRootCa({ cn: "Other Root" });
  alice = issueLeaf({ ca: root, role: "release", cn: "alice" });
  bob = issueLeaf({ ca: root, role: "release", cn: "bob" });
  operator = issueLeaf({ ca: root, role: "operator", cn: "carol" });
  stranger = issueLeaf({ ca: otherRoot, role: "release", cn: "mallory" });
  late = issueLeaf({ ca: root, role: "release", cn: "late", now: T0 + 10 * DAY });
  // Root and leaves made by the openssl CLI alone.
  const ca = createTestCa(join(dir, "openssl-ca"), "OpenSSL Release Root");
  opensslRoot = readFileSync(ca.cert, "utf8");
  const files = { caCert: ca.cert, caKey: ca.key, eku: "codeSigning" };
  opensslEc = opensslLeaf(dir, "ossl-ec", { ...files, keyType: "ec", cn: "ossl-ec" });
  opensslRsa = opensslLeaf(dir, "ossl-rsa", { ...files, keyType: "rsa", cn: "ossl-rsa" });
});

function manifest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    component: "pos-app",
    version: "2.4.1",
    securityVersion: 3,
    issuedAt: iso(T0 - HOUR),
    expiresAt: iso(T0 + 30 * DAY),
    compatible: { models: ["A920"], minAgentVersion: "0.1.0" },
    artifact: {
      url: "https://updates.example/pos-app-2.4.1.tar.gz",
      size: 1024,
      sha256: "a".repeat(64),
      compression: "gzip",
      type: "full",
    },
    files: [{ path: "bin/app.js", size: 2048, sha256: "b".repeat(64), mode: "0755" }],
    ...overrides,
  };
}

function installed(state: Record<string, { version?: string; floor?: number }>): InstalledState {
  return {
    installedVersion: (component) => state[component]?.version,
    securityFloor: (component) => state[component]?.floor ?? 0,
  };
}

function context(extra: Partial<ReleaseContext> = {}): ReleaseContext {
  return {
    releaseRootsPem: [root.certPem],
    threshold: 1,
    now: Date.now(),
    clockTrusted: true,
    clockFloor: T0 - DAY,
    model: "A920",
    agentVersion: "0.1.0",
    installed: installed({ "pos-app": { version: "2.4.0", floor: 2 } }),
    ...extra,
  };
}

function sign(signer: KeyAndCert | OpensslLeaf, payload: object, existing?: Envelope): Envelope {
  return signEnvelope({
    payload,
    typ: MANIFEST,
    keyPem: signer.keyPem,
    chainPem: [signer.certPem],
    ...(existing === undefined ? {} : { existing }),
  });
}

/** `openssl dgst -sha256 -sign` over the JWS signing input: the release made without our signer. */
function opensslSigned(leaf: OpensslLeaf, alg: "RS256" | "ES256", payload: object): Envelope {
  const protectedB64 = b64url({ alg, typ: MANIFEST, x5c: x5c(leaf.certPem) });
  const payloadB64 = b64url(payload);
  const der = opensslSign(dir, leaf.keyPath, Buffer.from(`${protectedB64}.${payloadB64}`, "ascii"));
  const signature = alg === "ES256" ? derToRaw(der) : der;
  return { payload: payloadB64, signatures: [{ protected: protectedB64, signature: b64url(signature) }] };
}

/** The payload with one byte changed after signing: "2.4.1" becomes "3.4.1". */
function tampered(envelope: Envelope): Envelope {
  const bytes = Buffer.from(envelope.payload, "base64url");
  const at = bytes.indexOf('"version":"2.4.1"') + '"version":"'.length;
  bytes[at] = (bytes[at] ?? 0) ^ 0x01;
  return { ...envelope, payload: bytes.toString("base64url") };
}

function refusal(envelope: unknown, ctx: ReleaseContext): { code: ErrorCode; message: string } {
  const result = decideRelease(envelope, ctx);
  if (result.ok)
    throw new Error(`accepted ${result.value.manifest.component} ${result.value.manifest.version}`);
  return { code: result.error.code, message: result.error.message };
}

interface AttackRow {
  name: string;
  envelope: () => unknown;
  context?: () => Partial<ReleaseContext>;
  code: ErrorCode;
  message: RegExp;
}

const attacks: AttackRow[] = [
  {
    name: "a payload byte flipped after signing",
    envelope: () => tampered(sign(alice, manifest())),
    code: "SIGNATURE_INVALID",
    message: /does not verify/,
  },
  {
    name: "a signer whose chain ends at an untrusted root",
    envelope: () => sign(stranger, manifest()),
    code: "UNTRUSTED_SIGNER",
    message: /"CN=Other Root" is not a trusted root/,
  },
  {
    name: "an operator (clientAuth) leaf signing a manifest",
    envelope: () => sign(operator, manifest()),
    code: "UNTRUSTED_SIGNER",
    message: /lacks the codeSigning extended key usage/,
  },
  {
    name: "one signer when the threshold is 2",
    envelope: () => sign(alice, manifest()),
    context: () => ({ threshold: 2 }),
    code: "THRESHOLD_NOT_MET",
    message: /2 distinct valid signers needed, 1 found/,
  },
  {
    name: "the same key signing twice when the threshold is 2",
    envelope: () => sign(alice, manifest(), sign(alice, manifest())),
    context: () => ({ threshold: 2 }),
    code: "THRESHOLD_NOT_MET",
    message: /2 distinct valid signers needed, 1 found/,
  },
  {
    name: "a manifest whose expiresAt is past",
    envelope: () => sign(alice, manifest({ issuedAt: iso(T0 - 10 * DAY), expiresAt: iso(T0 - DAY) })),
    code: "EXPIRED",
    message: /^expiresAt \S+ is not after the agent's time /,
  },
  {
    name: "a valid manifest while the clock reads 1970 (untrusted)",
    envelope: () => sign(alice, manifest()),
    // The floor (a last trusted time a minute ago) lies within the certificates' validity.
    context: () => ({
      now: 0,
      clockTrusted: false,
      clockReason: "wall clock 1970-01-01T00:00:00.000Z is before the agent's build time",
      clockFloor: Date.now() - MINUTE,
    }),
    code: "DEFERRED",
    message:
      /^clock\.untrusted: wall clock 1970-01-01T00:00:00\.000Z is before .*pos-app 2\.4\.1 is authentic/,
  },
  {
    name: "a leaf issued after the build while the clock is untrusted (not refused for good)",
    envelope: () => sign(alice, manifest()),
    context: () => ({ now: 0, clockTrusted: false, clockFloor: T0 - 30 * DAY }),
    code: "DEFERRED",
    message: /^clock\.untrusted: .*certificate validity cannot be judged/,
  },
  {
    name: "two signers, one not yet valid at the floor, while the clock is untrusted",
    envelope: () => sign(late, manifest(), sign(alice, manifest())),
    context: () => ({ now: 0, clockTrusted: false, clockFloor: Date.now() - MINUTE, threshold: 2 }),
    code: "DEFERRED",
    message:
      /^clock\.untrusted: .*certificate validity cannot be judged .*2 distinct valid signers needed, 1 found/,
  },
  {
    name: "an expired manifest on a clock set back before expiresAt, the floor being after it",
    envelope: () => sign(alice, manifest({ expiresAt: iso(T0 + DAY) })),
    context: () => ({ now: Date.now(), clockFloor: T0 + 2 * DAY }),
    code: "EXPIRED",
    message: /^expiresAt \S+ is not after the agent's time \S+ \(its clock floor\)$/,
  },
  {
    name: "a manifest issued a day ahead of the agent's time",
    envelope: () => sign(alice, manifest({ issuedAt: iso(T0 + DAY) })),
    code: "EXPIRED",
    message: /^issuedAt \S+ is later than the agent's time \S+: not yet valid$/,
  },
  {
    name: "a model the manifest does not list",
    envelope: () => sign(alice, manifest()),
    context: () => ({ model: "A80" }),
    code: "INCOMPATIBLE",
    message: /^compatible\.models \["A920"\] does not include this terminal's model "A80"$/,
  },
  {
    name: "an agent older than minAgentVersion",
    envelope: () => sign(alice, manifest({ compatible: { minAgentVersion: "0.2.0" } })),
    code: "INCOMPATIBLE",
    message: /^compatible\.minAgentVersion 0\.2\.0 is newer than this agent's version 0\.1\.0$/,
  },
  {
    name: "an older version than installed",
    envelope: () => sign(alice, manifest({ version: "2.3.9" })),
    code: "DOWNGRADE",
    message: /^version 2\.3\.9 is not newer than installed 2\.4\.0$/,
  },
  {
    name: "the installed version again",
    envelope: () => sign(alice, manifest({ version: "2.4.0" })),
    code: "DOWNGRADE",
    message: /^version 2\.4\.0 is not newer than installed 2\.4\.0$/,
  },
  {
    name: "a securityVersion below the stored floor",
    envelope: () => sign(alice, manifest({ securityVersion: 1 })),
    code: "DOWNGRADE",
    message: /^securityVersion 1 is below the security floor 2 of pos-app$/,
  },
  {
    name: "a delta against a base that is not installed",
    envelope: () =>
      sign(
        alice,
        manifest({ artifact: { ...(manifest().artifact as object), type: "delta", base: "2.3.0" } }),
      ),
    code: "INCOMPATIBLE",
    message: /^artifact\.base 2\.3\.0 of a delta is not the installed version 2\.4\.0$/,
  },
  {
    name: "a delta when nothing is installed",
    envelope: () =>
      sign(
        alice,
        manifest({ artifact: { ...(manifest().artifact as object), type: "delta", base: "2.4.0" } }),
      ),
    context: () => ({ installed: installed({}) }),
    code: "INCOMPATIBLE",
    message: /is not the installed version \(none installed\)$/,
  },
  {
    name: "a file path with ..",
    envelope: () =>
      sign(
        alice,
        manifest({
          files: [{ path: "bin/../../etc/passwd", size: 1, sha256: "c".repeat(64), mode: "0644" }],
        }),
      ),
    code: "BAD_PATH",
    message: /^manifest: files\.0\.path: path contains "\.\."$/,
  },
  {
    name: "an absolute file path",
    envelope: () =>
      sign(
        alice,
        manifest({ files: [{ path: "/etc/passwd", size: 1, sha256: "c".repeat(64), mode: "0644" }] }),
      ),
    code: "BAD_PATH",
    message: /files\.0\.path: path is absolute/,
  },
  {
    name: 'a component named ".."',
    envelope: () => sign(alice, manifest({ component: ".." })),
    code: "BAD_PATH",
    message: /^manifest: component: must not be "\." or "\.\."/,
  },
  {
    name: "a manifest missing its version and with an unknown field",
    envelope: () => sign(alice, { ...manifest({ version: undefined }), color: "red" }),
    code: "BAD_REQUEST",
    message: /^manifest: .*version: .*\(root\): .*color/,
  },
  {
    name: "an installed state that cannot be read",
    envelope: () => sign(alice, manifest()),
    context: () => ({
      installed: {
        installedVersion: () => {
          throw new Error("permission denied");
        },
        securityFloor: () => 0,
      },
    }),
    code: "INTERNAL",
    message: /^cannot read the installed state of pos-app: permission denied$/,
  },
];

describe("decideRelease refuses each attack with its code", () => {
  it.each(attacks)("refuses $name with $code", (row) => {
    const { code, message } = refusal(row.envelope(), context(row.context?.() ?? {}));
    expect(`${code}: ${message}`).toMatch(new RegExp(`^${row.code}: `));
    expect(message).toMatch(row.message);
  });

  it("refuses an untrusted clock as retryable, so the update is tried again once the clock is trusted", () => {
    const result = decideRelease(
      sign(alice, manifest()),
      context({ now: 0, clockTrusted: false, clockFloor: Date.now() - MINUTE }),
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.retryable).toBe(true);
    expect(result.error.message).toMatch(/^clock\.untrusted: the wall clock is not trusted;/);
  });

  it("refuses an unauthenticated payload before reading it, even with an untrusted clock", () => {
    const forged = tampered(sign(alice, manifest({ component: ".." })));
    expect(refusal(forged, context({ now: 0, clockTrusted: false })).code).toBe("SIGNATURE_INVALID");
  });

  it("puts the field and both values in the details", () => {
    const result = decideRelease(sign(alice, manifest({ version: "2.3.9" })), context());
    expect(!result.ok && result.error.details).toEqual({
      field: "version",
      value: "2.3.9",
      installedVersion: "2.4.0",
    });
  });
});

describe("decideRelease accepts", () => {
  it("accepts a newer release from one trusted signer and returns manifest, signer and bytes", () => {
    const envelope = sign(alice, manifest());
    const result = decideRelease(envelope, context());
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.manifest).toMatchObject({
      component: "pos-app",
      version: "2.4.1",
      securityVersion: 3,
    });
    expect(result.value.signers.map((signer) => signer.subject)).toEqual(["CN=alice"]);
    expect(result.value.payloadBytes.equals(Buffer.from(envelope.payload, "base64url"))).toBe(true);
    expect(result.value).toMatchObject({ installedVersion: "2.4.0", securityFloor: 2 });
  });

  it("accepts two distinct signers when the threshold is 2", () => {
    const envelope = sign(bob, manifest(), sign(alice, manifest()));
    const result = decideRelease(envelope, context({ threshold: 2 }));
    expect(result.ok && result.value.signers.map((signer) => signer.subject)).toEqual(["CN=alice", "CN=bob"]);
  });

  it("accepts ES256 made by openssl dgst -sha256 -sign (DER converted to r‖s) under an openssl root", () => {
    const envelope = opensslSigned(opensslEc, "ES256", manifest());
    const result = decideRelease(envelope, context({ releaseRootsPem: [opensslRoot] }));
    expect(result.ok && result.value.signers[0]).toMatchObject({ subject: "CN=ossl-ec", alg: "ES256" });
  });

  it("accepts RS256 made by openssl dgst -sha256 -sign under an openssl root", () => {
    const envelope = opensslSigned(opensslRsa, "RS256", manifest());
    const result = decideRelease(envelope, context({ releaseRootsPem: [opensslRoot] }));
    expect(result.ok && result.value.signers[0]).toMatchObject({ subject: "CN=ossl-rsa", alg: "RS256" });
  });

  it("accepts a first install, any model when compatible names none, and a delta against the installed base", () => {
    const first = decideRelease(
      sign(alice, manifest({ compatible: {} })),
      context({ installed: installed({}) }),
    );
    expect(first.ok && first.value.installedVersion).toBeUndefined();
    expect(first.ok).toBe(true);
    const delta = manifest({
      artifact: { ...(manifest().artifact as object), type: "delta", base: "2.4.0" },
    });
    expect(decideRelease(sign(alice, delta), context()).ok).toBe(true);
  });

  it("accepts a manifest issued within the five minutes of tolerated skew", () => {
    const now = Date.now();
    const result = decideRelease(
      sign(alice, manifest({ issuedAt: iso(now + 4 * MINUTE) })),
      context({ now }),
    );
    expect(result.ok).toBe(true);
  });

  it("accepts at the floor when the floor is ahead of a trusted clock but before expiresAt", () => {
    const result = decideRelease(sign(alice, manifest()), context({ clockFloor: T0 + 2 * DAY }));
    expect(result.ok && result.value.effectiveTime).toBe(T0 + 2 * DAY);
  });
});

describe("clockFloor", () => {
  it("is the latest of build time, last trusted time and newest issuedAt, skipping absent parts", () => {
    expect(clockFloor({ buildTime: 100 })).toBe(100);
    expect(clockFloor({ buildTime: 100, lastTrusted: 300, newestIssuedAt: 200 })).toBe(300);
    expect(clockFloor({ buildTime: 100, lastTrusted: undefined, newestIssuedAt: 400 })).toBe(400);
    expect(clockFloor({ buildTime: 500, lastTrusted: Number.NaN, newestIssuedAt: 400 })).toBe(500);
  });
});
