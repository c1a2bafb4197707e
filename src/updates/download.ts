import { createHash, type Hash } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import http, { type ClientRequest, type IncomingMessage } from "node:http";
import https from "node:https";
import { dirname } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { rootCertificates } from "node:tls";
import { createBackoff } from "../shared/backoff.js";
import { type Clock, systemClock } from "../shared/clock.js";
import { AgentError, errorMessage, isAgentError, isDiskFull } from "../shared/errors.js";
import { type Logger, silentLogger } from "../shared/logger.js";

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

export interface MinRate {
  /** 0 turns the floor off. */
  bytesPerSec: number;
  periodSec: number;
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
const MAX_REDIRECTS = 5;
const PROGRESS_INTERVAL_MS = 250;
const READ_CHUNK_BYTES = 64 * 1024;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** Mutable state of one call, shared by its attempts. */
interface Transfer {
  fh: FileHandle;
  /** The `.part` path, for messages. */
  path: string;
  closed: boolean;
  offset: number;
  hash: Hash;
  resumedFrom: number;
}

interface Context {
  url: URL;
  /** The URL as messages and logs show it: no query string (it may carry a token), no credentials. */
  shown: string;
  size: number;
  ca: Array<string | Buffer> | undefined;
  timeoutMs: number;
  minRate: MinRate;
  clock: Clock;
  log: Logger;
  progress: (bytes: number, final?: boolean) => void;
}

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

function showUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
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

async function withFileErrors<T>(path: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    if (isDiskFull(err)) throw new AgentError("DISK_FULL", `disk full while writing ${path}`, { cause: err });
    throw new AgentError("INTERNAL", `cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

async function writeAt(fh: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
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

function failed(ctx: Context, message: string, retryable: boolean, details: Record<string, unknown> = {}) {
  return new AgentError("DOWNLOAD_FAILED", `download of ${ctx.shown} ${message}`, {
    retryable,
    details: { url: ctx.shown, size: ctx.size, ...details },
  });
}

function tooLarge(ctx: Context, message: string, details: Record<string, unknown> = {}) {
  return new AgentError("TOO_LARGE", `${ctx.shown} ${message}, the manifest declares ${ctx.size} bytes`, {
    details: { url: ctx.shown, size: ctx.size, ...details },
  });
}

/**
 * One HTTP request (with its redirects) that appends to `.part` until `size` bytes are in. `stop`
 * ends it from outside (abort); the rate watch and the header timeout end it from inside.
 */
function runAttempt(ctx: Context, t: Transfer): { done: Promise<void>; stop: (err: Error) => void } {
  let request: ClientRequest | undefined;
  let stopReason: Error | undefined;
  const stop = (err: Error) => {
    stopReason ??= err;
    request?.destroy(err);
  };
  const rate = watchRate(ctx, stop);
  const done = (async () => {
    try {
      const res = await openResponse(ctx, t.offset, (req) => {
        request = req;
        if (stopReason !== undefined) req.destroy(stopReason);
      });
      await receive(ctx, t, res, rate.add);
    } catch (err) {
      throw stopReason ?? err;
    } finally {
      rate.stop();
      request?.destroy();
    }
    // The body may have completed just as a stop came in; the stop wins so an abort is never ignored.
    if (stopReason !== undefined) throw stopReason;
  })();
  return { done, stop };
}

/** Fails the attempt when fewer than bytesPerSec * periodSec bytes came in over the last period. */
function watchRate(ctx: Context, stop: (err: Error) => void): { add: (n: number) => void; stop: () => void } {
  const { bytesPerSec, periodSec } = ctx.minRate;
  let total = 0;
  if (bytesPerSec === 0) return { add: () => {}, stop: () => {} };
  const periodMs = periodSec * 1000;
  const floor = bytesPerSec * periodSec;
  const samples = [{ at: ctx.clock.monotonic(), bytes: 0 }];
  const timer = setInterval(
    () => {
      const now = ctx.clock.monotonic();
      samples.push({ at: now, bytes: total });
      // Keep as the oldest sample the newest one that is at least a period old.
      while (samples.length > 1 && (samples[1]?.at ?? now) <= now - periodMs) samples.shift();
      const base = samples[0];
      if (base === undefined || now - base.at < periodMs) return;
      const got = total - base.bytes;
      if (got < floor) {
        stop(
          failed(
            ctx,
            `is slower than ${bytesPerSec} B/s for ${periodSec} s (${got} bytes in ${Math.round(now - base.at)} ms)`,
            true,
            { bytesPerSec, periodSec, got },
          ),
        );
      }
    },
    Math.max(50, Math.min(1000, periodMs / 4)),
  );
  return {
    add: (n) => {
      total += n;
    },
    stop: () => clearInterval(timer),
  };
}

/** Sends the GET, follows redirects (never from https to http), and returns the final response. */
async function openResponse(
  ctx: Context,
  offset: number,
  onRequest: (req: ClientRequest) => void,
): Promise<IncomingMessage> {
  let url = ctx.url;
  for (let hop = 0; ; hop += 1) {
    const res = await send(ctx, url, offset, onRequest);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
    res.destroy();
    if (hop >= MAX_REDIRECTS) throw failed(ctx, `was redirected more than ${MAX_REDIRECTS} times`, false);
    let next: URL;
    try {
      next = new URL(location, url);
    } catch (err) {
      throw failed(ctx, "was redirected to an invalid URL", false, { cause: errorMessage(err) });
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw failed(ctx, `was redirected to a ${next.protocol} URL`, false);
    }
    if (url.protocol === "https:" && next.protocol === "http:") {
      throw failed(ctx, `was redirected from https to plain http (${showUrl(next)}): refused`, false);
    }
    url = next;
  }
}

function send(
  ctx: Context,
  url: URL,
  offset: number,
  onRequest: (req: ClientRequest) => void,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { "accept-encoding": "identity", "user-agent": "pos-agent" };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    // agent:false: one connection per request, so nothing lingers in a pool after we stop.
    const base = { method: "GET", headers, agent: false as const };
    const req =
      url.protocol === "https:"
        ? https.request(url, ctx.ca === undefined ? base : { ...base, ca: ctx.ca })
        : http.request(url, base);
    const timer = setTimeout(() => {
      req.destroy(failed(ctx, `got no response within ${ctx.timeoutMs} ms`, true));
    }, ctx.timeoutMs);
    req.once("response", (res) => {
      clearTimeout(timer);
      resolve(res);
    });
    // Stays attached after the response: a late socket error must not become an uncaught 'error'.
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    onRequest(req);
    req.end();
  });
}

/**
 * Checks the status and the declared lengths, then streams the body into `.part` and the hash. Throws
 * without draining: the caller destroys the request, which is all an unwanted body deserves.
 */
async function receive(ctx: Context, t: Transfer, res: IncomingMessage, counted: (n: number) => void) {
  const status = res.statusCode ?? 0;
  const { size } = ctx;
  if (status === 200) {
    const length = headerNumber(res.headers["content-length"]);
    if (length !== undefined && length > size) throw tooLarge(ctx, `offers ${length} bytes`, { length });
    if (length !== undefined && length < size) {
      throw failed(ctx, `offers ${length} bytes, the manifest declares ${size}`, false, { length });
    }
    if (t.offset > 0) {
      // The server ignored our Range: what it sends starts at byte 0.
      ctx.log.info({ url: ctx.shown, bytes: t.offset }, "server ignored Range; restarting from 0");
      await withFileErrors(t.path, () => t.fh.truncate(0));
      t.offset = 0;
      t.hash = createHash("sha256");
      t.resumedFrom = 0;
    }
  } else if (status === 206) {
    checkContentRange(ctx, t.offset, res);
  } else {
    // 408 and 429 are the client-side codes that mean "later"; any 5xx may be a passing outage.
    const retryable = status === 408 || status === 429 || status >= 500;
    throw failed(ctx, `failed: HTTP ${status}`, retryable, { status });
  }

  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (t.offset + chunk.length > size) {
      throw tooLarge(ctx, `sent more than ${size} bytes`, { bytes: t.offset + chunk.length });
    }
    await withFileErrors(t.path, () => writeAt(t.fh, chunk, t.offset));
    t.hash.update(chunk);
    t.offset += chunk.length;
    counted(chunk.length);
    ctx.progress(t.offset);
  }
  if (t.offset < size) {
    throw failed(ctx, `ended at ${t.offset} of ${size} bytes`, true, { bytes: t.offset });
  }
}

function checkContentRange(ctx: Context, offset: number, res: IncomingMessage): void {
  const header = res.headers["content-range"] ?? "";
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header);
  if (match === null) {
    throw failed(ctx, `answered 206 with an unusable Content-Range "${header}"`, false);
  }
  const start = Number(match[1]);
  const end = Number(match[2]);
  const total = match[3] === "*" ? undefined : Number(match[3]);
  if (total !== undefined && total > ctx.size) {
    throw tooLarge(ctx, `offers ${total} bytes`, { length: total });
  }
  if (end >= ctx.size) throw tooLarge(ctx, `sent a range ending at byte ${end}`, { length: end + 1 });
  if (start !== offset || (total !== undefined && total < ctx.size) || end < start) {
    throw failed(ctx, `answered Range bytes=${offset}- with Content-Range "${header}"`, false);
  }
  const length = headerNumber(res.headers["content-length"]);
  if (length !== undefined && length !== end - start + 1) {
    throw failed(ctx, `sent Content-Length ${length} for Content-Range "${header}"`, false);
  }
}

function headerNumber(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}
