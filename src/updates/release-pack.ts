import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { type Pack, pack } from "tar-stream";
import { AgentError, isAgentError } from "../shared/errors.js";
import { type ManifestFile, modeBits } from "./manifest.js";
import { readRegularFile } from "./release-tree.js";

/**
 * Packs release files into a gzipped tar, streaming: one chunk of one file is in memory at a time.
 * Headers carry only what the manifest does (path, size, mode) and fixed values for the rest (mtime
 * 0, uid/gid 0, no user or group names), so the same files give the same artifact bytes on any
 * machine and at any time, and a rebuilt release can be checked against a published hash.
 */

export interface PackedArtifact {
  /** Bytes of the compressed artifact, as written. */
  size: number;
  sha256: string;
}

export type PackProgress = (file: ManifestFile, bytesSoFar: number) => void;

const EPOCH = new Date(0);

/**
 * Writes `files` (read from `root`, in the order given) to `target` as tar.gz. Each file is hashed
 * again as it is packed: a file edited since it was hashed fails the build (HASH_MISMATCH) instead
 * of shipping bytes its manifest entry does not describe. On failure `target` may hold a partial
 * archive; the caller writes to a temporary name.
 */
export async function packArtifact(
  root: string,
  files: readonly ManifestFile[],
  target: string,
  onRead: PackProgress = () => {},
): Promise<PackedArtifact> {
  const tarball = pack();
  const digest = createHash("sha256");
  let size = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      digest.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const written = pipeline(tarball, createGzip(), measure, createWriteStream(target, { mode: 0o644 }));
  // Handled here at once (a write error may come while a file is still being read); awaited below.
  let writeError: unknown;
  written.catch((error: unknown) => {
    writeError ??= error;
  });
  try {
    for (const file of files) await addFile(tarball, root, file, onRead);
    tarball.finalize();
    await written;
  } catch (error) {
    tarball.destroy(error as Error);
    await written.catch(() => undefined);
    // Our own refusals (a file changed or unreadable) are the cause; anything else is a symptom of
    // the write failing (ENOSPC, EACCES), which the pipeline reports.
    throw isAgentError(error) ? error : (writeError ?? error);
  }
  return { size, sha256: digest.digest("hex") };
}

async function addFile(tarball: Pack, root: string, file: ManifestFile, onRead: PackProgress): Promise<void> {
  const header = {
    name: file.path,
    type: "file" as const,
    size: file.size,
    mode: modeBits(file.mode),
    mtime: EPOCH,
    uid: 0,
    gid: 0,
  };
  let settle: { resolve(): void; reject(error: unknown): void } = { resolve() {}, reject() {} };
  const packed = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  packed.catch(() => undefined); // awaited below, once the file has been streamed
  const entry = tarball.entry(header, (error) => (error ? settle.reject(error) : settle.resolve()));
  // When packing fails the caller tears the archive down, which destroys this entry with the error;
  // the failure is reported by the throw, and an unheard "error" event would crash the process.
  entry.on("error", () => undefined);
  const sha256 = await readRegularFile(root, file, async (chunk, bytesSoFar) => {
    onRead(file, bytesSoFar);
    if (!entry.write(chunk)) await drained(entry);
  });
  if (sha256 !== file.sha256) {
    throw new AgentError(
      "HASH_MISMATCH",
      `${file.path} changed after it was hashed; build again from a still tree`,
    );
  }
  entry.end(undefined); // streamx's types demand an argument; undefined writes nothing
  await packed;
}

/** Resolves when the entry takes more data; rejects if the archive is torn down meanwhile. */
function drained(entry: NodeJS.EventEmitter & { destroyed: boolean }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    // Already torn down (the write failed at once): "close" has been and gone.
    if (entry.destroyed) {
      reject(new Error("the archive stream closed while a file was being packed"));
      return;
    }
    const onDrain = () => {
      entry.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      entry.off("drain", onDrain);
      reject(new Error("the archive stream closed while a file was being packed"));
    };
    entry.once("drain", onDrain);
    entry.once("close", onClose);
  });
}
