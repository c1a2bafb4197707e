import { z } from "zod";
import { isTerminalStatus } from "../shared/command-response.js";
import type { FleetResponse, ReceivedResponse } from "../transport/command-client.js";

/** The rows of `pos-ops diag`: a device's answer read as a diagnostics report, and the table. */

/** What is needed of a DiagnosticsReport (the `result` of diagnostics.run); loose, as it may grow. */
export const DiagnosticsCheckView = z.looseObject({
  name: z.string(),
  status: z.enum(["pass", "warn", "fail"]),
  detail: z.string().optional(),
  durationMs: z.number().optional(),
});
export const DiagnosticsReportView = z.looseObject({
  summary: z.looseObject({
    pass: z.number().int().nonnegative(),
    warn: z.number().int().nonnegative(),
    fail: z.number().int().nonnegative(),
    worst: z.string().optional(),
  }),
  checks: z.array(DiagnosticsCheckView),
});
export type DiagnosticsReportView = z.infer<typeof DiagnosticsReportView>;

/** One device's outcome at the deadline. */
export type DiagRow =
  | { deviceId: string; answered: false; lastStatus?: string; error?: string }
  | {
      deviceId: string;
      answered: true;
      status: "succeeded";
      elapsedMs: number;
      summary: { pass: number; warn: number; fail: number };
      worst: string | null;
      report: DiagnosticsReportView;
    }
  | {
      deviceId: string;
      answered: true;
      status: "succeeded" | "failed" | "rejected";
      elapsedMs: number;
      code?: string;
      message?: string;
      unreadable?: string;
    };

/** What is known of one device while waiting. */
export interface DiagEntry {
  deviceId: string;
  sentAt: number;
  last?: ReceivedResponse;
  error?: string;
}

export function isFinal(received: ReceivedResponse | undefined): boolean {
  return received !== undefined && isTerminalStatus(received.response.status);
}

export function toRow(entry: DiagEntry): DiagRow {
  const last = entry.last;
  if (last === undefined || !isTerminalStatus(last.response.status)) {
    const row: DiagRow = { deviceId: entry.deviceId, answered: false };
    if (last !== undefined) row.lastStatus = last.response.status;
    if (entry.error !== undefined) row.error = entry.error;
    return row;
  }
  const response: FleetResponse = last.response;
  const status = response.status as "succeeded" | "failed" | "rejected";
  const elapsedMs = Math.max(0, last.receivedAt - entry.sentAt);
  if (status === "succeeded") {
    const report = DiagnosticsReportView.safeParse(response.result);
    if (report.success) {
      return {
        deviceId: entry.deviceId,
        answered: true,
        status,
        elapsedMs,
        summary: {
          pass: report.data.summary.pass,
          warn: report.data.summary.warn,
          fail: report.data.summary.fail,
        },
        worst: worstCheck(report.data),
        report: report.data,
      };
    }
    const issue = report.error.issues[0];
    return {
      deviceId: entry.deviceId,
      answered: true,
      status,
      elapsedMs,
      unreadable:
        issue === undefined ? "not a report" : `${issue.path.join(".") || "result"}: ${issue.message}`,
    };
  }
  const row: DiagRow = { deviceId: entry.deviceId, answered: true, status, elapsedMs };
  if (response.code !== undefined) row.code = response.code;
  if (response.message !== undefined) row.message = response.message;
  return row;
}

/** The agent's own `summary.worst`, else the first failing check, else the first warning; null when all passed. */
export function worstCheck(report: DiagnosticsReportView): string | null {
  if (report.summary.worst !== undefined) return report.summary.worst;
  const named =
    report.checks.find((check) => check.status === "fail") ??
    report.checks.find((check) => check.status === "warn");
  return named?.name ?? null;
}

export function renderTable(rows: readonly DiagRow[]): string[] {
  const width = Math.max("DEVICE".length, ...rows.map((row) => row.deviceId.length));
  const worstWidth = Math.max(
    "WORST CHECK".length,
    ...rows.map((row) => ("worst" in row ? (row.worst ?? "-").length : 0)),
  );
  const num = (n: number): string => String(n).padStart(4);
  const lines = [`${"DEVICE".padEnd(width)}  PASS WARN FAIL  ${"WORST CHECK".padEnd(worstWidth)}  (TIME)`];
  for (const row of rows) {
    const device = row.deviceId.padEnd(width);
    if (!row.answered) {
      const why =
        row.error !== undefined
          ? ` (not sent: ${row.error})`
          : row.lastStatus !== undefined
            ? ` (last status: ${row.lastStatus}, no result)`
            : "";
      lines.push(`${device}  no answer${why}`);
    } else if ("report" in row) {
      const { pass, warn, fail } = row.summary;
      lines.push(
        `${device}  ${num(pass)} ${num(warn)} ${num(fail)}  ${(row.worst ?? "-").padEnd(worstWidth)}  (${row.elapsedMs} ms)`,
      );
    } else if (row.unreadable !== undefined) {
      lines.push(`${device}  unreadable report (${row.unreadable})  (${row.elapsedMs} ms)`);
    } else {
      const fields = [row.status, row.code, row.message].filter((field) => field !== undefined);
      lines.push(`${device}  ${fields.join("  ")}  (${row.elapsedMs} ms)`);
    }
  }
  return lines;
}

export function summarise(rows: readonly DiagRow[]): { answered: number; failing: number } {
  let answered = 0;
  let failing = 0;
  for (const row of rows) {
    if (!row.answered) continue;
    answered += 1;
    if (!("report" in row) || row.summary.fail > 0) failing += 1;
  }
  return { answered, failing };
}
