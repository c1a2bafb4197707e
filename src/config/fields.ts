import { z } from "zod";

/** Identifiers that end up in MQTT client ids and topic levels: no `/`, `+`, `#` or spaces. */
export const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export const Name = z.string().regex(NAME_PATTERN, "must be 1 to 64 characters from A-Z a-z 0-9 . _ -");

/**
 * For cross-field refinements: run only when the fields themselves are valid (an unknown key
 * elsewhere in the object does not matter), so one bad value is not reported twice.
 */
export function fieldsValid(payload: z.core.ParsePayload): boolean {
  return payload.issues.every((issue) => issue.code === "unrecognized_keys");
}

export const NonEmptyString = z.string().min(1, "must not be empty");

/** A file path; relative paths are resolved against the config file's directory by the loader. */
export const FilePath = z.string().min(1, "must not be empty");

/** argv for a child process: program first, never run through a shell. */
export const Argv = z.array(NonEmptyString).min(1, "must name at least the program to run");

export const Percent = z.number().min(0).max(100);

const BROKER_SCHEME = /^(mqtt|mqtts|tcp|ssl|ws|wss):\/\//;

function isParsableUrl(value: string): boolean {
  try {
    return new URL(value).hostname !== "";
  } catch {
    return false;
  }
}

export const BrokerUrl = z
  .string()
  .regex(BROKER_SCHEME, "must start with mqtt://, mqtts://, tcp://, ssl://, ws:// or wss://")
  // Only judged once the scheme is right, so one bad URL yields one message.
  .refine((value) => !BROKER_SCHEME.test(value) || isParsableUrl(value), "is not a valid URL with a host")
  // Credentials in a URL end up in logs and in `pos-agent status`; they belong in username/passwordFile.
  .refine(
    (value) => !isParsableUrl(value) || (new URL(value).username === "" && new URL(value).password === ""),
    "must not carry a user name or password; use mqtt.username and mqtt.passwordFile",
  );

/** Schemes whose connection is encrypted. */
export function isTlsUrl(value: string): boolean {
  return /^(mqtts|ssl|wss):\/\//.test(value);
}

export function isLoopbackHost(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  const octets = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (octets === null) return false;
  return octets.slice(1).every((octet) => Number(octet) <= 255);
}

export const LoopbackHost = z
  .string()
  .refine(
    isLoopbackHost,
    "must be a loopback address (127.x.x.x, ::1 or localhost): the intake API serves apps on this terminal only",
  );

export const ClockTime = z
  .string()
  .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day "HH:MM" (00:00 to 23:59)');

export const MaintenanceWindow = z
  .strictObject({
    start: ClockTime.describe("Local time the window opens."),
    end: ClockTime.describe("Local time the window closes; earlier than start means it spans midnight."),
  })
  .refine((window) => window.start !== window.end, {
    message: "start and end must differ",
    path: ["end"],
    when: fieldsValid,
  })
  .describe("Updates are installed only inside this daily window (local time). Absent: any time.");

/** A JavaScript regular expression, as written in the config; refused with the engine's own message. */
export const RegexSource = z
  .string()
  .min(1, "must not be empty")
  .refine((source) => regexProblem(source) === undefined, {
    error: (issue) => `is not a valid regular expression: ${regexProblem(String(issue.input))}`,
  });

function regexProblem(source: string): string | undefined {
  try {
    new RegExp(source);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
