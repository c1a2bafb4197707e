import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "../config/schema.js";
import { createClockSanity, LAST_TRUSTED_KEY, TrustedTime } from "../metrics/clock-sanity.js";
import { readBootFacts } from "../metrics/reboot-reason.js";
import { loadRootsPem, type VerifiedSigner } from "../pki/verify-envelope.js";
import { errorMessage } from "../shared/errors.js";
import { readAgentVersion, readBuildTime } from "../shared/version.js";
import { DATABASE_FILE, openDatabaseReadOnly } from "../store/database.js";
import { createMetaStore } from "../store/meta.js";
import { createInstalledState, NEWEST_ISSUED_AT_KEY } from "../updates/installed-state.js";
import { SELF_COMPONENT } from "../updates/self-update.js";
import { clockFloor, decideRelease } from "../updates/verify-release.js";
import { parse, UsageError } from "./args.js";
import { loadConfigOrThrow } from "./load-config-or-throw.js";

export const VERIFY_HELP = `Usage: pos-agent verify [--config FILE] [--json] ENVELOPE

Decides offline whether this terminal would install the signed release ENVELOPE (a JSON file, as
pos-ops sign writes it), and prints the decision and its reason:
  accept: pos-app 2.4.1 (securityVersion 3) signed by CN=alice, CN=bob
  reject: DOWNGRADE: version 2.4.0 is not newer than installed 2.4.1
Checks, in order: signatures, certificate chain to trust.releaseRoots, codeSigning key usage and
trust.threshold distinct signers; the manifest's fields and paths; the clock (an untrusted clock
gives DEFERRED clock.untrusted); expiresAt against max(wall clock, clock floor); the model and
agent version; a version newer than the installed one and securityVersion not below the floor.
The installed version is where dataDir/components/COMPONENT/current points; the security floor and
the clock's references come from the agent's database (read-only, beside a running daemon). The
clock is judged as the daemon judges it: never before this agent's build time, the last trusted
time or the newest issuedAt of a committed release.
--json prints the decision as JSON for scripts.
Exit codes: 0 accept, 1 reject, 2 usage or config error (or an unreadable ENVELOPE).`;

/** The clock as this offline command judges it. */
export interface OfflineClock {
  now: number;
  trusted: boolean;
  reason?: string;
  /** max(build time, last trusted time recorded by the daemon). */
  floor: number;
  buildTime: number;
  lastTrusted?: number;
}

export type VerifyReport =
  | {
      decision: "accept";
      component: string;
      version: string;
      securityVersion: number;
      signers: Array<Pick<VerifiedSigner, "subject" | "fingerprint256" | "alg">>;
      installedVersion: string | null;
      securityFloor: number;
      clock: OfflineClock;
    }
  | {
      decision: "reject";
      code: string;
      message: string;
      retryable: boolean;
      details?: Record<string, unknown>;
      clock: OfflineClock;
    };

export function verifyCommand(args: string[]): number {
  const { values, positionals } = parse(
    args,
    { config: { type: "string", short: "c" }, json: { type: "boolean" } },
    "pos-agent verify",
  );
  if (values.help) {
    console.log(VERIFY_HELP);
    return 0;
  }
  const [file, ...extra] = positionals;
  if (file === undefined) throw new UsageError("pos-agent verify: name the ENVELOPE file to verify");
  if (extra.length > 0) throw new UsageError(`pos-agent verify: unexpected argument "${extra[0]}"`);
  const loaded = loadConfigOrThrow(values.config);
  const report = verifyReleaseFile(loaded.config, loaded.file, file, Date.now());
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.decision === "accept" ? 0 : 1;
}

/** Reads everything the decision needs and decides; usage and config problems throw UsageError. */
export function verifyReleaseFile(
  config: Config,
  configFile: string,
  envelopeFile: string,
  now: number,
): VerifyReport {
  const rootsPem = readReleaseRoots(config, configFile);
  const envelope = readEnvelopeFile(envelopeFile);
  const daemon = readDaemonState(config.dataDir);
  const clock = judgeClockOffline(config, now, daemon);
  const decision = decideRelease(envelope, {
    releaseRootsPem: rootsPem,
    threshold: config.trust.threshold,
    now,
    clockTrusted: clock.trusted,
    clockReason: clock.reason,
    clockFloor: clock.floor,
    model: config.model,
    agentVersion: readAgentVersion(),
    installed: createInstalledState(
      config.dataDir,
      { securityFloor: (component) => daemon.floors.get(component) ?? 0 },
      { component: SELF_COMPONENT, version: readAgentVersion() },
    ),
  });
  if (!decision.ok) {
    const { error } = decision;
    return {
      decision: "reject",
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      ...(error.details === undefined ? {} : { details: error.details }),
      clock,
    };
  }
  const { manifest, signers, installedVersion, securityFloor } = decision.value;
  return {
    decision: "accept",
    component: manifest.component,
    version: manifest.version,
    securityVersion: manifest.securityVersion,
    signers: signers.map(({ subject, fingerprint256, alg }) => ({ subject, fingerprint256, alg })),
    installedVersion: installedVersion ?? null,
    securityFloor,
    clock,
  };
}

export function formatReport(report: VerifyReport): string {
  if (report.decision === "reject") return `reject: ${report.code}: ${report.message}`;
  // A subject with several attributes comes one per line from node:crypto.
  const signers = report.signers.map((signer) => signer.subject.split("\n").join("/")).join(", ");
  return `accept: ${report.component} ${report.version} (securityVersion ${report.securityVersion}) signed by ${signers}`;
}

function readReleaseRoots(config: Config, configFile: string): string[] {
  if (config.trust.releaseRoots.length === 0) {
    throw new UsageError(`${configFile}: trust.releaseRoots is empty, so no release can be verified`);
  }
  try {
    return loadRootsPem(config.trust.releaseRoots);
  } catch (error) {
    throw new UsageError(`${configFile}: trust.releaseRoots: ${errorMessage(error)}`);
  }
}

function readEnvelopeFile(file: string): unknown {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason =
      code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : errorMessage(error);
    throw new UsageError(`pos-agent verify: cannot read the envelope ${path}: ${reason}`);
  }
  try {
    return JSON.parse(text.startsWith("\uFEFF") ? text.slice(1) : text);
  } catch (error) {
    throw new UsageError(`pos-agent verify: the envelope ${path} is not JSON (${errorMessage(error)})`);
  }
}

/**
 * Offline, the clock is judged by the daemon's own rules (metrics/clock-sanity) against the build
 * time and the last trusted time the daemon recorded, read-only; nothing is written back. Without a
 * database (the daemon never ran here) the build time alone is the floor.
 */
export function judgeClockOffline(config: Config, now: number, daemon: DaemonState): OfflineClock {
  const buildTime = readBuildTime();
  const { lastTrusted } = daemon;
  const boot = readBootFacts({ bootIdFile: config.health.bootIdFile, now: () => now });
  const sanity = createClockSanity({
    clock: { now: () => now, monotonic: () => performance.now() },
    buildTime,
    bootId: boot.bootId,
    uptimeSec: () => boot.uptimeSec,
    meta: {
      getJson: <T>(key: string) => (key === LAST_TRUSTED_KEY ? lastTrusted : undefined) as T | undefined,
      setJson: () => {},
    },
  });
  sanity.check();
  const reason = sanity.reason();
  return {
    now,
    trusted: sanity.trusted(),
    ...(reason === undefined ? {} : { reason }),
    floor: clockFloor({ buildTime, lastTrusted: lastTrusted?.wall, newestIssuedAt: daemon.newestIssuedAt }),
    buildTime,
    ...(lastTrusted === undefined ? {} : { lastTrusted: lastTrusted.wall }),
  };
}

/** What the daemon recorded that the decision needs: the clock's references and the security floors. */
export interface DaemonState {
  lastTrusted?: TrustedTime;
  newestIssuedAt?: number;
  floors: Map<string, number>;
}

/**
 * Read-only from the daemon's database, beside a running daemon. Without a database (the daemon never
 * ran here) every floor is 0 and the build time alone is the clock floor; an unreadable one is said
 * on stderr and read the same way, never guessed upwards.
 */
export function readDaemonState(dataDir: string): DaemonState {
  const file = join(dataDir, DATABASE_FILE);
  const floors = new Map<string, number>();
  if (!existsSync(file)) return { floors };
  try {
    const db = openDatabaseReadOnly(dataDir);
    try {
      const meta = createMetaStore(db);
      const parsed = TrustedTime.safeParse(meta.getJson<unknown>(LAST_TRUSTED_KEY));
      const newest = meta.getJson<unknown>(NEWEST_ISSUED_AT_KEY);
      const hasFloors = db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'component_floors'")
        .get();
      if (hasFloors !== undefined) {
        const rows = db.prepare("SELECT component, security_floor FROM component_floors").all() as Array<{
          component: string;
          security_floor: number;
        }>;
        for (const row of rows) floors.set(row.component, row.security_floor);
      }
      return {
        ...(parsed.success ? { lastTrusted: parsed.data } : {}),
        ...(typeof newest === "number" ? { newestIssuedAt: newest } : {}),
        floors,
      };
    } finally {
      db.close();
    }
  } catch (error) {
    process.stderr.write(
      `pos-agent verify: cannot read the agent's state from ${file} (${errorMessage(error)}); the clock floor is the build time\n`,
    );
    return { floors };
  }
}
