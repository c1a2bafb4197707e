import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CardDataGuard } from "../shared/card-data-guard.js";
import { type AgentError, type ErrorCode, isAgentError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { Outbox, OutboxStats, RecordInput } from "../store/outbox.js";
import {
  EventItem,
  LockName,
  LogItem,
  MAX_BODY_BYTES,
  MAX_ITEMS,
  TakeLockBody,
  validateBody,
  validateItems,
} from "./schema.js";

export interface IntakeLock {
  name: string;
  /** ms since 1970. */
  expiresAt: number;
}

/**
 * Update locks the terminal's apps take while they must not be disturbed (a payment in progress); the
 * update preconditions defer while any is held. Names and TTLs arrive validated by `schema.ts`.
 */
export interface IntakeLockRegistry {
  /** Takes the lock, or extends one already held; throws AgentError BUSY when too many are held. */
  take(name: string, ttlSec: number): IntakeLock;
  /** True when a live lock of that name was held. */
  release(name: string): boolean;
  held(): IntakeLock[];
}

export interface IntakeOptions {
  host: string;
  port: number;
  outbox: Pick<Outbox, "append">;
  health: () => { connected: boolean; outbox: OutboxStats };
  now: () => number;
  /** Card-data scrubbing of every line, message and detail before it is stored (REFERENCE 4). */
  guard: Pick<CardDataGuard, "line" | "value">;
  log: Logger;
  /** Absent: the lock endpoints answer 404. */
  locks?: IntakeLockRegistry;
}

const STOP_GRACE_MS = 2000;
const STATUS_OF: Partial<Record<ErrorCode, number>> = { DISK_FULL: 507, TOO_LARGE: 413, BUSY: 409 };
/** The tally name for card data found in what an app calls itself. */
const INTAKE = "intake";

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly errors: string[],
  ) {
    super(errors.join("; "));
  }
}

/**
 * The loopback API through which the terminal's own apps hand logs and events to the agent. It
 * answers 200 only after the records are committed (synchronous=FULL), so an app may forget what it
 * sent once it has the answer; anything invalid refuses the whole request and stores nothing.
 */
export function createIntakeServer(options: IntakeOptions) {
  const { log } = options;

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: error }, "intake request failed");
      send(res, 500, { code: "INTERNAL", errors: ["internal error"] });
    });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (path === "/v1/health") {
        requireMethod(req, "GET");
        const health = options.health();
        send(res, 200, {
          connected: health.connected,
          outbox: {
            records: health.outbox.records,
            bytes: health.outbox.bytes,
            oldestTs: health.outbox.oldestTs ?? null,
          },
        });
        return;
      }
      if (path === "/v1/logs" || path === "/v1/events") {
        requireMethod(req, "POST");
        const items = parseArray(await readBody(req));
        const prepared = path === "/v1/logs" ? logRecords(items) : eventRecords(items);
        const records: RecordInput[] = [];
        const itemIndex: number[] = [];
        prepared.forEach((record, index) => {
          if (record === undefined) return;
          records.push(record);
          itemIndex.push(index);
        });
        const result = appendNamingItems(records, itemIndex);
        const withheld = prepared.length - records.length;
        send(res, 200, {
          accepted: records.length,
          firstSeq: result.firstSeq,
          lastSeq: result.lastSeq,
          ...(withheld > 0 ? { withheld } : {}),
        });
        return;
      }
      if (options.locks !== undefined && path !== undefined && /^\/v1\/locks(\/|$)/.test(path)) {
        await handleLock(options.locks, req, res, path);
        return;
      }
      throw new HttpError(404, "BAD_REQUEST", [`no such endpoint: ${req.method} ${path}`]);
    } catch (error) {
      if (error instanceof HttpError) {
        send(res, error.status, { code: error.code, errors: error.errors });
      } else if (isAgentError(error)) {
        const status = STATUS_OF[error.code] ?? 500;
        send(res, status, { code: error.code, errors: [error.message] });
      } else {
        throw error;
      }
    }
  }

  /** One item too large for an MQTT message (the outbox measures the JSON it stores) is bad input. */
  function appendNamingItems(records: RecordInput[], itemIndex: readonly number[]) {
    try {
      return options.outbox.append(records);
    } catch (error) {
      const index = isAgentError(error) && error.code === "TOO_LARGE" ? error.details?.index : undefined;
      if (typeof index !== "number") throw error;
      const { size, limit } = (error as AgentError).details ?? {};
      throw new HttpError(400, "BAD_REQUEST", [
        `[${itemIndex[index]}]: is ${size} bytes of JSON; at most ${limit}`,
      ]);
    }
  }

  // An item the scrubber could not vouch for is withheld (fail closed) and counted in the answer.
  function logRecords(items: unknown[]): Array<RecordInput | undefined> {
    const parsed = validateItems(LogItem, items);
    if (!parsed.ok) throw new HttpError(400, "BAD_REQUEST", parsed.errors);
    const now = options.now();
    return parsed.value.map((item) => {
      // The source is the app's own word too: it names tallies, events and metrics, so it is scrubbed first.
      const source = options.guard.line(INTAKE, item.source);
      const line = source === undefined ? undefined : options.guard.line(source, item.line);
      if (source === undefined || line === undefined) return undefined;
      return { stream: "logs", ts: item.ts ?? now, body: { source, level: item.level, line } };
    });
  }

  function eventRecords(items: unknown[]): Array<RecordInput | undefined> {
    const parsed = validateItems(EventItem, items);
    if (!parsed.ok) throw new HttpError(400, "BAD_REQUEST", parsed.errors);
    const now = options.now();
    return parsed.value.map(({ ts, ...fields }) => {
      const source = fields.source === undefined ? INTAKE : options.guard.line(INTAKE, fields.source);
      const body = source === undefined ? undefined : options.guard.value(source, fields);
      if (body === undefined) return undefined;
      return { stream: "events", ts: ts ?? now, body };
    });
  }

  return {
    async start(): Promise<{ host: string; port: number }> {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, options.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      log.info({ host: address.address, port: address.port }, "intake listening");
      return { host: address.address, port: address.port };
    },

    /** Stops accepting; requests already inside finish (their records are committed or not, never half). */
    stop(): Promise<void> {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // A client holding a request open must not hold up the clean stop past the service manager's patience.
        setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS).unref();
      });
    },
  };
}

/** `GET /v1/locks`, `POST /v1/locks/{name}` `{"ttlSec"}` (take or extend), `DELETE /v1/locks/{name}`. */
async function handleLock(
  locks: IntakeLockRegistry,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  if (path === "/v1/locks") {
    requireMethod(req, "GET");
    send(res, 200, { locks: locks.held() });
    return;
  }
  if (req.method !== "POST" && req.method !== "DELETE")
    throw new HttpError(405, "BAD_REQUEST", [`use POST or DELETE here, not ${req.method}`]);
  const name = LockName.safeParse(path.slice("/v1/locks/".length));
  if (!name.success) throw new HttpError(400, "BAD_REQUEST", [`(name): ${name.error.issues[0]?.message}`]);
  if (req.method === "DELETE") {
    send(res, 200, { released: locks.release(name.data) });
    return;
  }
  const body = validateBody(TakeLockBody, parseJson(await readBody(req)));
  if (!body.ok) throw new HttpError(400, "BAD_REQUEST", body.errors);
  send(res, 200, locks.take(name.data, body.value.ttlSec));
}

function requireMethod(req: IncomingMessage, method: string): void {
  if (req.method !== method)
    throw new HttpError(405, "BAD_REQUEST", [`use ${method} here, not ${req.method}`]);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners("data");
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function tooLarge(): HttpError {
  return new HttpError(413, "TOO_LARGE", [`(body): larger than ${MAX_BODY_BYTES} bytes`]);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, "BAD_REQUEST", [`(body): not valid JSON: ${(error as Error).message}`]);
  }
}

function parseArray(body: Buffer): unknown[] {
  const value = parseJson(body);
  if (!Array.isArray(value))
    throw new HttpError(400, "BAD_REQUEST", ["(body): must be a JSON array of items"]);
  if (value.length > MAX_ITEMS) {
    throw new HttpError(413, "TOO_LARGE", [
      `(body): ${value.length} items; at most ${MAX_ITEMS} per request`,
    ]);
  }
  return value;
}

export type IntakeServer = ReturnType<typeof createIntakeServer>;

function send(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  };
  // An oversized body is not read to the end: close the connection rather than drain it.
  if (status === 413) headers.connection = "close";
  res.writeHead(status, headers);
  res.end(text);
  if (status === 413) res.once("finish", () => res.req.destroy());
}
