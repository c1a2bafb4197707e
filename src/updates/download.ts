import { createHash } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { rootCertificates } from "node:tls";
import { createBackoff } from "../shared/backoff.js";
import { type Clock, systemClock } from "../shared/clock.js";
import { AgentError, errorMessage, isAgentError } from "../shared/errors.js";
import { type Logger, silentLogger } from "../shared/logger.js";
import {
  type Context,
  type MinRate,
  runAttempt,
  showUrl,
  type Transfer,
  withFileErrors,
} from "./download-attempt.js";

export type { MinRate };

/**
 * Fetches a release artifact over HTTP(S) into `dest`, resisting the two network attacks of
 * REFERENCE.md 5 that signatures cannot stop: endless data (never more than the declared `size` is
 * read or written) and slow retrieval (a rate floor over a period). Partial data lives in
 * `dest + ".part"` so a dropped link, a restart or a later call resumes with a Range request; the
 * hash runs while streaming so memory stays flat whatever the size, and `dest` appears (by rename)
 * only once every byte matches the manifest's sha256.
 */

export interface DownloadProgress {
  bytes: number;
  totalBytes: number;
}

export interface DownloadOptions {
  url: string;
  /** Final path; partial data lives in `dest + ".part"`. */
  dest: string;
  /** Declared size (from the signed manifest): nothing past it is ever read or written. */
  size: number;
  /** Expected sha256, 64 lowercase hex digits. */
  sha256: string;
  signal?: AbortSignal;
  /** At most about four times a second, and once when the last byte is in. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Fewer than `bytesPerSec * periodSec` bytes in any `periodSec` fails the attempt. Default 1024 B/s over 60 s. */
  minRate?: MinRate;
  /** HTTP requests per call, the first included. Default 5. */
  maxAttempts?: number;
  /** Wait before the request after failed attempt `attempt` (1-based). Default: jittered backoff from 1 s to 30 s. */
  retryDelayMs?: (attempt: number) => number;
  /** Extra PEM trusted for https besides the system roots (a private update server's CA). */
  ca?: string | Buffer;
  /** Longest wait for the response headers of one request (connect, TLS, server). Default 30 s. */
  timeoutMs?: number;
  clock?: Clock;
  log?: Logger;
}

export interface DownloadResult {
  bytes: number;
  sha256: string;
  /** Bytes of an earlier run's `.part` that ended up in the result (0 when it started fresh or restarted). */
  resumedFrom: number;
  /** HTTP requests made, redirects not counted (0 when an earlier run had left the whole file). */
  attempts: number;
}

const DEFAULT_MIN_RATE: MinRate = { bytesPerSec: 1024, periodSec: 60 };
const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_TIMEOUT_MS = 30_000;
const PROGRESS_INTERVAL_MS = 250;
const READ_CHUNK_BYTES = 64 * 1024;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export async function downloadArtifact(options: DownloadOptions): Promise<DownloadResult> {
  const ctx = makeContext(options);
  const signal = options.signal;
  const part = `${options.dest}.part`;
  if (signal?.aborted) throw abortedError(ctx, undefined, signal);

  let t: Transfer | undefined;
  // Aborting interrupts whatever runs: the current request (through `stopAttempt`) or the retry wait.
  let stopAttempt: ((err: Error) => void) | undefined;
  const onAbort = () => stopAttempt?.(abortedError(ctx, t, signal));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    t = await openPart(ctx, part, signal);
    if (signal?.aborted) throw abortedError(ctx, t, signal);
    const attempts = await fetchRest(ctx, t, options, (stop) => {
      stopAttempt = stop;
    });
    ctx.progress(t.offset, true);

    const actual = t.hash.digest("hex");
    if (actual !== options.sha256) {
      throw new AgentError(
        "HASH_MISMATCH",
        `artifact from ${ctx.shown} has sha256 ${actual}, the manifest declares ${options.sha256}`,
        { details: { url: ctx.shown, size: ctx.size, actual, expected: options.sha256 } },
      );
    }
    const handle = t.fh;
    await withFileErrors(part, () => handle.sync());
    t.closed = true;
    await handle.close();
    await withFileErrors(options.dest, () => rename(part, options.dest));
    await syncDir(dirname(options.dest));
    ctx.log.info(
      { url: ctx.shown, bytes: ctx.size, attempts, resumedFrom: t.resumedFrom },
      "download complete",
    );
    return { bytes: ctx.size, sha256: actual, resumedFrom: t.resumedFrom, attempts };
  } catch (err) {
    const failure = asFailure(err, ctx);
    // Data that broke the size or the hash must never be resumed; anything else is kept for the next call.
    if (failure.code === "TOO_LARGE" || failure.code === "HASH_MISMATCH") {
      await closePart(t);
      await rm(part, { force: true }).catch(() => {});
    }
    throw failure;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await closePart(t);
  }
}

/** Opens (or creates) `.part` and hashes what an earlier run left in it. */
async function openPart(ctx: Context, part: string, signal: AbortSignal | undefined): Promise<Transfer> {
  const fh = await withFileErrors(part, () => open(part, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644));
  const t: Transfer = {
    fh,
    path: part,
    closed: false,
    offset: 0,
    hash: createHash("sha256"),
    resumedFrom: 0,
  };
  try {
    await withFileErrors(part, async () => {
      const found = (await fh.stat()).size;
      // Longer than declared cannot be a prefix of this artifact: start over rather than fail forever.
      if (found > ctx.size) await fh.truncate(0);
      else t.offset = found;
      t.resumedFrom = t.offset;
      if (t.offset > 0) await hashPrefix(t, () => signal?.aborted === true);
    });
  } catch (err) {
    await closePart(t);
    throw err;
  }
  if (t.offset > 0) ctx.log.info({ url: ctx.shown, bytes: t.offset, size: ctx.size }, "resuming from .part");
  return t;
}

async function closePart(t: Transfer | undefined): Promise<void> {
  if (t === undefined || t.closed) return;
  t.closed = true;
  await t.fh.close().catch(() => {});
}

/** Requests until `size` bytes are in `.part`, retrying what may pass; returns the number of requests. */
async function fetchRest(
  ctx: Context,
  t: Transfer,
  options: DownloadOptions,
  setStop: (stop: ((err: Error) => void) | undefined) => void,
): Promise<number> {
  const { signal } = options;
  const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const retryDelayMs = options.retryDelayMs ?? defaultRetryDelay();
  let attempts = 0;
  while (t.offset < ctx.size) {
    if (signal?.aborted) throw abortedError(ctx, t, signal);
    attempts += 1;
    try {
      const attempt = runAttempt(ctx, t);
      setStop(attempt.stop);
      await attempt.done;
    } catch (err) {
      if (signal?.aborted) throw abortedError(ctx, t, signal);
      const failure = asFailure(err, ctx);
      if (!failure.retryable) throw failure;
      if (attempts >= maxAttempts) {
        throw new AgentError("DOWNLOAD_FAILED", `${failure.message} (gave up after ${attempts} attempts)`, {
          retryable: true,
          cause: failure,
          details: { ...failure.details, attempts },
        });
      }
      const wait = retryDelayMs(attempts);
      ctx.log.warn(
        { url: ctx.shown, err: failure, attempt: attempts, bytes: t.offset, wait },
        "download retry",
      );
      await delay(wait, undefined, signal === undefined ? {} : { signal }).catch(() => {
        throw abortedError(ctx, t, signal);
      });
    } finally {
      setStop(undefined);
    }
  }
  return attempts;
}

function abortedError(ctx: Context, t: Transfer | undefined, signal: AbortSignal | undefined): AgentError {
  const bytes = t?.offset ?? 0;
  return new AgentError(
    "DOWNLOAD_FAILED",
    `download of ${ctx.shown} aborted at ${bytes} of ${ctx.size} bytes`,
    {
      retryable: true,
      cause: signal?.reason,
      details: { url: ctx.shown, aborted: true, bytes, size: ctx.size },
    },
  );
}

function makeContext(options: DownloadOptions): Context {
  const { size, sha256 } = options;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new AgentError("BAD_REQUEST", `download size must be a whole number of bytes, got ${size}`);
  }
  if (!SHA256_PATTERN.test(sha256)) {
    throw new AgentError("BAD_REQUEST", "download sha256 must be 64 lowercase hex digits");
  }
  let url: URL;
  try {
    url = new URL(options.url);
  } catch (err) {
    throw new AgentError("BAD_REQUEST", "download URL is not a URL", { cause: err });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new AgentError("BAD_REQUEST", `download URL must be http or https, got ${url.protocol}`);
  }
  const minRate = options.minRate ?? DEFAULT_MIN_RATE;
  if (!(minRate.periodSec > 0) || !(minRate.bytesPerSec >= 0)) {
    throw new AgentError("BAD_REQUEST", "download minRate needs periodSec > 0 and bytesPerSec >= 0");
  }
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger;
  return {
    url,
    shown: showUrl(url),
    size,
    // `ca` alone would replace the system roots; the update server may use either.
    ca: options.ca === undefined ? undefined : [...rootCertificates, options.ca],
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    minRate,
    clock,
    log,
    progress: createProgressReporter(size, options.onProgress, clock, log),
  };
}

function defaultRetryDelay(): (attempt: number) => number {
  const backoff = createBackoff({ initialMs: 1000, maxMs: 30_000, floorMs: 500, random: Math.random });
  return () => backoff.next();
}

function createProgressReporter(
  totalBytes: number,
  onProgress: DownloadOptions["onProgress"],
  clock: Clock,
  log: Logger,
): Context["progress"] {
  let last = Number.NEGATIVE_INFINITY;
  return (bytes, final = false) => {
    if (onProgress === undefined) return;
    const now = clock.monotonic();
    if (!final && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    // A failing progress sink (a publish that throws) must not cost the download.
    try {
      onProgress({ bytes, totalBytes });
    } catch (err) {
      log.warn({ err }, "download progress callback threw");
    }
  };
}

/** Feeds the bytes already in `.part` to the hash, one buffer at a time; stops early when `aborted()`. */
async function hashPrefix(t: Transfer, aborted: () => boolean): Promise<void> {
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  let position = 0;
  while (position < t.offset) {
    if (aborted()) return;
    const { bytesRead } = await t.fh.read(buffer, 0, Math.min(buffer.length, t.offset - position), position);
    if (bytesRead === 0) break;
    t.hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  // The file shrank under us: trust only what was read.
  if (position < t.offset) {
    await t.fh.truncate(position);
    t.offset = position;
    t.resumedFrom = position;
  }
}

/** A rename is durable only once its directory is; some file systems refuse to fsync a directory. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => undefined);
  await handle
    ?.sync()
    .catch(() => {})
    .finally(() => handle.close());
}

/** Turns whatever an attempt threw into the AgentError the caller sees; `retryable` says whether to try again. */
function asFailure(err: unknown, ctx: Context): AgentError {
  if (isAgentError(err)) return err;
  const code = String((err as { code?: unknown } | null)?.code ?? "");
  const details = { url: ctx.shown, size: ctx.size, errno: code };
  // A certificate that does not verify will not verify on the next try either (a wrong clock included).
  if (/CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)/.test(code)) {
    return new AgentError("DOWNLOAD_FAILED", `TLS refused by ${ctx.shown}: ${errorMessage(err)} (${code})`, {
      cause: err,
      details,
    });
  }
  // Everything else that reaches here came from the network (file errors are wrapped where they happen).
  return new AgentError("DOWNLOAD_FAILED", `download of ${ctx.shown} failed: ${errorMessage(err)}`, {
    retryable: true,
    cause: err,
    details,
  });
}
