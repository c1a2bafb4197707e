import { z } from "zod";
import { ERROR_CODES } from "./errors.js";

/**
 * A command response (CONTRACT 6). Lives in shared because the command journal (store) keeps terminal
 * responses and the dispatcher (commands) sends them; store may not import commands.
 */
export const COMMAND_STATUSES = ["accepted", "in_progress", "succeeded", "failed", "rejected"] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

/** Every request ends in exactly one of these. */
export const TERMINAL_STATUSES = [
  "succeeded",
  "failed",
  "rejected",
] as const satisfies readonly CommandStatus[];
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

export function isTerminalStatus(status: CommandStatus): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly CommandStatus[]).includes(status);
}

export const CommandResponse = z
  .strictObject({
    v: z.literal(1),
    id: z.string().max(128),
    deviceId: z.string(),
    status: z.enum(COMMAND_STATUSES),
    ts: z.number(),
    code: z.enum(ERROR_CODES).exactOptional(),
    message: z.string().exactOptional(),
    /** 0-100, on in_progress. */
    progress: z.number().min(0).max(100).exactOptional(),
    result: z.record(z.string(), z.unknown()).exactOptional(),
    duplicate: z.literal(true).exactOptional(),
  })
  .refine((r) => (r.status !== "rejected" && r.status !== "failed") || r.code !== undefined, {
    message: "a rejected or failed response carries a code",
    path: ["code"],
  });
export type CommandResponse = z.infer<typeof CommandResponse>;
