import { errorMessage } from "../shared/errors.js";

/**
 * The suite, in the order it runs: the live one (`diagnostics.run`), the local one (`pos-agent diag`)
 * and the fleet simulator answer with these names, and the tests hold all three to this list.
 */
export const DIAGNOSTIC_CHECK_NAMES = [
  "database",
  "outbox",
  "disk",
  "memory",
  "clock",
  "broker",
  "peripherals",
  "certificates",
  "components",
] as const;

export type CheckStatus = "pass" | "warn" | "fail";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** One human sentence: what was found, with the numbers a technician needs. */
  detail: string;
  durationMs: number;
  /** The measured values behind the verdict, for scripts and the fleet side. */
  data?: Record<string, unknown>;
}

export type CheckOutcome = Omit<CheckResult, "name" | "durationMs">;

/**
 * One self-test. `run` resolves its verdict; it may throw (reported as a fail with the message) and
 * should honour `signal`, which is aborted when the check times out or the whole run is cancelled.
 */
export interface DiagnosticCheck {
  name: string;
  run(signal: AbortSignal): Promise<CheckOutcome>;
}

export interface DiagnosticsReport {
  ts: number;
  deviceId: string;
  summary: { pass: number; warn: number; fail: number; worst?: string };
  checks: CheckResult[];
}

export interface RunDiagnosticsOptions {
  deviceId: string;
  /** Which checks, in this order; all of them in suite order when undefined. */
  names?: readonly string[];
  now: () => number;
  /** Per check; default 10 s. */
  timeoutMs?: number;
  /** Cancels the run (a command's hard timeout): the running check is aborted, the rest are not started. */
  signal?: AbortSignal;
  /** Called after each check, e.g. for command progress. */
  onResult?: (result: CheckResult, done: number, total: number) => void;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

const RANK: Record<CheckStatus, number> = { pass: 0, warn: 1, fail: 2 };

/** The more severe of two statuses. */
export function worse(a: CheckStatus, b: CheckStatus): CheckStatus {
  return RANK[b] > RANK[a] ? b : a;
}

/**
 * Runs the selected checks one after another, so a slow or heavy check (quick_check on a big database,
 * a broker round trip) never competes with another for the terminal's little CPU and I/O. Never rejects:
 * a check that throws or times out is a fail, an unknown name is a fail of that name.
 */
export async function runDiagnostics(
  checks: readonly DiagnosticCheck[],
  options: RunDiagnosticsOptions,
): Promise<DiagnosticsReport> {
  const ts = options.now();
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  const byName = new Map(checks.map((check) => [check.name, check]));
  const names = options.names === undefined ? checks.map((c) => c.name) : [...new Set(options.names)];
  const known = checks.map((c) => c.name).join(", ");
  const results: CheckResult[] = [];
  for (const name of names) {
    const check = byName.get(name);
    let result: CheckResult;
    if (check === undefined) {
      result = {
        name,
        status: "fail",
        detail: `no check is named "${name}"; known: ${known}`,
        durationMs: 0,
      };
    } else if (options.signal?.aborted) {
      result = { name, status: "fail", detail: "not run: the diagnostics run was cancelled", durationMs: 0 };
    } else {
      result = await runOne(check, timeoutMs, options.now, options.signal);
    }
    results.push(result);
    options.onResult?.(result, results.length, names.length);
  }
  return { ts, deviceId: options.deviceId, summary: summarise(results), checks: results };
}

async function runOne(
  check: DiagnosticCheck,
  timeoutMs: number,
  now: () => number,
  outer: AbortSignal | undefined,
): Promise<CheckResult> {
  const started = now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onOuterAbort: (() => void) | undefined;
  // A check that ignores its signal keeps running after the deadline; its late answer is dropped.
  const stopped = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => {
      resolve({ status: "fail", detail: `timed out after ${formatMs(timeoutMs)}` });
      controller.abort(new Error("timed out"));
    }, timeoutMs);
    onOuterAbort = () => {
      resolve({ status: "fail", detail: "cancelled: the diagnostics run was stopped" });
      controller.abort(outer?.reason);
    };
    outer?.addEventListener("abort", onOuterAbort, { once: true });
  });
  let outcome: CheckOutcome;
  try {
    outcome = await Promise.race([Promise.resolve().then(() => check.run(controller.signal)), stopped]);
  } catch (error) {
    outcome = { status: "fail", detail: errorMessage(error) };
  } finally {
    clearTimeout(timer);
    if (onOuterAbort !== undefined) outer?.removeEventListener("abort", onOuterAbort);
  }
  const result: CheckResult = {
    name: check.name,
    status: outcome.status,
    detail: outcome.detail,
    durationMs: Math.max(0, Math.round(now() - started)),
  };
  if (outcome.data !== undefined) result.data = outcome.data;
  return result;
}

export function summarise(results: readonly CheckResult[]): DiagnosticsReport["summary"] {
  const summary: DiagnosticsReport["summary"] = { pass: 0, warn: 0, fail: 0 };
  let worst: CheckResult | undefined;
  for (const result of results) {
    summary[result.status] += 1;
    if (result.status !== "pass" && (worst === undefined || RANK[result.status] > RANK[worst.status])) {
      worst = result;
    }
  }
  if (worst !== undefined) summary.worst = worst.name;
  return summary;
}

/** A table for people: one row per check, then the summary. */
export function formatReport(report: DiagnosticsReport): string {
  const header = { name: "CHECK", status: "STATUS", ms: "MS" };
  const nameWidth = Math.max(header.name.length, ...report.checks.map((c) => c.name.length));
  const statusWidth = header.status.length;
  const msWidth = Math.max(header.ms.length, ...report.checks.map((c) => String(c.durationMs).length));
  const row = (name: string, status: string, ms: string, detail: string) =>
    `${name.padEnd(nameWidth)}  ${status.padEnd(statusWidth)}  ${ms.padStart(msWidth)}  ${detail}`.trimEnd();
  const lines = [
    `diagnostics of ${report.deviceId} at ${new Date(report.ts).toISOString()}`,
    "",
    row(header.name, header.status, header.ms, "DETAIL"),
    ...report.checks.map((c) => row(c.name, c.status, String(c.durationMs), c.detail)),
    "",
  ];
  const { pass, warn, fail, worst } = report.summary;
  const total = report.checks.length;
  const verdict = fail > 0 ? "FAILED" : warn > 0 ? "passed with warnings" : "all passed";
  lines.push(
    `${verdict}: ${pass} pass, ${warn} warn, ${fail} fail of ${total}${worst === undefined ? "" : `; worst: ${worst}`}`,
  );
  return lines.join("\n");
}

function formatMs(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
