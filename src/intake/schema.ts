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
    for (const issue of parsed.error.issues) {
      const path = issue.path
        .map((key) => (typeof key === "number" ? `[${key}]` : `.${String(key)}`))
        .join("");
      const keys = issue.code === "unrecognized_keys" ? `.${issue.keys.join(", .")}` : "";
      errors.push(`[${index}]${path}${keys}: ${issue.message}`);
    }
  });
  return errors.length === 0 ? { ok: true, value } : { ok: false, errors };
}
