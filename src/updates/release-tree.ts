import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import { type FileHandle, lstat, open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { AgentError } from "../shared/errors.js";
import { MAX_FILES, MAX_RELEASE_BYTES, type ManifestFile, pathProblem } from "./manifest.js";

/**
 * Reading a release tree for `pos-ops release build`: the walk that decides what a release may hold
 * (regular files at safe paths, nothing else), and the one streaming reader both hashing and packing
 * use, so a file that changes between the two passes is caught instead of shipped under a stale hash.
 */

/** A regular file found in the tree, before it is hashed. */
export interface TreeFile {
  /** Relative, "/"-separated, and accepted by pathProblem. */
  path: string;
  size: number;
  /** Octal permission bits as the manifest writes them, e.g. "0755". */
  mode: string;
}

export interface ScannedTree {
  /** Sorted by path (UTF-16 code units, the same on every machine), so one tree gives one manifest. */
  files: TreeFile[];
  /** Directories with nothing in them: a manifest lists files only, so these do not travel. */
  emptyDirectories: string[];
}

/** Per chunk read, for a progress line: bytes read so far in this pass. */
export type ReadProgress = (file: TreeFile, bytesSoFar: number) => void;

const CHUNK_BYTES = 256 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export function byPath(a: { path: string }, b: { path: string }): number {
  if (a.path === b.path) return 0;
  return a.path < b.path ? -1 : 1;
}

/**
 * The manifest mode of a file: its permission bits as found, never setuid, setgid or sticky (a
 * release must not carry privilege bits onto a terminal). The executable bit is what usually differs.
 */
export function manifestMode(statMode: number): string {
  return `0${(statMode & 0o777).toString(8).padStart(3, "0")}`;
}

/** Walks `root` without following links; throws AgentError BAD_PATH naming the first thing a release may not hold. */
export async function scanTree(root: string): Promise<ScannedTree> {
  const rootInfo = await stat(root).catch((error: unknown) => {
    throw fsError(root, "cannot read the release tree", error);
  });
  if (!rootInfo.isDirectory()) throw new AgentError("BAD_PATH", `${root} is not a directory`);

  const files: TreeFile[] = [];
  const emptyDirectories: string[] = [];
  const pending = [""];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    const where = dir === "" ? root : join(root, dir);
    // Names as bytes: a name that is not UTF-8 would be decoded lossily and then name another file.
    const names = await readdir(where, { encoding: "buffer" }).catch((error: unknown) => {
      throw fsError(where, "cannot list the directory", error);
    });
    if (names.length === 0 && dir !== "") emptyDirectories.push(dir);
    for (const raw of names) {
      const path = joinPath(dir, decodeName(where, raw));
      const full = join(root, path);
      const problem = pathProblem(path);
      if (problem !== undefined) throw new AgentError("BAD_PATH", `${full}: the path ${problem}`);
      const info = await lstat(full).catch((error: unknown) => {
        throw fsError(full, "cannot read", error);
      });
      if (info.isDirectory()) {
        pending.push(path);
        continue;
      }
      if (!info.isFile()) {
        throw new AgentError(
          "BAD_PATH",
          `${full} is a ${kindOf(info)}; a release holds regular files only (copy the target in instead)`,
        );
      }
      if (info.size > MAX_RELEASE_BYTES) {
        throw new AgentError("TOO_LARGE", `${full} is larger than ${MAX_RELEASE_BYTES} bytes`);
      }
      files.push({ path, size: info.size, mode: manifestMode(info.mode) });
      if (files.length > MAX_FILES) {
        throw new AgentError("TOO_LARGE", `${root} holds more than ${MAX_FILES} files`);
      }
    }
  }
  files.sort(byPath);
  emptyDirectories.sort();
  return { files, emptyDirectories };
}

/** SHA-256 of every file, streamed (memory stays flat however large the tree). */
export async function hashTree(
  root: string,
  files: readonly TreeFile[],
  onRead: ReadProgress = () => {},
): Promise<ManifestFile[]> {
  const hashed: ManifestFile[] = [];
  for (const file of files) {
    const sha256 = await readRegularFile(root, file, async (_chunk, soFar) => onRead(file, soFar));
    hashed.push({ path: file.path, size: file.size, sha256, mode: file.mode });
  }
  return hashed;
}

/**
 * Streams one file of the tree to `onChunk` (each chunk a fresh buffer it may keep) and returns its
 * SHA-256. Opened with O_NOFOLLOW and O_NONBLOCK, and checked by fstat: a path swapped for a link or
 * a FIFO after the walk is refused rather than followed or waited on. A size that differs from the
 * walk's is refused too: the tar header already promised that many bytes.
 */
export async function readRegularFile(
  root: string,
  file: Pick<TreeFile, "path" | "size">,
  onChunk: (chunk: Buffer, bytesSoFar: number) => Promise<void>,
): Promise<string> {
  const full = join(root, file.path);
  let handle: FileHandle;
  try {
    handle = await open(full, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ELOOP") throw changed(full, "became a symbolic link");
    throw fsError(full, "cannot open", error);
  }
  try {
    if (!(await handle.stat()).isFile()) throw changed(full, "is no longer a regular file");
    const hash = createHash("sha256");
    let bytes = 0;
    for (;;) {
      // One byte more than is left, so a file that grew is noticed.
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, file.size - bytes + 1));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      bytes += bytesRead;
      if (bytes > file.size) throw changed(full, "grew while it was read");
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      await onChunk(chunk, bytes);
    }
    if (bytes !== file.size) throw changed(full, "shrank while it was read");
    return hash.digest("hex");
  } finally {
    await handle.close();
  }
}

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

function decodeName(where: string, raw: Buffer): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new AgentError(
      "BAD_PATH",
      `${where} holds a name that is not UTF-8 (${JSON.stringify(raw.toString("latin1"))}); rename it`,
    );
  }
}

function kindOf(info: Stats): string {
  if (info.isSymbolicLink()) return "symbolic link";
  if (info.isFIFO()) return "FIFO (named pipe)";
  if (info.isSocket()) return "socket";
  if (info.isCharacterDevice()) return "character device";
  if (info.isBlockDevice()) return "block device";
  return "special file";
}

function changed(full: string, how: string): AgentError {
  return new AgentError("HASH_MISMATCH", `${full} ${how} during the build; build again from a still tree`);
}

function fsError(path: string, what: string, error: unknown): AgentError {
  const code = (error as NodeJS.ErrnoException).code ?? String(error);
  return new AgentError("BAD_PATH", `${path}: ${what} (${code})`, { cause: error });
}
