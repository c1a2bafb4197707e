/** The contract's error codes (CONTRACT.md section 10). Every refusal carries one of these. */
export const ERROR_CODES = [
  "BAD_REQUEST",
  "UNKNOWN_COMMAND",
  "WRONG_TARGET",
  "EXPIRED",
  "SIGNATURE_REQUIRED",
  "SIGNATURE_INVALID",
  "UNTRUSTED_SIGNER",
  "THRESHOLD_NOT_MET",
  "INCOMPATIBLE",
  "DOWNGRADE",
  "HASH_MISMATCH",
  "TOO_LARGE",
  "BAD_PATH",
  "DOWNLOAD_FAILED",
  // Not in CONTRACT.md 10: logs.upload's PUT failing is not a download failing (noted on issue 5).
  "UPLOAD_FAILED",
  "DISK_FULL",
  "BUSY",
  "DEFERRED",
  "HEALTH_CHECK_FAILED",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface AgentErrorOptions {
  retryable?: boolean;
  cause?: unknown;
  details?: Record<string, unknown>;
}

/** The one error type thrown inside the agent; boundaries turn it into `{ ok: false, error }`. */
export class AgentError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AgentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AgentError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

export function isAgentError(value: unknown): value is AgentError {
  return value instanceof AgentError;
}

/** A message for logs and CLI output that never degrades to "[object Object]". */
export function errorMessage(value: unknown): string {
  if (value instanceof Error) return value.message;
  return String(value);
}

/** SQLite and the file system report a full disk in two ways; both mean the same to us. */
export function isDiskFull(value: unknown): boolean {
  const code = (value as { code?: unknown } | null)?.code;
  return code === "SQLITE_FULL" || code === "ENOSPC";
}
