import { z } from "zod";
import { isPlausibleTime } from "../shared/clock.js";
import type { AgentError } from "../shared/errors.js";
import type { Result } from "../shared/result.js";

export {
  COMMAND_STATUSES,
  CommandResponse,
  type CommandStatus,
  isTerminalStatus,
  TERMINAL_STATUSES,
  type TerminalStatus,
} from "../shared/command-response.js";

export const COMMAND_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const COMMAND_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const time = z
  .number()
  .int()
  .refine(isPlausibleTime, "must be a time in ms since 1970, between the years 2000 and 2090");

/**
 * A command as it arrives bare, or as the payload of a signed envelope (CONTRACT 6). Strict: a
 * misspelt `expiresAt` must not turn a time-bound command into one that never expires.
 */
export const CommandRequest = z.strictObject({
  id: z.string().regex(COMMAND_ID_PATTERN, "must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
  cmd: z.string().regex(COMMAND_NAME_PATTERN, "must be 1-64 characters of A-Z a-z 0-9 . _ -"),
  args: z.record(z.string(), z.unknown()).exactOptional(),
  /** This device's id, or `group:NAME` of a group it is configured into. */
  target: z.string().min(1).max(128).exactOptional(),
  issuedAt: time.exactOptional(),
  expiresAt: time.exactOptional(),
});
export type CommandRequest = z.infer<typeof CommandRequest>;

export interface CommandProgress {
  /** 0-100. */
  pct?: number;
  note?: string;
}

export interface CommandContext {
  /** The request's id. */
  commandId: string;
  /** Long handlers report progress; sent as `in_progress` at most once a second. Ignored for short ones. */
  progress(p: CommandProgress): void;
  /** Aborted on timeout and on stop; a handler must honour it. */
  signal: AbortSignal;
  /** Verified signer subjects; empty when the command came unsigned. */
  signers: string[];
}

export interface CommandHandler<A = unknown> {
  name: string;
  /** Validates `args` (`{}` when the request has none); failures are refused as BAD_REQUEST. */
  args: z.ZodType<A>;
  /** Throw (an AgentError for a contract code) to fail; the dispatcher turns it into a `failed` response. */
  run(args: A, context: CommandContext): Promise<Record<string, unknown>>;
  /** Sends `accepted` before running, then `in_progress` on progress. */
  long?: boolean;
  /** Default from the dispatcher (60 s). */
  timeoutMs?: number;
}

/**
 * A handler of any argument type, for registries. `any`, because `run` takes its args contravariantly:
 * the dispatcher only ever passes what the handler's own `args` schema returned.
 */
// biome-ignore lint/suspicious/noExplicitAny: see above
export type AnyCommandHandler = CommandHandler<any>;

export interface VerifiedEnvelope {
  payload: unknown;
  signers: ReadonlyArray<{ subject: string }>;
}

/** Checks a signed envelope (typ pos-command+json) against trust.operatorRoots. */
export type VerifyCommandEnvelope = (envelope: unknown, now: number) => Result<VerifiedEnvelope, AgentError>;

/** Opaque to the dispatcher: handed back to `respond` with each response to that request. */
export interface ReplyRoute {
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface CommandMeta {
  /** MQTT 5 Message Expiry Interval as delivered (the broker already counted down); 0 means expired. */
  messageExpirySec?: number;
  /** Which subscription delivered it; default "device". */
  receivedVia?: "device" | "group";
  /** For receivedVia "group": the group whose topic delivered it. */
  group?: string;
}

/** A signed envelope is an object with `payload` and `signatures` (CONTRACT 7). */
export function isEnvelope(value: unknown): value is { payload: unknown; signatures: unknown } {
  return typeof value === "object" && value !== null && "payload" in value && "signatures" in value;
}

/**
 * The envelope's payload decoded WITHOUT checking any signature: only for naming the request in the
 * journal and in a refusal. Undefined when it is not base64url JSON.
 */
export function peekEnvelopePayload(envelope: { payload: unknown }): unknown {
  if (typeof envelope.payload !== "string") return undefined;
  try {
    return JSON.parse(Buffer.from(envelope.payload, "base64url").toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

/** The request's id if it has a valid one, even when the rest of it is invalid. */
export function readCommandId(value: unknown): string | undefined {
  const id = (value as { id?: unknown } | null | undefined)?.id;
  return typeof id === "string" && COMMAND_ID_PATTERN.test(id) ? id : undefined;
}

/** The request's command name for the journal and audit, whatever it holds (at most 128 characters). */
export function readCommandName(value: unknown): string {
  const cmd = (value as { cmd?: unknown } | null | undefined)?.cmd;
  return typeof cmd === "string" ? cmd.slice(0, 128) : "";
}

/** `args.url: Invalid URL; target: …` */
export function describeIssues(error: z.ZodError, prefix = ""): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter((part) => part !== "").join(".");
      const keys = issue.code === "unrecognized_keys" ? ` (${issue.keys.join(", ")})` : "";
      return `${path === "" ? "(request)" : path}: ${issue.message}${keys}`;
    })
    .join("; ");
}
