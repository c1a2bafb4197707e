import type { z } from "zod";
import { type VerifiedSigner, verifyEnvelope } from "../pki/verify-envelope.js";
import { AgentError, type ErrorCode, errorMessage, isAgentError } from "../shared/errors.js";
import { err, ok, type Result } from "../shared/result.js";
import { compareVersions, Manifest, VERSION_PATTERN } from "./manifest.js";

/**
 * The decision whether a signed release may be installed on this terminal (CONTRACT.md 7 and 8,
 * REFERENCE.md 5). Pure: the caller brings the roots, the clock verdict and the installed state.
 */

/** A manifest issued more than this after the agent's time is not yet valid (the clock check's own tolerance). */
export const ISSUED_AT_SKEW_MS = 5 * 60_000;

/** What is installed, per component. A throw refuses the release with INTERNAL (fail closed). */
export interface InstalledState {
  /** The live version (what `current` points at), or undefined when nothing is installed. */
  installedVersion(component: string): string | undefined;
  /** The lowest securityVersion accepted; 0 when none was recorded. Raised only on commit. */
  securityFloor(component: string): number;
}

export interface ReleaseContext {
  /** PEM certificates trusted to sign releases (`trust.releaseRoots`, already read). */
  releaseRootsPem: string[];
  /** Distinct valid signers needed (`trust.threshold`). */
  threshold: number;
  /** The wall clock, ms since the epoch; believed only when `clockTrusted`. */
  now: number;
  /** The clock check's verdict (metrics/clock-sanity). */
  clockTrusted: boolean;
  /** Why the clock is untrusted, for the DEFERRED message. */
  clockReason?: string | undefined;
  /** ms; a time the true time is known not to be before: see clockFloor(). */
  clockFloor: number;
  /** This terminal's model (`model` in the config). */
  model: string;
  /** This agent's own version. */
  agentVersion: string;
  /** Looked up only once the manifest is authenticated and parsed: its component names what to read. */
  installed: InstalledState;
}

export interface AcceptedRelease {
  manifest: Manifest;
  signers: VerifiedSigner[];
  payloadBytes: Buffer;
  /** The time expiry was judged at: max(now, clockFloor). */
  effectiveTime: number;
  installedVersion: string | undefined;
  securityFloor: number;
}

/**
 * The clock floor of REFERENCE.md 5: max(build time, last trusted time, newest issuedAt seen). True
 * time is never before it, whatever a terminal that booted without its RTC says. Parts that are
 * absent or not finite numbers are left out; the build time always counts.
 */
export function clockFloor(parts: {
  buildTime: number;
  lastTrusted?: number | undefined;
  newestIssuedAt?: number | undefined;
}): number {
  const known = [parts.lastTrusted, parts.newestIssuedAt].filter(
    (value): value is number => value !== undefined && Number.isFinite(value),
  );
  return Math.max(parts.buildTime, ...known);
}

/**
 * Decides a release envelope. Checks run in this order, so nothing unauthenticated is interpreted
 * beyond parsing the envelope, and the first failure is the answer:
 *
 * 1. Envelope, signatures, chain to `releaseRootsPem`, codeSigning leaves and `threshold` distinct
 *    signers (verifyEnvelope, typ `pos-manifest+json`): BAD_REQUEST, SIGNATURE_INVALID,
 *    UNTRUSTED_SIGNER, THRESHOLD_NOT_MET, EXPIRED (a certificate outside its validity period).
 *    Certificates are judged at max(now, clockFloor) when the clock is trusted. When it is not, `now`
 *    says nothing (1970, or years ahead), so they are judged at the floor alone; a certificate that is
 *    outside its validity there then gives DEFERRED, not EXPIRED: a leaf issued after the agent was
 *    built is "not yet valid" at a build-time floor and must not be refused for good because of the
 *    clock. THRESHOLD_NOT_MET is deferred too, as a signer may have been counted out for that reason.
 *    Refusals the time cannot change (bad signature, untrusted chain, key usage) stay final. Nothing
 *    is accepted either way.
 * 2. The payload as a Manifest: BAD_PATH when any problem is a path rule (absolute, `..`, a path
 *    listed twice or as a file and a directory, a component named `.` or `..`), else BAD_REQUEST;
 *    both list every problem as `field.path: message`.
 * 3. The clock: untrusted gives DEFERRED with a message starting `clock.untrusted:`, marked retryable:
 *    the operator (or the fleet's tooling) sends update.apply again once the terminal reports a
 *    trusted clock (`clockTrusted` in its birth), so a terminal booted at 1970 installs nothing.
 * 4. Expiry at t = max(now, clockFloor): EXPIRED when expiresAt ≤ t, or when issuedAt is more than
 *    ISSUED_AT_SKEW_MS after t ("not yet valid", retryable: it also keeps a manifest dated far ahead
 *    from raising the floor, which would freeze every later release).
 * 5. Compatibility: INCOMPATIBLE when compatible.models is given and lacks `model`, or the agent is
 *    older than compatible.minAgentVersion.
 * 6. Rollback: DOWNGRADE when version is not newer than the installed one (equal included), or
 *    securityVersion is below the component's floor.
 * 7. A delta whose artifact.base is not the installed version: INCOMPATIBLE.
 *
 * Each refusal names the field and both values; `details` carries them for scripts.
 */
export function decideRelease(
  envelope: unknown,
  context: ReleaseContext,
): Result<AcceptedRelease, AgentError> {
  try {
    return ok(decideOrThrow(envelope, context));
  } catch (error) {
    if (isAgentError(error)) return err(error);
    return err(
      new AgentError("INTERNAL", `release verification failed: ${errorMessage(error)}`, { cause: error }),
    );
  }
}

function refuse(
  code: ErrorCode,
  message: string,
  details: Record<string, unknown>,
  retryable = false,
): never {
  throw new AgentError(code, message, { details, retryable });
}

function decideOrThrow(envelope: unknown, context: ReleaseContext): AcceptedRelease {
  if (!Number.isFinite(context.clockFloor)) {
    refuse("INTERNAL", `the clock floor ${String(context.clockFloor)} is not a time`, {});
  }
  const floor = context.clockFloor;
  const trusted = context.clockTrusted && Number.isFinite(context.now);
  const effectiveTime = trusted ? Math.max(context.now, floor) : floor;

  const verified = verifyEnvelope(envelope, {
    typ: "pos-manifest+json",
    rootsPem: context.releaseRootsPem,
    threshold: context.threshold,
    now: effectiveTime,
  });
  if (!verified.ok) {
    const timeDependent = verified.error.code === "EXPIRED" || verified.error.code === "THRESHOLD_NOT_MET";
    if (!trusted && timeDependent) {
      refuse(
        "DEFERRED",
        `${untrustedPrefix(context)}; certificate validity cannot be judged before it is trusted (${verified.error.message})`,
        { reason: "clock.untrusted", clockFloor: iso(floor) },
        true,
      );
    }
    throw verified.error;
  }

  const manifest = parseManifest(verified.value.payload);
  const { component, version } = manifest;
  const release = `${component} ${version}`;

  if (!trusted) {
    refuse(
      "DEFERRED",
      `${untrustedPrefix(context)}; ${release} is authentic: send it again once the terminal's clock is trusted`,
      { reason: "clock.untrusted", clockFloor: iso(floor) },
      true,
    );
  }

  const agentTime = `the agent's time ${iso(effectiveTime)}${effectiveTime > context.now ? " (its clock floor)" : ""}`;
  const expiresAt = Date.parse(manifest.expiresAt);
  if (expiresAt <= effectiveTime) {
    refuse("EXPIRED", `expiresAt ${manifest.expiresAt} is not after ${agentTime}`, {
      field: "expiresAt",
      value: manifest.expiresAt,
      agentTime: iso(effectiveTime),
    });
  }
  const issuedAt = Date.parse(manifest.issuedAt);
  if (issuedAt > effectiveTime + ISSUED_AT_SKEW_MS) {
    refuse(
      "EXPIRED",
      `issuedAt ${manifest.issuedAt} is later than ${agentTime}: not yet valid`,
      { field: "issuedAt", value: manifest.issuedAt, agentTime: iso(effectiveTime) },
      true,
    );
  }

  const { models, minAgentVersion } = manifest.compatible;
  if (models !== undefined && !models.includes(context.model)) {
    refuse(
      "INCOMPATIBLE",
      `compatible.models ${JSON.stringify(models)} does not include this terminal's model ${JSON.stringify(context.model)}`,
      { field: "compatible.models", value: models, model: context.model },
    );
  }
  if (minAgentVersion !== undefined && compare(context.agentVersion, minAgentVersion, "agent version") < 0) {
    refuse(
      "INCOMPATIBLE",
      `compatible.minAgentVersion ${minAgentVersion} is newer than this agent's version ${context.agentVersion}`,
      { field: "compatible.minAgentVersion", value: minAgentVersion, agentVersion: context.agentVersion },
    );
  }

  const installedVersion = readInstalled(component, () => context.installed.installedVersion(component));
  if (installedVersion !== undefined) {
    if (!VERSION_PATTERN.test(installedVersion)) {
      refuse("INTERNAL", `the installed version "${installedVersion}" of ${component} is not a version`, {
        component,
        installedVersion,
      });
    }
    if (compareVersions(version, installedVersion) <= 0) {
      refuse("DOWNGRADE", `version ${version} is not newer than installed ${installedVersion}`, {
        field: "version",
        value: version,
        installedVersion,
      });
    }
  }
  const securityFloor = readInstalled(component, () => context.installed.securityFloor(component));
  if (!Number.isSafeInteger(securityFloor) || securityFloor < 0) {
    refuse("INTERNAL", `the security floor ${String(securityFloor)} of ${component} is not a count`, {
      component,
      securityFloor,
    });
  }
  if (manifest.securityVersion < securityFloor) {
    refuse(
      "DOWNGRADE",
      `securityVersion ${manifest.securityVersion} is below the security floor ${securityFloor} of ${component}`,
      { field: "securityVersion", value: manifest.securityVersion, securityFloor },
    );
  }

  const { artifact } = manifest;
  if (artifact.type === "delta" && artifact.base !== installedVersion) {
    refuse(
      "INCOMPATIBLE",
      `artifact.base ${String(artifact.base)} of a delta is not the installed version ${installedVersion ?? "(none installed)"}`,
      { field: "artifact.base", value: artifact.base, installedVersion: installedVersion ?? null },
    );
  }

  return {
    manifest,
    signers: verified.value.signers,
    payloadBytes: verified.value.payloadBytes,
    effectiveTime,
    installedVersion,
    securityFloor,
  };
}

function untrustedPrefix(context: ReleaseContext): string {
  return `clock.untrusted: ${context.clockReason ?? "the wall clock is not trusted"}`;
}

/** Zod issues that are path rules (manifest.ts pathProblem and the tree-shape checks), not shape errors. */
function isPathIssue(issue: z.core.$ZodIssue): boolean {
  if (issue.code !== "custom") return false;
  // The component names a directory too ("." and ".." are refused by a custom rule).
  if (issue.path[0] === "component") return true;
  if (issue.path[0] !== "files") return false;
  return issue.path.length === 1 || issue.path[2] === "path";
}

function parseManifest(payload: unknown): Manifest {
  const parsed = Manifest.safeParse(payload);
  if (!parsed.success) {
    const issues = parsed.error.issues;
    const listed = issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
    const shown = listed.slice(0, 10).join("; ");
    const more = listed.length > 10 ? ` (and ${listed.length - 10} more)` : "";
    refuse(issues.some(isPathIssue) ? "BAD_PATH" : "BAD_REQUEST", `manifest: ${shown}${more}`, {
      issues: listed,
    });
  }
  return parsed.data;
}

function compare(ours: string, theirs: string, what: string): number {
  if (!VERSION_PATTERN.test(ours)) refuse("INTERNAL", `this ${what} "${ours}" is not a version`, {});
  return compareVersions(ours, theirs);
}

function readInstalled<T>(component: string, read: () => T): T {
  try {
    return read();
  } catch (cause) {
    throw new AgentError(
      "INTERNAL",
      `cannot read the installed state of ${component}: ${errorMessage(cause)}`,
      { cause },
    );
  }
}

function iso(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}
