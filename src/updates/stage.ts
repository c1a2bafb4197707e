import { constants } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AgentError, errorMessage, isDiskFull } from "../shared/errors.js";
import { type Manifest, type ManifestFile, pathProblem } from "./manifest.js";
import { createProgress, fsyncDirectory, type StagingTarget, writeVerified } from "./staged-file.js";
import { unpackArtifact } from "./unpack-artifact.js";

/**
 * Builds a release tree beside the live one (REFERENCE.md 6: "write the new release beside the old
 * one, verify every file, fsync"). The artifact was hash-checked after download, but it is read again
 * here and every byte is held to the signed manifest once more: the manifest, not the archive, says
 * which paths, sizes, hashes and modes exist (CONTRACT.md 8). Any failure removes the staging dir.
 */

export interface StageOptions {
  manifest: Manifest;
  artifactPath: string;
  /** Must not exist, or be an empty directory; created. Removed on any failure. */
  stagingDir: string;
  /** The installed release's tree, for deltas. */
  baseDir?: string;
  /** The installed release's manifest files: base files are found by sha256, not by path. */
  baseFiles?: readonly ManifestFile[];
  signal?: AbortSignal;
  /** Bytes of release files staged so far, at most every PROGRESS_INTERVAL_MS and once at the end. */
  onProgress?: (progress: { bytes: number; totalBytes: number }) => void;
  /** The caller hashed the artifact against the manifest just before (while downloading it). */
  artifactVerified?: boolean;
  /** Monotonic ms for throttling progress; performance.now by default. */
  monotonic?: () => number;
}

export interface StageResult {
  files: number;
  bytes: number;
  /** Files copied from the installed release (deltas). */
  fromBase: number;
}

export async function stageRelease(options: StageOptions): Promise<StageResult> {
  const { manifest, stagingDir, signal } = options;
  if (isAborted(signal)) throw abortError(signal?.reason);
  const bases = baseIndex(options);
  await createStagingDir(stagingDir);
  const createdDirs = new Set<string>();
  const totalBytes = manifest.files.reduce((sum, file) => sum + file.size, 0);
  const progress = createProgress({
    totalBytes,
    onProgress: options.onProgress,
    monotonic: options.monotonic ?? (() => performance.now()),
  });
  const target = { root: stagingDir, createdDirs, progress, signal };
  try {
    const fromArchive = await unpackArtifact(manifest, options.artifactPath, target, {
      ...(options.artifactVerified === undefined ? {} : { artifactVerified: options.artifactVerified }),
    });
    let fromBase = 0;
    for (const file of manifest.files) {
      if (fromArchive.has(file.path)) continue;
      const base = bases?.get(file.sha256);
      if (base === undefined) {
        const where = bases === undefined ? "the full artifact" : "the delta artifact or the base release";
        throw new AgentError("HASH_MISMATCH", `"${file.path}" is missing: not in ${where}`);
      }
      await copyFromBase(base.dir, base.file, file, target);
      fromBase++;
    }
    // Bottom-up, so each directory's entry is durable in its parent once the parent is synced.
    const dirs = [...createdDirs].sort((a, b) => b.split("/").length - a.split("/").length);
    for (const dir of dirs) await fsyncDirectory(join(stagingDir, dir));
    await fsyncDirectory(stagingDir);
    await fsyncDirectory(dirname(stagingDir));
    progress.finish();
    return { files: manifest.files.length, bytes: totalBytes, fromBase };
  } catch (error) {
    // The abort says why it stopped, not whatever the interrupted read or write threw then.
    const failure = isAborted(signal) ? abortError(signal?.reason) : toAgentError(error);
    try {
      await rm(stagingDir, { recursive: true, force: true });
    } catch (cleanup) {
      throw new AgentError(failure.code, `${failure.message}; removing ${stagingDir} failed too`, {
        cause: failure,
        retryable: failure.retryable,
        details: { cleanupError: errorMessage(cleanup) },
      });
    }
    throw failure;
  }
}

/** Copies a file of the installed release found by hash; the hash is checked again, as it may have been changed. */
async function copyFromBase(baseDir: string, base: ManifestFile, file: ManifestFile, target: StagingTarget) {
  const problem = pathProblem(base.path);
  if (problem !== undefined) throw new AgentError("BAD_PATH", `base file "${base.path}" ${problem}`);
  const source = join(baseDir, base.path);
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a fifo planted in the installed tree must not hang the open.
    handle = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT") {
      throw new AgentError("HASH_MISMATCH", `"${file.path}" is missing: base file ${source} is gone`, {
        cause: error,
      });
    }
    if (code === "ELOOP")
      throw new AgentError("BAD_PATH", `base file ${source} is a symbolic link`, { cause: error });
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new AgentError("BAD_PATH", `base file ${source} is not a regular file`);
    const chunks = handle.createReadStream({ start: 0, end: file.size, autoClose: false });
    await writeVerified(target, file, chunks, `base file ${source}`);
  } finally {
    await handle.close();
  }
}

function baseIndex(options: StageOptions): Map<string, { dir: string; file: ManifestFile }> | undefined {
  const { artifact } = options.manifest;
  if (artifact.type !== "delta") return undefined;
  const { baseDir, baseFiles } = options;
  if (baseDir === undefined || baseFiles === undefined) {
    throw new AgentError("INCOMPATIBLE", `a delta against ${artifact.base} needs the installed base release`);
  }
  const index = new Map<string, { dir: string; file: ManifestFile }>();
  for (const file of baseFiles) {
    if (!index.has(file.sha256)) index.set(file.sha256, { dir: baseDir, file });
  }
  return index;
}

async function createStagingDir(dir: string): Promise<void> {
  try {
    await mkdir(dirname(dir), { recursive: true });
    await mkdir(dir, { mode: 0o755 });
    return;
  } catch (error) {
    if ((error as { code?: unknown }).code !== "EEXIST") throw toAgentError(error);
  }
  // A leftover from a crash is the caller's to verify (verifyTree) or remove; never staged over.
  const stats = await lstat(dir);
  if (!stats.isDirectory() || (await readdir(dir)).length > 0) {
    throw new AgentError("INTERNAL", `staging dir ${dir} exists and is not an empty directory`);
  }
}

function toAgentError(error: unknown): AgentError {
  if (error instanceof AgentError) return error;
  if (isDiskFull(error)) {
    return new AgentError("DISK_FULL", `no space left while staging: ${errorMessage(error)}`, {
      cause: error,
      retryable: true,
    });
  }
  return new AgentError("INTERNAL", `staging failed: ${errorMessage(error)}`, { cause: error });
}

/** A function, so TypeScript does not carry the entry check's narrowing past awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function abortError(reason: unknown): AgentError {
  if (reason instanceof AgentError) return reason;
  return new AgentError("INTERNAL", `staging was aborted: ${errorMessage(reason)}`, {
    cause: reason,
    retryable: true,
  });
}
