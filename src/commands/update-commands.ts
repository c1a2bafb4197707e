import { z } from "zod";
import { AgentError } from "../shared/errors.js";
import type { JobOutcome, UpdateEngine } from "../updates/engine.js";
import { COMPONENT_NAME_PATTERN } from "../updates/manifest.js";
import type { AnyCommandHandler, CommandHandler } from "./command.js";

const ApplyArgs = z
  .strictObject({
    /** The signed manifest envelope itself. */
    manifest: z.record(z.string(), z.unknown()).optional(),
    /** Or where to fetch it. */
    manifestUrl: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
  })
  .refine((args) => (args.manifest === undefined) !== (args.manifestUrl === undefined), {
    message: "give exactly one of manifest and manifestUrl",
  });
type ApplyArgs = z.infer<typeof ApplyArgs>;

const StatusArgs = z.strictObject({ component: z.string().regex(COMPONENT_NAME_PATTERN).optional() });
type StatusArgs = z.infer<typeof StatusArgs>;

const RollbackArgs = z.strictObject({ component: z.string().regex(COMPONENT_NAME_PATTERN) });
type RollbackArgs = z.infer<typeof RollbackArgs>;

/**
 * `update.apply`, `update.status`, `update.rollback` (CONTRACT 6). update.apply answers once the
 * update is committed (succeeded), deferred (succeeded: it goes on by itself, ROOT/update/state
 * follows it), or rolled back or failed (failed, with the code and reason).
 */
export function createUpdateCommandHandlers(deps: {
  engine: Pick<UpdateEngine, "apply" | "status" | "rollback">;
  /** Fetches a manifest envelope (small JSON) by URL. */
  fetchManifest(url: string, signal: AbortSignal): Promise<unknown>;
}): AnyCommandHandler[] {
  const apply: CommandHandler<ApplyArgs> = {
    name: "update.apply",
    args: ApplyArgs,
    long: true,
    timeoutMs: 60 * 60_000,
    async run(args, context) {
      const envelope =
        args.manifest ?? (await deps.fetchManifest(args.manifestUrl as string, context.signal));
      context.progress({ pct: 0, note: "manifest accepted for checking" });
      return settle(await deps.engine.apply(envelope, context.commandId));
    },
  };
  const status: CommandHandler<StatusArgs> = {
    name: "update.status",
    args: StatusArgs,
    async run(args) {
      return { updates: deps.engine.status(args.component) };
    },
  };
  const rollback: CommandHandler<RollbackArgs> = {
    name: "update.rollback",
    args: RollbackArgs,
    long: true,
    timeoutMs: 30 * 60_000,
    async run(args, context) {
      return settle(
        await deps.engine.rollback(args.component, "rollback requested by an operator", context.commandId),
      );
    },
  };
  return [apply, status, rollback];
}

function settle(outcome: JobOutcome): Record<string, unknown> {
  if (outcome.state === "failed" || (outcome.state === "rolled_back" && outcome.code !== undefined)) {
    throw new AgentError(
      (outcome.code as ConstructorParameters<typeof AgentError>[0] | undefined) ?? "INTERNAL",
      `${outcome.component} ${outcome.toVersion}: ${outcome.state}${outcome.message ? `: ${outcome.message}` : ""}`,
      { details: { ...outcome } },
    );
  }
  return { ...outcome };
}
