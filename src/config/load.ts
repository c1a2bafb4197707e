import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { err, ok, type Result } from "../shared/result.js";
import { findJsonErrorOffset, lineAndColumn } from "./json-error-position.js";
import { type ConfigProblem, configErrorMap, FILE_PATH, issuesToProblems } from "./problems.js";
import { Config } from "./schema.js";

export type { ConfigProblem } from "./problems.js";
export { formatProblems } from "./problems.js";

export const DEFAULT_CONFIG_PATH = "/etc/pos-agent/config.json";

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file the config came from. */
  file: string;
}

export interface ConfigLoadFailure {
  file: string;
  problems: ConfigProblem[];
}

export interface LoadConfigOptions {
  /** Reads the file as UTF-8; tests may pass their own. Defaults to `fs.readFileSync`. */
  readFile?: (file: string) => string;
}

export function defaultConfigPath(env: NodeJS.ProcessEnv): string {
  const fromEnv = env.POS_AGENT_CONFIG;
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_CONFIG_PATH;
}

/** Validates an already-parsed JSON value, reporting every problem at once. Paths are left as written. */
export function parseConfig(raw: unknown): Result<Config, ConfigProblem[]> {
  const parsed = Config.safeParse(raw, { error: configErrorMap });
  return parsed.success ? ok(parsed.data) : err(issuesToProblems(parsed.error.issues));
}

/** Reads, parses and validates a config file; relative paths in it are taken relative to its directory. */
export function loadConfig(
  file: string,
  options: LoadConfigOptions = {},
): Result<LoadedConfig, ConfigLoadFailure> {
  const absolute = resolve(file);
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, "utf8"));
  let text: string;
  try {
    text = readFile(absolute);
  } catch (error) {
    return err({
      file: absolute,
      problems: [{ path: FILE_PATH, message: `cannot read ${absolute}: ${osReason(error)}` }],
    });
  }
  const json = parseJson(text);
  if (!json.ok) return err({ file: absolute, problems: [json.error] });
  const parsed = parseConfig(json.value);
  if (!parsed.ok) return err({ file: absolute, problems: parsed.error });
  return ok({ config: resolveConfigPaths(parsed.value, dirname(absolute)), file: absolute });
}

/** Makes the config's file references absolute; the files themselves are not read here. */
export function resolveConfigPaths(config: Config, baseDir: string): Config {
  const at = (path: string): string => resolve(baseDir, path);
  const { tls, passwordFile } = config.mqtt;
  const mqtt: Config["mqtt"] = { ...config.mqtt };
  if (tls !== undefined) {
    const resolved: NonNullable<Config["mqtt"]["tls"]> = {};
    if (tls.ca !== undefined) resolved.ca = at(tls.ca);
    if (tls.cert !== undefined) resolved.cert = at(tls.cert);
    if (tls.key !== undefined) resolved.key = at(tls.key);
    mqtt.tls = resolved;
  }
  if (passwordFile !== undefined) mqtt.passwordFile = at(passwordFile);
  return {
    ...config,
    dataDir: at(config.dataDir),
    mqtt,
    trust: {
      ...config.trust,
      releaseRoots: config.trust.releaseRoots.map(at),
      operatorRoots: config.trust.operatorRoots.map(at),
    },
  };
}

const OS_REASONS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a directory",
  ENOTDIR: "a parent is not a directory",
  ELOOP: "too many symbolic links",
};

function osReason(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const known = typeof code === "string" ? OS_REASONS[code] : undefined;
  if (known !== undefined) return known;
  return error instanceof Error ? error.message : String(error);
}

function parseJson(text: string): Result<unknown, ConfigProblem> {
  // An editor's byte-order mark is not a reason to refuse the file.
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  try {
    return ok(JSON.parse(body));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const { line, column } = lineAndColumn(body, findJsonErrorOffset(body) ?? body.length);
    return err({
      path: FILE_PATH,
      message: `invalid JSON at line ${line}, column ${column}: ${jsonReason(message)}`,
    });
  }
}

/** V8's reason without its offset or its copy of the source text. */
function jsonReason(message: string): string {
  return message
    .replace(/,\s.*\sis not valid JSON$/s, "")
    .replace(/\s*in JSON at position \d+.*$/s, "")
    .replace(/\s*\(line \d+ column \d+\)$/, "");
}
