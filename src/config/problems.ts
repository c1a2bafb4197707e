import type { z } from "zod";

/** One thing wrong with a config, at a path written the way an operator would look it up. */
export interface ConfigProblem {
  /** `mqtt.urls[0]`, `outbox.maxBytes`, `(root)` for the document itself, `(file)` for reading it. */
  path: string;
  message: string;
}

export const ROOT_PATH = "(root)";
export const FILE_PATH = "(file)";

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** `["mqtt", "urls", 0]` → `mqtt.urls[0]`; keys that would read ambiguously are quoted: `components["a.b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else {
      const key = String(segment);
      if (!PLAIN_KEY.test(key)) out += `[${JSON.stringify(key)}]`;
      else out += out === "" ? key : `.${key}`;
    }
  }
  return out === "" ? ROOT_PATH : out;
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return `a ${typeof value}`;
}

function plural(count: number | bigint, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function sizeBound(origin: string, bound: number | bigint, atLeast: boolean, inclusive: boolean): string {
  const side = atLeast ? "at least" : "at most";
  if (origin === "string") {
    return atLeast && bound === 1
      ? "must not be empty"
      : `must be ${side} ${plural(bound, "character")} long`;
  }
  if (origin === "array" || origin === "set") return `must have ${side} ${plural(bound, "item")}`;
  if (inclusive) return `must be ${side} ${bound}`;
  return atLeast ? `must be greater than ${bound}` : `must be less than ${bound}`;
}

/**
 * Messages for the issues zod reports in its own words; schema-level messages (patterns,
 * refinements) take precedence over this map.
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "is required";
      if (issue.expected === "int") return `must be an integer, not ${kindOf(issue.input)}`;
      return `must be ${issue.expected === "array" || issue.expected === "object" ? "an" : "a"} ${issue.expected}, not ${kindOf(issue.input)}`;
    case "too_small":
      return sizeBound(issue.origin, issue.minimum, true, issue.inclusive ?? true);
    case "too_big":
      return sizeBound(issue.origin, issue.maximum, false, issue.inclusive ?? true);
    case "invalid_value":
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(", ")}`;
    default:
      return undefined;
  }
};

/** Flattens zod's issues into one problem per offending key, unknown keys each at their own path. */
export function issuesToProblems(issues: readonly z.core.$ZodIssue[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys)
        problems.push({ path: formatPath([...issue.path, key]), message: "unknown key" });
    } else if (issue.code === "invalid_key") {
      const reasons = issue.issues.map((inner) => inner.message).join("; ");
      problems.push({ path: formatPath(issue.path), message: `invalid name: ${reasons}` });
    } else {
      problems.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  return problems;
}

/** One line per problem: `FILE: path.to.key: message`. */
export function formatProblems(file: string, problems: readonly ConfigProblem[]): string {
  return problems.map((problem) => `${file}: ${problem.path}: ${problem.message}`).join("\n");
}
