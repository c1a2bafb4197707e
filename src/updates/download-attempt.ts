import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import http, { type ClientRequest, type IncomingMessage } from "node:http";
import https from "node:https";
import type { Clock } from "../shared/clock.js";
import { AgentError, errorMessage, isDiskFull } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/**
 * One HTTP(S) attempt of a release download (download.ts): the request and its redirects, the
 * status, length and Content-Range checks that stop endless data before a byte is written, the rate
 * floor against slow retrieval, and appending the body to the `.part` file while hashing it.
 */

const MAX_REDIRECTS = 5;

export interface MinRate {
  /** 0 turns the floor off. */
  bytesPerSec: number;
  periodSec: number;
}

/** Mutable state of one call, shared by its attempts. */
export interface Transfer {
  fh: FileHandle;
  /** The `.part` path, for messages. */
  path: string;
  closed: boolean;
  offset: number;
  hash: Hash;
  resumedFrom: number;
}

export interface Context {
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

export function failed(
  ctx: Context,
  message: string,
  retryable: boolean,
  details: Record<string, unknown> = {},
) {
  return new AgentError("DOWNLOAD_FAILED", `download of ${ctx.shown} ${message}`, {
    retryable,
    details: { url: ctx.shown, size: ctx.size, ...details },
  });
}

export function tooLarge(ctx: Context, message: string, details: Record<string, unknown> = {}) {
  return new AgentError("TOO_LARGE", `${ctx.shown} ${message}, the manifest declares ${ctx.size} bytes`, {
    details: { url: ctx.shown, size: ctx.size, ...details },
  });
}

export function showUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

export async function withFileErrors<T>(path: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    if (isDiskFull(err)) throw new AgentError("DISK_FULL", `disk full while writing ${path}`, { cause: err });
    throw new AgentError("INTERNAL", `cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

export async function writeAt(fh: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * One HTTP request (with its redirects) that appends to `.part` until `size` bytes are in. `stop`
 * ends it from outside (abort); the rate watch and the header timeout end it from inside.
 */
export function runAttempt(ctx: Context, t: Transfer): { done: Promise<void>; stop: (err: Error) => void } {
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
