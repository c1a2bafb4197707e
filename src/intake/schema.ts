import { z } from "zod";
import { isPlausibleTime } from "../shared/clock.js";
import { SEVERITIES } from "../shared/events.js";

/** Items of the local intake API (CONTRACT 11). Unknown fields are refused so typos are not lost silently. */
export const MAX_BODY_BYTES = 1024 * 1024;
export const MAX_ITEMS = 10_000;

const name = z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 . _ : -");
// PLAUSIBLE_TIME_MS: also keeps a card number out of the one field that is not scrubbed.
const ts = z
  .number()
  .int()
  .refine(isPlausibleTime, "must be a time in ms since 1970, between the years 2000 and 2090")
  .optional();

export const LogItem = z.strictObject({
  source: name,
  level: z.enum(["error", "warn", "info", "debug"]),
  line: z.string().max(16 * 1024, "must be at most 16384 characters"),
  ts,
});
export type LogItem = z.infer<typeof LogItem>;

export const EventItem = z.strictObject({
  type: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ -"),
  severity: z.enum(SEVERITIES),
  source: name.optional(),
  message: z.string().max(4096).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
  ts,
});
export type EventItem = z.infer<typeof EventItem>;

/**
 * An update lock an app holds while it must not be disturbed (a payment in progress). The name is
 * also a file name in the agent's data dir, hence no "/" and no ":".
 */
export const LockName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 . _ -");

/** A TTL is required: an app that crashes holding a lock must not block updates for ever. */
export const MAX_LOCK_TTL_SEC = 3600;

export const TakeLockBody = z.strictObject({
  ttlSec: z
    .number()
    .int("must be a whole number of seconds")
    .min(1, `must be 1 to ${MAX_LOCK_TTL_SEC} seconds`)
    .max(MAX_LOCK_TTL_SEC, `must be 1 to ${MAX_LOCK_TTL_SEC} seconds`),
});
export type TakeLockBody = z.infer<typeof TakeLockBody>;

/** `[3].level: …` for each problem in each item; every item is checked, not just the first bad one. */
export function validateItems<T>(
  schema: z.ZodType<T>,
  items: readonly unknown[],
): { ok: true; value: T[] } | { ok: false; errors: string[] } {
  const value: T[] = [];
  const errors: string[] = [];
  items.forEach((item, index) => {
    const parsed = schema.safeParse(item);
    if (parsed.success) {
      value.push(parsed.data);
      return;
    }
    errors.push(...issueLines(`[${index}]`, parsed.error.issues));
  });
  return errors.length === 0 ? { ok: true, value } : { ok: false, errors };
}

/** One JSON object as a whole body: `ttlSec: …`, or `(body): …` for the body itself. */
export function validateBody<T>(
  schema: z.ZodType<T>,
  body: unknown,
): { ok: true; value: T } | { ok: false; errors: string[] } {
  const parsed = schema.safeParse(body);
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, errors: issueLines("", parsed.error.issues) };
}

function issueLines(prefix: string, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === "number" ? `[${key}]` : `.${String(key)}`)).join("");
    const keys = issue.code === "unrecognized_keys" ? `.${issue.keys.join(", .")}` : "";
    // A body-level path reads "ttlSec", not ".ttlSec"; the body itself reads "(body)".
    const at = prefix === "" ? `${path}${keys}`.replace(/^\./, "") : `${prefix}${path}${keys}`;
    return `${at === "" ? "(body)" : at}: ${issue.message}`;
  });
}
