import { COMPONENT_NAME_PATTERN, type Manifest, VERSION_PATTERN } from "../updates/manifest.js";
import { readManifestFile } from "../updates/release-base.js";
import {
  type BuildProgress,
  type BuiltRelease,
  buildRelease,
  PLACEHOLDER_URL_BASE,
} from "../updates/release-build.js";
import { parse, UsageError } from "./args.js";

const DEFAULT_EXPIRES_DAYS = 90;
/** Small builds finish before a progress line would help; it appears only after this long. */
const PROGRESS_AFTER_MS = 1000;
const PROGRESS_EVERY_MS = 200;

export const RELEASE_HELP = `Usage:
  pos-ops release build --component C --version V --from DIR --out OUTDIR [--base MANIFEST] [--url URL]
                        [--security-version N] [--models M1,M2] [--min-agent-version V]
                        [--expires-days N] [--force]

See pos-ops release build --help.`;

export const RELEASE_BUILD_HELP = `Usage: pos-ops release build --component C --version V --from DIR --out OUTDIR
         [--base MANIFEST] [--url URL] [--security-version N] [--models M1,M2]
         [--min-agent-version V] [--expires-days N] [--force]

Packs the release tree DIR into OUTDIR/C-V.tar.gz and writes its unsigned manifest (CONTRACT.md 8)
to OUTDIR/C-V.manifest.json: every regular file with its size, SHA-256 and mode. Sign the manifest
with pos-ops sign (once per release key). Symbolic links, devices, FIFOs and sockets in DIR are
refused, as are names a terminal would refuse; setuid, setgid and sticky bits are dropped; empty
directories are not carried. The same tree always gives the same artifact bytes.
  --base MANIFEST         make a delta: the artifact holds only the files whose content the base
                          release (its manifest, signed or not) lacks; the manifest still lists the
                          whole tree. Outputs are then named C-V-from-BASE.*
  --url URL               where the artifact will be served: a URL ending in "/" gets the artifact's
                          file name appended, any other is used as it is. Without it the URL is a
                          placeholder under ${PLACEHOLDER_URL_BASE} (with a warning)
  --security-version N    the anti-rollback level (default: the base's, else 0)
  --models M1,M2          terminal models it is for (default: any)
  --min-agent-version V   the oldest agent that may install it (default: any)
  --expires-days N        days until terminals refuse it (default ${DEFAULT_EXPIRES_DAYS}; 1 to 3650)
  --force                 replace output files that exist (default: refuse)
Exit codes: 0 built, 1 the tree, the base or the output could not be used, 2 usage error.`;

/** Output and time come in here so the command can be run in-process by tests. */
export interface ReleaseDeps {
  now(): number;
  /** One line to stdout, without its newline. */
  out(text: string): void;
  /** One line to stderr, without its newline. */
  err(text: string): void;
  /** Rewrites the live progress line on stderr; only called when `progressTty`. Empty text clears it. */
  progress(text: string): void;
  progressTty: boolean;
}

export function processReleaseDeps(): ReleaseDeps {
  return {
    now: () => Date.now(),
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    progress: (text) => process.stderr.write(`\r\x1b[K${text}`),
    progressTty: process.stderr.isTTY === true,
  };
}

export async function opsRelease(argv: string[], deps: ReleaseDeps = processReleaseDeps()): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case undefined:
    case "--help":
    case "-h":
    case "help":
      deps.out(RELEASE_HELP);
      return sub === undefined ? 2 : 0;
    case "build":
      return releaseBuild(rest, deps);
    default:
      throw new UsageError(`pos-ops release: unknown subcommand "${sub}"; the subcommand is build`);
  }
}

async function releaseBuild(argv: string[], deps: ReleaseDeps): Promise<number> {
  const command = "pos-ops release build";
  const { values, positionals } = parse(
    argv,
    {
      component: { type: "string" },
      version: { type: "string" },
      from: { type: "string" },
      out: { type: "string" },
      base: { type: "string" },
      url: { type: "string" },
      "security-version": { type: "string" },
      models: { type: "string" },
      "min-agent-version": { type: "string" },
      "expires-days": { type: "string" },
      force: { type: "boolean" },
    },
    command,
  );
  if (values.help) {
    deps.out(RELEASE_BUILD_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`${command}: unexpected argument "${positionals[0]}"`);
  const component = required(command, "component", values.component, "C");
  if (!COMPONENT_NAME_PATTERN.test(component)) {
    throw new UsageError(
      `${command}: --component "${component}" must be 1-64 characters of A-Z a-z 0-9 . _ -`,
    );
  }
  const version = checkVersion(command, "version", required(command, "version", values.version, "V"));
  const from = required(command, "from", values.from, "DIR");
  const outDir = required(command, "out", values.out, "OUTDIR");
  const url = values.url === undefined ? undefined : checkUrl(command, values.url);
  const securityVersion = wholeNumber(command, "security-version", values["security-version"], 0, 1_000_000);
  const models = values.models === undefined ? undefined : parseModels(command, values.models);
  const minAgentVersion =
    values["min-agent-version"] === undefined
      ? undefined
      : checkVersion(command, "min-agent-version", values["min-agent-version"]);
  const expiresDays =
    wholeNumber(command, "expires-days", values["expires-days"], 1, 3650) ?? DEFAULT_EXPIRES_DAYS;
  const base: Manifest | undefined =
    values.base === undefined ? undefined : await readManifestFile(values.base);

  const progress = progressLine(deps);
  let built: BuiltRelease;
  try {
    built = await buildRelease(
      {
        component,
        version,
        from,
        outDir,
        base,
        url,
        securityVersion,
        models,
        minAgentVersion,
        expiresDays,
        force: values.force === true,
      },
      { now: deps.now, onProgress: progress.update },
    );
  } finally {
    progress.clear();
  }
  report(deps, built);
  return 0;
}

function report(deps: ReleaseDeps, built: BuiltRelease): void {
  const { manifest, packed } = built;
  const treeBytes = manifest.files.reduce((sum, file) => sum + file.size, 0);
  const kind =
    manifest.artifact.type === "delta"
      ? `delta from ${manifest.artifact.base}: ${packed.length} of ${manifest.files.length} files`
      : `full: ${packed.length} files`;
  deps.out(
    `${built.artifactFile}: ${kind}, ${formatBytes(manifest.artifact.size)} (sha256 ${manifest.artifact.sha256})`,
  );
  deps.out(
    `${built.manifestFile}: ${manifest.component} ${manifest.version}, ${manifest.files.length} files, ` +
      `${formatBytes(treeBytes)}, securityVersion ${manifest.securityVersion}, expires ${manifest.expiresAt}; ` +
      "unsigned: sign it with pos-ops sign",
  );
  if (built.placeholderUrl) {
    deps.err(
      `warning: no --url given, so artifact.url is the placeholder ${manifest.artifact.url}; terminals cannot download it`,
    );
  }
  const [firstEmpty] = built.emptyDirectories;
  if (firstEmpty !== undefined) {
    deps.err(
      `warning: ${built.emptyDirectories.length} empty director${built.emptyDirectories.length === 1 ? "y" : "ies"} (e.g. ${firstEmpty}) not carried: a manifest lists files only`,
    );
  }
  if (manifest.artifact.type === "delta" && packed.length === 0) {
    deps.err("warning: the delta holds no files: every file's content is already in the base");
  }
}

/** A throttled progress line on a terminal, for trees big enough to take a while. */
function progressLine(deps: ReleaseDeps): { update(progress: BuildProgress): void; clear(): void } {
  if (!deps.progressTty) return { update: () => {}, clear: () => {} };
  const started = deps.now();
  let last = 0;
  let shown = false;
  return {
    update(progress) {
      const now = deps.now();
      if (now - started < PROGRESS_AFTER_MS || now - last < PROGRESS_EVERY_MS) return;
      last = now;
      shown = true;
      deps.progress(
        `${progress.phase} ${progress.files}/${progress.totalFiles} files, ` +
          `${formatBytes(progress.bytes)} of ${formatBytes(progress.totalBytes)}`,
      );
    },
    clear() {
      if (shown) deps.progress("");
    },
  };
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function required(command: string, option: string, value: string | undefined, placeholder: string): string {
  if (value === undefined || value === "")
    throw new UsageError(`${command}: --${option} ${placeholder} is required`);
  return value;
}

function checkVersion(command: string, option: string, value: string): string {
  if (!VERSION_PATTERN.test(value)) {
    throw new UsageError(
      `${command}: --${option} "${value}" is not a version such as 2.4.1 or 2.5.0-rc.1 (no build metadata)`,
    );
  }
  return value;
}

function checkUrl(command: string, value: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(value);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) {
    throw new UsageError(`${command}: --url must be an http:// or https:// URL, not "${value}"`);
  }
  return value;
}

function wholeNumber(
  command: string,
  option: string,
  value: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < min || number > max) {
    throw new UsageError(
      `${command}: --${option} must be a whole number from ${min} to ${max}, not "${value}"`,
    );
  }
  return number;
}

function parseModels(command: string, value: string): string[] {
  const models = value.split(",").map((model) => model.trim());
  const bad = models.find((model) => model.length === 0 || model.length > 64);
  if (bad !== undefined || models.length > 256) {
    throw new UsageError(
      `${command}: --models must be a comma-separated list of 1 to 256 model names (1-64 characters each), not "${value}"`,
    );
  }
  return [...new Set(models)];
}
