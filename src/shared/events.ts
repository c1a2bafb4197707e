/** Event severities of CONTRACT 4, highest first. */
export const SEVERITIES = ["critical", "high", "medium", "low", "info"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** An event as capabilities raise it; the outbox adds seq and ts. */
export interface AgentEvent {
  type: string;
  severity: Severity;
  source?: string;
  message?: string;
  details?: Record<string, unknown>;
}
