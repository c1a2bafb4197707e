import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { AgentError } from "../shared/errors.js";
import { type ManifestFile, modeBits } from "./manifest.js";

/** Progress callbacks are state events on the wire; more than four a second is noise. */
export const PROGRESS_INTERVAL_MS = 250;

export interface Progress {
  add(bytes: number): void;
  /** The closing report, sent whatever the interval. */
  finish(): void;
}

export interface StagingTarget {
  root: string;
  /** Directories made under root, relative with "/"; fsynced at the end. */
  createdDirs: Set<string>;
  progress: Progress;
  signal: AbortSignal | undefined;
}

export function createProgress(options: {
  totalBytes: number;
  onProgress: ((progress: { bytes: number; totalBytes: number }) => void) | undefined;
  monotonic: () => number;
}): Progress {
  const { totalBytes, onProgress, monotonic } = options;
  let bytes = 0;
  let last = monotonic();
  return {
    add(count) {
      bytes += count;
      if (onProgress === undefined) return;
      const now = monotonic();
      if (now - last < PROGRESS_INTERVAL_MS) return;
      last = now;
      onProgress({ bytes, totalBytes });
    },
    finish() {
      onProgress?.({ bytes, totalBytes });
    },
  };
}

/**
 * Writes one release file from `chunks`, hashing as it goes, and refuses it unless size and sha256
 * match the manifest. O_EXCL: nothing already there (a planted link) is followed or overwritten. The
 * file is created 0600 and given its manifest mode only once verified, so an unverified file is
 * never executable; the archive's mode is never used.
 */
export async function writeVerified(
  target: StagingTarget,
  file: ManifestFile,
  chunks: AsyncIterable<unknown>,
  source: string,
): Promise<void> {
  const dest = resolve(target.root, file.path);
  // pathProblem already refused ".." and absolute paths; this is the last line if that ever regresses.
  if (!dest.startsWith(resolve(target.root) + sep)) {
    throw new AgentError("BAD_PATH", `"${file.path}" resolves outside ${target.root}`);
  }
  target.signal?.throwIfAborted();
  await makeParents(target, file.path);
  const handle = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of chunks) {
      target.signal?.throwIfAborted();
      // streamx (tar-stream) types its chunks as unknown; both sources yield Buffers.
      if (!Buffer.isBuffer(chunk)) throw new TypeError(`${source} yielded a ${typeof chunk}, not bytes`);
      size += chunk.length;
      if (size > file.size) {
        throw new AgentError(
          "HASH_MISMATCH",
          `"${file.path}": ${source} holds more than the ${file.size} bytes listed`,
        );
      }
      hash.update(chunk);
      await writeAll(handle, chunk);
      target.progress.add(chunk.length);
    }
    if (size !== file.size) {
      throw new AgentError(
        "HASH_MISMATCH",
        `"${file.path}": ${source} holds ${size} of the ${file.size} bytes listed`,
      );
    }
    const found = hash.digest("hex");
    if (found !== file.sha256) {
      throw new AgentError(
        "HASH_MISMATCH",
        `"${file.path}": expected sha256 ${file.sha256}, found ${found} in ${source}`,
      );
    }
    await handle.chmod(modeBits(file.mode));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

/** Only parents of listed files are made, one level at a time, so each can be fsynced later. */
async function makeParents(target: StagingTarget, path: string): Promise<void> {
  const segments = path.split("/").slice(0, -1);
  let dir = "";
  for (const segment of segments) {
    dir = dir === "" ? segment : `${dir}/${segment}`;
    if (target.createdDirs.has(dir)) continue;
    await mkdir(join(target.root, dir), { mode: 0o755 });
    target.createdDirs.add(dir);
  }
}

/** fsync a directory so the entries made in it survive power loss. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems (and Android's FUSE layers) refuse fsync on a directory, as in
    // store/counters-file.ts; the files themselves were synced.
    const code = (error as { code?: unknown }).code;
    if (code !== "EINVAL" && code !== "EPERM" && code !== "ENOTSUP") throw error;
  } finally {
    await handle.close();
  }
}
