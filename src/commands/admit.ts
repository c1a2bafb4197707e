import type { ErrorCode } from "../shared/errors.js";
import { err, ok, type Result } from "../shared/result.js";
import { type CommandRegistry, globMatch } from "./builtins.js";
import {
  type AnyCommandHandler,
  type CommandMeta,
  CommandRequest,
  describeIssues,
  isEnvelope,
  type VerifyCommandEnvelope,
} from "./command.js";

/** How far ahead of the device clock a signed or unsigned `issuedAt` may be (clock skew). */
export const MAX_ISSUED_AHEAD_MS = 5 * 60_000;

export interface AdmitPolicy {
  deviceId: string;
  groups: readonly string[];
  requireSignature: readonly string[];
  maxLifetimeMs: number;
  registry: CommandRegistry;
  verify: VerifyCommandEnvelope;
}

export interface AdmitInput {
  /** The id the journal recorded, read from the request before any check. */
  id: string;
  /** The parsed MQTT payload: a bare command or a signed envelope. */
  message: unknown;
  meta: CommandMeta;
  now: number;
  clockTrusted: boolean;
}

export interface Admitted {
  request: CommandRequest;
  handler: AnyCommandHandler;
  /** What the handler's own schema made of `request.args`. */
  args: unknown;
  signers: string[];
  /** Matches commands.requireSignature (so it is signed). */
  guarded: boolean;
}

export interface Refusal {
  code: ErrorCode;
  message: string;
  /** Verified signers, for the audit event; empty when unsigned or unverified. */
  signers: string[];
}

/**
 * Every check a command passes before it may run, in the order that reveals least to a sender who is
 * not authorised: delivery expiry, signature, shape, target, signing rules, time, then whether the
 * command exists and its arguments. Pure but for `verify`.
 */
export function admit(policy: AdmitPolicy, input: AdmitInput): Result<Admitted, Refusal> {
  let signers: string[] = [];
  const refuse = (code: ErrorCode, message: string) => err({ code, message, signers });

  if (input.meta.messageExpirySec === 0) {
    return refuse("EXPIRED", "the message expired before delivery (MQTT message expiry)");
  }

  const signed = isEnvelope(input.message);
  let body = input.message;
  if (isEnvelope(input.message)) {
    const verified = policy.verify(input.message, input.now);
    if (!verified.ok) return refuse(verified.error.code, verified.error.message);
    signers = verified.value.signers.map((signer) => signer.subject);
    body = verified.value.payload;
  }

  const parsed = CommandRequest.safeParse(body);
  if (!parsed.success) return refuse("BAD_REQUEST", describeIssues(parsed.error));
  const request = parsed.data;
  if (request.id !== input.id) {
    return refuse("BAD_REQUEST", "the signed payload's id differs from the id the request was read with");
  }

  if (signed) {
    const missing = (["target", "issuedAt", "expiresAt"] as const).filter(
      (key) => request[key] === undefined,
    );
    if (missing.length > 0) {
      return refuse(
        "BAD_REQUEST",
        `a signed command must carry target, issuedAt and expiresAt; missing: ${missing.join(", ")}`,
      );
    }
  }
  if (request.issuedAt !== undefined && request.expiresAt !== undefined) {
    const lifetime = request.expiresAt - request.issuedAt;
    if (lifetime <= 0) return refuse("BAD_REQUEST", "expiresAt must be after issuedAt");
    if (signed && lifetime > policy.maxLifetimeMs) {
      return refuse(
        "BAD_REQUEST",
        `a signed command may live at most ${policy.maxLifetimeMs / 1000} s (expiresAt - issuedAt is ${lifetime / 1000} s)`,
      );
    }
  }

  const wrongTarget = checkTarget(policy, request.target, input.meta);
  if (wrongTarget !== undefined) return refuse("WRONG_TARGET", wrongTarget);

  const guarded = policy.requireSignature.some((pattern) => globMatch(pattern, request.cmd));
  if (guarded && !signed) {
    return refuse(
      "SIGNATURE_REQUIRED",
      `${request.cmd} must be signed by an operator (commands.requireSignature)`,
    );
  }

  // Signed commands always carry expiresAt, and guarded ones are always signed: on a clock we cannot
  // believe, none of them is accepted, whichever way the clock is wrong.
  if (request.expiresAt !== undefined) {
    if (!input.clockTrusted) {
      return refuse("EXPIRED", "the device clock is untrusted, so the command's expiresAt cannot be checked");
    }
    if (input.now > request.expiresAt) {
      return refuse(
        "EXPIRED",
        `expired at ${iso(request.expiresAt)}; the device clock says ${iso(input.now)}`,
      );
    }
  }
  if (
    request.issuedAt !== undefined &&
    input.clockTrusted &&
    request.issuedAt > input.now + MAX_ISSUED_AHEAD_MS
  ) {
    return refuse(
      "EXPIRED",
      `not yet valid: issued at ${iso(request.issuedAt)}, more than ${MAX_ISSUED_AHEAD_MS / 60_000} min ahead of the device clock (${iso(input.now)})`,
    );
  }

  const handler = policy.registry.get(request.cmd);
  if (handler === undefined) return refuse("UNKNOWN_COMMAND", `unknown command ${request.cmd}`);
  const args = handler.args.safeParse(request.args ?? {});
  if (!args.success) return refuse("BAD_REQUEST", describeIssues(args.error, "args"));

  return ok({ request, handler, args: args.data, signers, guarded });
}

/**
 * On the device topic a target is optional (a bare command there is for this device); if present it
 * must be this device or one of its groups. On a group topic the target must name that group, so a
 * command meant for one device or another group is never fanned out to a whole group.
 */
function checkTarget(policy: AdmitPolicy, target: string | undefined, meta: CommandMeta): string | undefined {
  const group = target?.startsWith("group:") ? target.slice("group:".length) : undefined;
  const isOurGroup = group !== undefined && policy.groups.includes(group);
  if (meta.receivedVia === "group") {
    if (target === undefined) return "a command on a group topic must name its group as target (group:NAME)";
    if (!isOurGroup) return `target ${target} is not a group this device is in`;
    if (meta.group !== undefined && meta.group !== group) {
      return `target ${target} does not match the group topic it came on (${meta.group})`;
    }
    return undefined;
  }
  if (target === undefined || target === policy.deviceId || isOurGroup) return undefined;
  return `target ${target} is neither this device (${policy.deviceId}) nor one of its groups`;
}

function iso(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}
