import { createHash, type Hash } from "node:crypto";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract, type Header } from "tar-stream";
import { AgentError, errorMessage } from "../shared/errors.js";
import { type Manifest, type ManifestFile, pathProblem } from "./manifest.js";
import { type StagingTarget, writeVerified } from "./staged-file.js";

/** Per entry: its header, a pax header with a 1 KiB path, padding; rounded up generously. */
const TAR_ENTRY_OVERHEAD = 4096;
/** End-of-archive blocks, padded to GNU tar's 10 KiB record. */
const TAR_TAIL = 20 * 512;

const ENTRY_KINDS: Record<string, string> = {
  link: "a hard link",
  symlink: "a symbolic link",
  "character-device": "a character device",
  "block-device": "a block device",
  fifo: "a fifo",
  "contiguous-file": "a contiguous file",
};

/**
 * Unpacks the artifact into `target.root`, reading it once: the raw bytes are held to artifact.size
 * and sha256 (stop at the declared size: TUF's endless-data attack), the unpacked stream to what a tar
 * of the listed files can take (a gzip bomb), and each entry to its manifest line. Streams throughout;
 * no file is held in memory. Returns the paths it wrote; the caller removes the tree on failure.
 */
export async function unpackArtifact(
  manifest: Manifest,
  artifactPath: string,
  target: StagingTarget,
  options: { artifactVerified?: boolean } = {},
): Promise<Set<string>> {
  const { artifact } = manifest;
  const context = {
    byPath: new Map(manifest.files.map((file) => [file.path, file])),
    seen: new Set<string>(),
    target,
  };
  const handle = await open(artifactPath, constants.O_RDONLY);
  const internal = new AbortController();
  const parserErrors = new Set<unknown>();
  try {
    const { size } = await handle.stat();
    if (size > artifact.size) {
      throw new AgentError(
        "TOO_LARGE",
        `artifact ${artifactPath} is ${size} bytes, the manifest allows ${artifact.size}`,
      );
    }
    if (size < artifact.size) {
      throw new AgentError(
        "HASH_MISMATCH",
        `artifact ${artifactPath} is truncated: ${size} of the ${artifact.size} bytes the manifest lists`,
      );
    }
    // Hashing 256 MiB again costs most of a second on a terminal; a caller that has just hashed the
    // file while downloading it says so. Every file is still held to its signed hash below.
    const rawHash = options.artifactVerified === true ? undefined : createHash("sha256");
    // `end` is inclusive: one byte past the declared size is enough to know the file grew since stat.
    const raw = handle.createReadStream({ start: 0, end: artifact.size, autoClose: false });
    const rawMeter = createMeter(artifact.size, rawHash, (limit) => {
      return new AgentError(
        "TOO_LARGE",
        `artifact ${artifactPath} grew past the ${limit} bytes the manifest allows`,
      );
    });
    const unpackMeter = createMeter(unpackedLimit(manifest.files), undefined, (limit) => {
      return new AgentError("TOO_LARGE", `artifact ${artifactPath} unpacks to more than ${limit} bytes`);
    });
    const entries = extract();
    entries.on("error", (error: unknown) => parserErrors.add(error));
    const signals = target.signal === undefined ? [internal.signal] : [internal.signal, target.signal];
    // zlib's default 16 KiB chunks become 16 KiB awaited writes; 256 KiB ones halve the staging time.
    const gunzip = artifact.compression === "gzip" ? [createGunzip({ chunkSize: 256 * 1024 })] : [];
    const fed = pipeline([raw, rawMeter, ...gunzip, unpackMeter, entries], {
      signal: AbortSignal.any(signals),
    }).then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
    try {
      for await (const entry of entries) await unpackEntry(entry, context);
    } catch (error) {
      internal.abort();
      const feedFailure = await fed;
      throw pickCause(error, feedFailure?.error, artifactPath, parserErrors);
    }
    const feedFailure = await fed;
    if (feedFailure !== undefined) throw pickCause(feedFailure.error, undefined, artifactPath, parserErrors);
    const found = rawHash?.digest("hex") ?? artifact.sha256;
    if (rawMeter.bytes !== artifact.size || found !== artifact.sha256) {
      throw new AgentError(
        "HASH_MISMATCH",
        `artifact ${artifactPath}: expected ${artifact.size} bytes with sha256 ${artifact.sha256}, found ${rawMeter.bytes} bytes with sha256 ${found}`,
      );
    }
    return context.seen;
  } finally {
    internal.abort();
    await handle.close();
  }
}

async function unpackEntry(
  entry: AsyncIterable<unknown> & { header: Header; resume(): unknown },
  context: { byPath: Map<string, ManifestFile>; seen: Set<string>; target: StagingTarget },
): Promise<void> {
  const { name, type, size } = entry.header;
  if (type === "directory") {
    entry.resume();
    // Never made from the archive (only as parents of listed files), but a hostile one is still a
    // hostile archive; and tar-stream would read a directory's data as headers.
    const path = name.replace(/^\.\//, "").replace(/\/+$/, "");
    const problem = path === "" ? undefined : pathProblem(path);
    if (problem !== undefined) throw new AgentError("BAD_PATH", `directory entry "${name}" ${problem}`);
    if (size !== 0)
      throw new AgentError("BAD_PATH", `directory entry "${name}" carries ${size} bytes of data`);
    return;
  }
  if (type !== "file") {
    // Links, devices and fifos are refused by the contract (CONTRACT.md 8); tar-stream gives null for
    // a typeflag it does not know.
    const kind = (typeof type === "string" ? ENTRY_KINDS[type] : undefined) ?? "of an unknown type";
    throw new AgentError("BAD_PATH", `entry "${name}" is ${kind}; only regular files are allowed`);
  }
  const path = name.startsWith("./") ? name.slice(2) : name;
  const problem = pathProblem(path);
  if (problem !== undefined) throw new AgentError("BAD_PATH", `entry "${name}" ${problem}`);
  const file = context.byPath.get(path);
  if (file === undefined) throw new AgentError("BAD_PATH", `entry "${path}" is not in the manifest`);
  if (context.seen.has(path))
    throw new AgentError("BAD_PATH", `entry "${path}" appears twice in the artifact`);
  context.seen.add(path);
  if (size !== file.size) {
    // Larger is endless data (TOO_LARGE, as for the artifact itself); smaller cannot match its hash.
    throw new AgentError(
      size > file.size ? "TOO_LARGE" : "HASH_MISMATCH",
      `"${path}" is ${size} bytes in the artifact, the manifest lists ${file.size}`,
    );
  }
  await writeVerified(context.target, file, entry, "the artifact");
}

/** Counts (and optionally hashes) bytes passing through; fails past `limit`. */
function createMeter(limit: number, hash: Hash | undefined, tooLarge: (limit: number) => AgentError) {
  const meter = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      meter.bytes += chunk.length;
      if (meter.bytes > limit) {
        callback(tooLarge(limit));
        return;
      }
      hash?.update(chunk);
      callback(null, chunk);
    },
  }) as Transform & { bytes: number };
  meter.bytes = 0;
  return meter;
}

/** The most a tar of these files can take: their data in 512-byte blocks plus headers and the tail. */
function unpackedLimit(files: readonly ManifestFile[]): number {
  const dirs = new Set<string>();
  let data = 0;
  for (const file of files) {
    data += Math.ceil(file.size / 512) * 512;
    for (let at = file.path.lastIndexOf("/"); at > 0; at = file.path.lastIndexOf("/", at - 1)) {
      dirs.add(file.path.slice(0, at));
    }
  }
  // +2: the "./" entry and a pax global header.
  return data + (files.length + dirs.size + 2) * TAR_ENTRY_OVERHEAD + TAR_TAIL;
}

/**
 * The error that explains a failed unpack. When one stage fails the others see only knock-on errors
 * (a premature close, the abort that stops the feed), so an AgentError from either side wins, then
 * the first other error. A decoder's error means the artifact is damaged: zlib's carry a Z_ code,
 * tar-stream's are plain Errors without a code (an fs error it merely passes on has one).
 */
function pickCause(primary: unknown, secondary: unknown, artifactPath: string, parserErrors: Set<unknown>) {
  if (primary instanceof AgentError) return primary;
  if (secondary instanceof AgentError) return secondary;
  const cause = [primary, secondary].find((error) => error !== undefined && !isKnockOn(error)) ?? primary;
  const code = codeOf(cause);
  if (
    (typeof code === "string" && code.startsWith("Z_")) ||
    (parserErrors.has(cause) && code === undefined)
  ) {
    // A signed artifact that does not unpack is not what was signed.
    return new AgentError(
      "HASH_MISMATCH",
      `artifact ${artifactPath} is corrupt or truncated: ${errorMessage(cause)}`,
      {
        cause,
      },
    );
  }
  return cause;
}

function isKnockOn(error: unknown): boolean {
  const code = codeOf(error);
  // Node's and streamx's words for "another stage failed first".
  return code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ABORT_ERR" || code === "STREAM_DESTROYED";
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null | undefined)?.code;
}
