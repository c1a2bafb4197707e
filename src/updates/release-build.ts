import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { AgentError, errorMessage, isAgentError, isDiskFull } from "../shared/errors.js";
import { MAX_RELEASE_BYTES, Manifest, type ManifestFile } from "./manifest.js";
import { checkBase, deltaFiles } from "./release-base.js";
import { packArtifact } from "./release-pack.js";
import { hashTree, scanTree } from "./release-tree.js";

/**
 * `pos-ops release build`: a release tree in, an artifact (tar.gz) and its unsigned manifest out.
 * The manifest lists the whole tree; a delta artifact carries only the files whose content the base
 * release lacks, because the agent completes a delta by finding base files by their hash.
 */

export interface BuildReleaseOptions {
  component: string;
  version: string;
  /** The release tree. */
  from: string;
  outDir: string;
  /** Makes a delta against this manifest (an older release of the same component). */
  base?: Manifest | undefined;
  /** See artifactUrl. */
  url?: string | undefined;
  /** Default: the base's, else 0. */
  securityVersion?: number | undefined;
  models?: string[] | undefined;
  minAgentVersion?: string | undefined;
  expiresDays: number;
  /** Replace output files that exist; otherwise they are refused. */
  force?: boolean | undefined;
}

export interface BuildProgress {
  phase: "hashing" | "packing";
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

export interface ReleaseBuildDeps {
  now(): number;
  onProgress?: ((progress: BuildProgress) => void) | undefined;
}

export interface BuiltRelease {
  manifest: Manifest;
  manifestFile: string;
  artifactFile: string;
  /** The files the artifact holds: all of them, or a delta's share. */
  packed: ManifestFile[];
  emptyDirectories: string[];
  /** No URL was given: artifact.url is a placeholder under updates.invalid. */
  placeholderUrl: boolean;
}

/** Where the artifact is served when no --url is given: a reserved name that never resolves (RFC 6761). */
export const PLACEHOLDER_URL_BASE = "https://updates.invalid/";

const DAY_MS = 86_400_000;

/** Output names; a delta's carry its base so it can sit beside the full release of the same version. */
export function releaseFileNames(
  component: string,
  version: string,
  baseVersion?: string,
): { artifact: string; manifest: string } {
  const stem =
    baseVersion === undefined ? `${component}-${version}` : `${component}-${version}-from-${baseVersion}`;
  return { artifact: `${stem}.tar.gz`, manifest: `${stem}.manifest.json` };
}

/**
 * The artifact's URL: a URL ending in "/" is a directory the file name is appended to, any other is
 * taken as the artifact's own URL; none gives a placeholder (signing it would ship a dead link, so
 * the CLI warns).
 */
export function artifactUrl(
  url: string | undefined,
  fileName: string,
): { url: string; placeholder: boolean } {
  if (url === undefined) return { url: `${PLACEHOLDER_URL_BASE}${fileName}`, placeholder: true };
  return { url: url.endsWith("/") ? `${url}${encodeURIComponent(fileName)}` : url, placeholder: false };
}

/**
 * Builds the artifact and the unsigned manifest. Everything that can be checked before reading the
 * tree is checked first (a bad URL should not cost a gigabyte of hashing). Outputs are written under
 * temporary names and renamed, so a failed build leaves no half artifact under the real name.
 */
export async function buildRelease(
  options: BuildReleaseOptions,
  deps: ReleaseBuildDeps,
): Promise<BuiltRelease> {
  const { base } = options;
  const names = releaseFileNames(options.component, options.version, base?.version);
  const location = artifactUrl(options.url, names.artifact);
  const issuedMs = Math.floor(deps.now() / 1000) * 1000;
  const securityVersion = options.securityVersion ?? base?.securityVersion ?? 0;
  // The manifest minus what reading the tree tells (files, artifact size and hash, here stand-ins),
  // parsed at once so a bad option fails before any hashing.
  const skeleton: Manifest = {
    v: 1,
    component: options.component,
    version: options.version,
    securityVersion,
    issuedAt: isoSeconds(issuedMs),
    expiresAt: isoSeconds(issuedMs + options.expiresDays * DAY_MS),
    compatible: {
      ...(options.models === undefined ? {} : { models: options.models }),
      ...(options.minAgentVersion === undefined ? {} : { minAgentVersion: options.minAgentVersion }),
    },
    artifact: {
      url: location.url,
      size: 1,
      sha256: "0".repeat(64),
      compression: "gzip",
      type: base === undefined ? "full" : "delta",
      ...(base === undefined ? {} : { base: base.version }),
    },
    files: [],
  };
  checkManifest(skeleton);
  if (base !== undefined) checkBase(skeleton, base);

  const tree = resolve(options.from);
  const out = resolve(options.outDir);
  if (out === tree || out.startsWith(`${tree}${sep}`)) {
    // Else the next build would pack this one's artifact into the release.
    throw new AgentError(
      "BAD_REQUEST",
      `the output directory ${options.outDir} is inside the release tree ${options.from}`,
    );
  }
  const manifestFile = join(options.outDir, names.manifest);
  const artifactFile = join(options.outDir, names.artifact);
  if (options.force !== true) await refuseExisting([artifactFile, manifestFile]);

  const scanned = await scanTree(options.from);
  const totalBytes = scanned.files.reduce((sum, file) => sum + file.size, 0);
  const progress = progressReporter(deps, "hashing", scanned.files.length, totalBytes);
  const files = await hashTree(options.from, scanned.files, progress);
  const packed = base === undefined ? files : deltaFiles(files, base);

  await mkdir(options.outDir, { recursive: true }).catch((error: unknown) => {
    throw writeError(options.outDir, error);
  });
  const partial = `${artifactFile}.partial`;
  try {
    const packTotal = packed.reduce((sum, file) => sum + file.size, 0);
    const written = await packArtifact(
      options.from,
      packed,
      partial,
      progressReporter(deps, "packing", packed.length, packTotal),
    );
    if (written.size > MAX_RELEASE_BYTES) {
      throw new AgentError("TOO_LARGE", `the artifact would be larger than ${MAX_RELEASE_BYTES} bytes`);
    }
    const artifact = { ...skeleton.artifact, size: written.size, sha256: written.sha256 };
    const manifest: Manifest = { ...skeleton, artifact, files };
    checkManifest(manifest);
    await rename(partial, artifactFile);
    // The manifest last: its presence says the artifact beside it is complete.
    await writeAtomically(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`).catch(async (error) => {
      await rm(artifactFile, { force: true }).catch(() => undefined);
      throw error;
    });
    return {
      manifest,
      manifestFile,
      artifactFile,
      packed,
      emptyDirectories: scanned.emptyDirectories,
      placeholderUrl: location.placeholder,
    };
  } catch (error) {
    await rm(partial, { force: true }).catch(() => undefined);
    throw writeError(artifactFile, error);
  }
}

/** The manifest is checked against its own schema before anything is written: agents parse it so. */
function checkManifest(manifest: Manifest): void {
  const parsed = Manifest.safeParse(manifest);
  if (parsed.success) return;
  const issue = parsed.error.issues[0];
  const where = issue === undefined ? "" : `${issue.path.join(".")}: `;
  throw new AgentError("BAD_REQUEST", `the manifest would be invalid (${where}${issue?.message})`);
}

async function refuseExisting(files: string[]): Promise<void> {
  for (const file of files) {
    const present = await stat(file).then(
      () => true,
      () => false,
    );
    if (present) {
      throw new AgentError("BAD_REQUEST", `${file} already exists; pass --force to replace it`);
    }
  }
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const partial = `${file}.partial`;
  try {
    await writeFile(partial, text, { mode: 0o644 });
    await rename(partial, file);
  } catch (error) {
    await rm(partial, { force: true }).catch(() => undefined);
    throw writeError(file, error);
  }
}

function writeError(file: string, error: unknown): AgentError {
  if (isAgentError(error)) return error;
  const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
  return new AgentError(isDiskFull(error) ? "DISK_FULL" : "INTERNAL", `${file}: cannot write (${code})`, {
    cause: error,
  });
}

/** Progress per chunk across a pass: files finished so far and bytes read overall (empty files never report). */
function progressReporter(
  deps: ReleaseBuildDeps,
  phase: BuildProgress["phase"],
  totalFiles: number,
  totalBytes: number,
): (file: { path: string; size: number }, bytesSoFar: number) => void {
  const report = deps.onProgress;
  if (report === undefined) return () => {};
  let done = 0;
  let doneBytes = 0;
  return (file, bytesSoFar) => {
    const finished = bytesSoFar >= file.size;
    report({
      phase,
      files: done + (finished ? 1 : 0),
      totalFiles,
      bytes: doneBytes + bytesSoFar,
      totalBytes,
    });
    if (finished) {
      done++;
      doneBytes += file.size;
    }
  };
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
