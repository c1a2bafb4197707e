import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import { createGzip } from "node:zlib";
import tar from "tar-stream";
import type { ArchiveStream, LogArchive } from "../store/log-archive.js";

/**
 * The support bundle of logs.upload: a tar.gz a technician opens with `tar xzf`, holding
 * `bundle.json` (what and when), `status.json`, `config.json` (redacted by the caller),
 * `events.jsonl` and `logs.jsonl` (archived records, oldest first, already scrubbed of card data).
 * Built through files in `dir`, so memory stays flat whatever the archive holds.
 */

export interface StreamPart {
  count: number;
  firstSeq?: number;
  lastSeq?: number;
  /** Older records since `since` were left out to keep to the size budget. */
  cut: boolean;
}

export interface SupportBundle {
  path: string;
  bytes: number;
  sha256: string;
  logs: StreamPart;
  events: StreamPart;
}

export interface SupportBundleOptions {
  archive: Pick<LogArchive, "startForBudget" | "rowsAfter">;
  /** An empty working directory the caller owns and removes. */
  dir: string;
  /** ms since the epoch: records older than this are left out. */
  since: number;
  /** Stored bytes of records to take at most, shared 1:7 between events and logs (newest kept). */
  recordBudgetBytes: number;
  header: Record<string, unknown>;
  status: unknown;
  config: unknown;
  signal: AbortSignal;
}

const PAGE = 2000;

export async function buildSupportBundle(options: SupportBundleOptions): Promise<SupportBundle> {
  const { dir, signal } = options;
  const events = await writeStream(options, "events", Math.floor(options.recordBudgetBytes / 8));
  const logs = await writeStream(
    options,
    "logs",
    options.recordBudgetBytes - Math.floor(options.recordBudgetBytes / 8),
  );

  const pack = tar.pack();
  const hash = createHash("sha256");
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const path = join(dir, "bundle.tar.gz");
  const written = pipeline(pack, createGzip({ level: 6 }), count, createWriteStream(path), { signal });

  const json = (name: string, value: unknown) =>
    addBuffer(pack, name, Buffer.from(`${JSON.stringify(value, null, 2)}\n`));
  const fill = async () => {
    await json("bundle.json", { ...options.header, since: options.since, logs, events });
    await json("status.json", options.status);
    await json("config.json", options.config);
    await addFile(pack, "events.jsonl", join(dir, "events.jsonl"), signal);
    await addFile(pack, "logs.jsonl", join(dir, "logs.jsonl"), signal);
    pack.finalize();
  };
  // Together: when the file side fails (a full disk), the pack is destroyed and its entries never
  // complete, so waiting for them alone would hang.
  await Promise.all([written, fill()]);
  return { path, bytes, sha256: hash.digest("hex"), logs, events };
}

/** One stream's newest records within its budget, oldest first, as JSON lines in dir/{stream}.jsonl. */
async function writeStream(
  options: SupportBundleOptions,
  stream: ArchiveStream,
  budget: number,
): Promise<StreamPart> {
  const { archive, since, signal } = options;
  const start = archive.startForBudget(stream, since, budget);
  const out = createWriteStream(join(options.dir, `${stream}.jsonl`));
  // Listened to from the start: a write that fails between two awaits (a full disk) must reject
  // this upload, not crash the daemon with an unhandled 'error'.
  let failure: Error | undefined;
  out.on("error", (error) => {
    failure ??= error;
  });
  const part: StreamPart = { count: 0, cut: start.cut };
  try {
    let after = start.after;
    for (;;) {
      signal.throwIfAborted();
      const rows = archive.rowsAfter(stream, after, since, PAGE);
      if (failure !== undefined) throw failure;
      for (const row of rows) {
        const head = `{"seq":${row.seq},"ts":${row.ts}`;
        const line = row.body === "{}" ? `${head}}\n` : `${head},${row.body.slice(1)}\n`;
        if (!out.write(line)) await drained(out, signal);
        part.firstSeq ??= row.seq;
        part.lastSeq = row.seq;
        part.count += 1;
        after = row.seq;
      }
      if (rows.length < PAGE) break;
      await nextTurn();
    }
  } finally {
    await new Promise<void>((resolve, reject) => {
      if (failure !== undefined || out.destroyed) {
        out.destroy();
        reject(failure ?? new Error(`${stream}.jsonl could not be written`));
        return;
      }
      out.once("error", reject);
      out.end(() => (failure === undefined ? resolve() : reject(failure)));
    });
  }
  return part;
}

function drained(out: WriteStream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    out.once("drain", () => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
    out.once("error", reject);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function addBuffer(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date() }, data, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

async function addFile(pack: tar.Pack, name: string, file: string, signal: AbortSignal): Promise<void> {
  const { size } = await stat(file);
  const entry = pack.entry({ name, size, mode: 0o644, mtime: new Date() });
  await pipeline(createReadStream(file), entry, { signal });
}
