import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { type ManifestFile, modeBits } from "./manifest.js";

export type TreeCheck = { ok: true } | { ok: false; path: string; reason: string };

/**
 * Whether `dir` holds exactly the release `files` describe: every listed file with its size, mode and
 * sha256; nothing else but the directories those files need; no links, devices or fifos. Used on
 * resume after a crash, where a half-written or tampered tree must be restaged, not trusted. Paths in
 * the answer are relative to `dir` ("." for dir itself). Throws the signal's reason when aborted.
 */
export async function verifyTree(
  dir: string,
  files: readonly ManifestFile[],
  options: { signal?: AbortSignal } = {},
): Promise<TreeCheck> {
  const { signal } = options;
  const byPath = new Map(files.map((file) => [file.path, file]));
  const parents = new Set<string>();
  for (const file of files) {
    for (let at = file.path.indexOf("/"); at > 0; at = file.path.indexOf("/", at + 1)) {
      parents.add(file.path.slice(0, at));
    }
  }
  const root = await lstat(dir).catch(() => undefined);
  if (root === undefined || !root.isDirectory()) return fail(".", "is not a directory");

  // The cheap structural pass first, so a missing or extra file is reported before hashing anything.
  const present: string[] = [];
  const pending = [""];
  for (let rel = pending.pop(); rel !== undefined; rel = pending.pop()) {
    signal?.throwIfAborted();
    const entries = await readdir(join(dir, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isSymbolicLink()) return fail(path, "is a symbolic link");
      if (entry.isDirectory()) {
        if (!parents.has(path)) return fail(path, "is a directory the manifest does not need");
        pending.push(path);
      } else if (!entry.isFile()) {
        return fail(path, "is not a regular file");
      } else if (!byPath.has(path)) {
        return fail(path, "is not in the manifest");
      } else {
        present.push(path);
      }
    }
  }
  const seen = new Set(present);
  for (const file of files) {
    if (!seen.has(file.path)) return fail(file.path, "is missing");
  }
  for (const file of files) {
    const problem = await checkFile(join(dir, file.path), file, signal);
    if (problem !== undefined) return fail(file.path, problem);
  }
  return { ok: true };
}

async function checkFile(path: string, file: ManifestFile, signal: AbortSignal | undefined) {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    // O_NOFOLLOW and O_NONBLOCK: the tree may have changed since the walk; a link is not followed
    // and a fifo does not hang the open.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT") return "is missing";
    if (code === "ELOOP") return "is a symbolic link";
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) return "is not a regular file";
    if (stats.size !== file.size) return `is ${stats.size} bytes, expected ${file.size}`;
    // All 12 bits: a setuid bit the manifest cannot even express is a change too.
    const mode = stats.mode & 0o7777;
    const expected = modeBits(file.mode);
    if (mode !== expected) return `has mode ${octal(mode)}, expected ${octal(expected)}`;
    const hash = createHash("sha256");
    for await (const chunk of handle.createReadStream({ start: 0, end: file.size, autoClose: false })) {
      signal?.throwIfAborted();
      hash.update(chunk as Buffer);
    }
    const found = hash.digest("hex");
    if (found !== file.sha256) return `has sha256 ${found}, expected ${file.sha256}`;
    return undefined;
  } finally {
    await handle.close();
  }
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

function fail(path: string, reason: string): TreeCheck {
  return { ok: false, path, reason };
}
