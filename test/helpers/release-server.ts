import { createHash } from "node:crypto";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";

/**
 * A real HTTP(S) release server for update tests: serves artifacts and manifests by path, answers
 * Range requests properly (206 + Content-Range, 416 past the end), logs every request, and misbehaves
 * on demand per path (dropped links, endless data, throttling, stalls, error statuses, ignored Range,
 * redirects). Content may be a Buffer or a generated body, so a large artifact is never held in memory.
 *
 *   const server = await startReleaseServer();
 *   server.put("/a.tar", content, { dropAfter: 100_000 });
 *   await downloadArtifact({ url: server.url("/a.tar"), ... });
 *   server.requestsFor("/a.tar") // [{ status: 200, ... }, { range: "bytes=100000-", status: 206, ... }]
 *   await server.close();
 */

/** Content produced on demand: `slice(start, end)` returns bytes [start, end) and must be deterministic. */
export interface GeneratedBody {
  size: number;
  slice(start: number, end: number): Buffer;
}

export type ReleaseBody = Buffer | GeneratedBody;

/** How a path misbehaves. All optional; without any the path is served like a plain static file. */
export interface RouteKnobs {
  /** Answer this status (with a short text body) instead of the content... */
  status?: number;
  /** ...for this many requests only, then serve normally. Default: every request. */
  statusTimes?: number;
  /** Answer 302 to this URL (absolute, or a path on this server). */
  redirectTo?: string;
  /** Destroy the socket after sending this many body bytes of a response (flushed first)... */
  dropAfter?: number;
  /** ...in this many responses, then serve normally. Default 1. */
  dropTimes?: number;
  /** Send this many bytes past the content, or never stop. A number keeps an honest Content-Length (unless `chunked`). */
  extraBytes?: number | "endless";
  /** Send no Content-Length (chunked transfer encoding). Implied by `extraBytes: "endless"`. */
  chunked?: boolean;
  /** Throttle the body to about this rate (chunks every 100 ms). */
  bytesPerSec?: number;
  /** Send the headers and then nothing (true), or stop after this many body bytes; the socket stays open. */
  stall?: boolean | number;
  /** Answer every GET with 200 and the whole content, as servers without Range support do. */
  ignoreRange?: boolean;
  /** Extra response headers (e.g. content-type for a manifest). */
  headers?: Record<string, string>;
}

export interface RequestRecord {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Path and query as sent. */
  target: string;
  range: string | undefined;
  status: number;
  /** Body bytes handed to the socket so far (updated while the response runs). */
  bytesSent: number;
  /** True once the response ended normally; false while running or when dropped, stalled or cut off. */
  finished: boolean;
}

export interface ReleaseServer {
  readonly origin: string;
  readonly port: number;
  /** Every request in arrival order. */
  readonly requests: RequestRecord[];
  url(path: string): string;
  /** Serves `body` at `path` (query strings are ignored when matching), replacing what was there. */
  put(path: string, body: ReleaseBody, knobs?: RouteKnobs): void;
  /** Replaces the knobs of a path and resets its fault counters. */
  configure(path: string, knobs: RouteKnobs): void;
  remove(path: string): void;
  requestsFor(path: string): RequestRecord[];
  /** Client connections currently open. */
  openConnections(): number;
  /** Resolves once no client connection is open; rejects after `timeoutMs`. */
  waitForNoConnections(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface ReleaseServerOptions {
  /** PEM key and certificate: serve https instead of http. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

interface Route {
  body: ReleaseBody;
  knobs: RouteKnobs;
  statusServed: number;
  dropsDone: number;
}

const CHUNK_BYTES = 64 * 1024;
const THROTTLE_TICK_MS = 100;

export async function startReleaseServer(options: ReleaseServerOptions = {}): Promise<ReleaseServer> {
  const routes = new Map<string, Route>();
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) =>
      res.destroy(err instanceof Error ? err : new Error(String(err))),
    );
  };
  const server: Server = options.tls ? createHttpsServer(options.tls, handler) : createHttpServer(handler);
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `${options.tls ? "https" : "http"}://127.0.0.1:${port}`;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? "/";
    const path = target.split("?")[0] ?? "/";
    const record: RequestRecord = {
      method: req.method ?? "GET",
      path,
      target,
      range: req.headers.range,
      status: 0,
      bytesSent: 0,
      finished: false,
    };
    requests.push(record);
    res.on("finish", () => {
      record.finished = true;
    });
    const route = routes.get(path);
    if (route === undefined) return answer(res, record, 404);
    const { knobs } = route;
    if (knobs.redirectTo !== undefined) return answer(res, record, 302, { location: knobs.redirectTo });
    if (knobs.status !== undefined && route.statusServed < (knobs.statusTimes ?? Number.POSITIVE_INFINITY)) {
      route.statusServed += 1;
      return answer(res, record, knobs.status);
    }

    const totalSize = bodySize(route.body);
    let start = 0;
    let end = totalSize;
    let status = 200;
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      ...(knobs.ignoreRange ? {} : { "accept-ranges": "bytes" }),
      ...knobs.headers,
    };
    if (req.headers.range !== undefined && !knobs.ignoreRange) {
      const range = parseRange(req.headers.range, totalSize);
      if (range === "unsatisfiable") {
        return answer(res, record, 416, { "content-range": `bytes */${totalSize}` });
      }
      if (range !== undefined) {
        ({ start, end } = range);
        status = 206;
        headers["content-range"] = `bytes ${start}-${end - 1}/${totalSize}`;
      }
    }
    const extra = knobs.extraBytes ?? 0;
    if (!knobs.chunked && extra !== "endless") headers["content-length"] = String(end - start + extra);
    record.status = status;
    res.writeHead(status, headers);
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const drop = knobs.dropAfter !== undefined && route.dropsDone < (knobs.dropTimes ?? 1);
    if (drop) route.dropsDone += 1;
    await sendBody(res, record, route.body, {
      start,
      end,
      extra,
      drop: drop ? knobs.dropAfter : undefined,
      knobs,
    });
  }

  return {
    origin,
    port,
    requests,
    url: (path) => `${origin}${path}`,
    put(path, body, knobs = {}) {
      routes.set(path, { body, knobs, statusServed: 0, dropsDone: 0 });
    },
    configure(path, knobs) {
      const route = routes.get(path);
      if (route === undefined) throw new Error(`release server: nothing at ${path}`);
      routes.set(path, { body: route.body, knobs, statusServed: 0, dropsDone: 0 });
    },
    remove(path) {
      routes.delete(path);
    },
    requestsFor: (path) => requests.filter((r) => r.path === path),
    openConnections: () => sockets.size,
    async waitForNoConnections(timeoutMs = 2000) {
      const deadline = Date.now() + timeoutMs;
      while (sockets.size > 0) {
        if (Date.now() > deadline)
          throw new Error(`release server: ${sockets.size} connection(s) still open`);
        await delay(10);
      }
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function answer(
  res: ServerResponse,
  record: RequestRecord,
  status: number,
  headers: Record<string, string> = {},
) {
  record.status = status;
  const text = `${status}\n`;
  res.writeHead(status, { "content-type": "text/plain", "content-length": String(text.length), ...headers });
  res.end(text);
}

function bodySize(body: ReleaseBody): number {
  return Buffer.isBuffer(body) ? body.length : body.size;
}

function bodySlice(body: ReleaseBody, start: number, end: number): Buffer {
  return Buffer.isBuffer(body) ? body.subarray(start, end) : body.slice(start, end);
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; undefined (serve it all) for anything else, as RFC 9110 allows. */
function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return undefined;
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(first);
  if (start >= size) return "unsatisfiable";
  const end = last === "" ? size : Math.min(size, Number(last) + 1);
  if (end <= start) return undefined;
  return { start, end };
}

interface SendPlan {
  start: number;
  end: number;
  extra: number | "endless";
  drop: number | undefined;
  knobs: RouteKnobs;
}

/** Writes the body with backpressure, applying the path's throttle, stall, drop and extra bytes. */
async function sendBody(res: ServerResponse, record: RequestRecord, body: ReleaseBody, plan: SendPlan) {
  const { knobs } = plan;
  const contentLength = plan.end - plan.start;
  const total = plan.extra === "endless" ? Number.POSITIVE_INFINITY : contentLength + plan.extra;
  const stallAt = knobs.stall === true ? 0 : knobs.stall === false ? undefined : knobs.stall;
  const chunkBytes = knobs.bytesPerSec
    ? Math.max(1, Math.floor((knobs.bytesPerSec * THROTTLE_TICK_MS) / 1000))
    : CHUNK_BYTES;
  let sent = 0;
  while (sent < total) {
    if (res.destroyed) return;
    if (stallAt !== undefined && sent >= stallAt) return; // headers out, socket open, nothing more
    let n = Math.min(chunkBytes, total - sent);
    if (sent < contentLength) n = Math.min(n, contentLength - sent);
    if (plan.drop !== undefined) n = Math.min(n, plan.drop - sent);
    if (stallAt !== undefined) n = Math.min(n, stallAt - sent);
    const chunk =
      sent < contentLength
        ? bodySlice(body, plan.start + sent, plan.start + sent + n)
        : Buffer.alloc(n, 0x5a); // filler past the content
    sent += n;
    if (plan.drop !== undefined && sent >= plan.drop) {
      // Flush first, so the client really holds `dropAfter` bytes when the link goes.
      await new Promise<void>((resolve) => res.write(chunk, () => resolve()));
      record.bytesSent = sent;
      res.socket?.destroy();
      return;
    }
    const flushed = res.write(chunk);
    record.bytesSent = sent;
    if (!flushed) await drainOrClose(res);
    if (knobs.bytesPerSec) await delay(THROTTLE_TICK_MS);
  }
  if (!res.destroyed) res.end();
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * A deterministic pseudo-random body of any size, generated per slice (a murmur3 mix of each 32-bit
 * word's index), so a 1 GiB artifact costs no memory in the server.
 */
export function patternBody(size: number, seed = 1): GeneratedBody {
  const salt = Math.imul(seed, 0x9e3779b9);
  return {
    size,
    slice(start, end) {
      const first = Math.floor(start / 4);
      const words = new Uint32Array(Math.ceil(end / 4) - first);
      for (let i = 0; i < words.length; i += 1) {
        let h = (first + i) ^ salt;
        h ^= h >>> 16;
        h = Math.imul(h, 0x85ebca6b);
        h ^= h >>> 13;
        h = Math.imul(h, 0xc2b2ae35);
        h ^= h >>> 16;
        words[i] = h;
      }
      const bytes = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
      return bytes.subarray(start - first * 4, end - first * 4);
    },
  };
}

/** sha256 (hex) of a body, computed a slice at a time. */
export function sha256Of(body: ReleaseBody): string {
  const hash = createHash("sha256");
  const size = bodySize(body);
  for (let at = 0; at < size; at += 1024 * 1024)
    hash.update(bodySlice(body, at, Math.min(size, at + 1024 * 1024)));
  return hash.digest("hex");
}
