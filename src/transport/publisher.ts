import type { Clock } from "../shared/clock.js";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { Outbox, StoredRecord, Stream } from "../store/outbox.js";
import { type Batch, buildBatches } from "./batch.js";
import type { Connection, MqttSession } from "./mqtt-session.js";
import type { Topics } from "./topics.js";

export interface PublisherOptions {
  outbox: Outbox;
  session: MqttSession;
  topics: Topics;
  deviceId: string;
  maxMessageBytes: number;
  /** Our own bound on unacknowledged messages: mqtt.js has none and silently fails past 65 535. */
  maxInflight: number;
  ackTimeoutMs: number;
  /**
   * The body as it may leave the device: card data is scrubbed before it is stored and checked again
   * here (REFERENCE 4), so a hole upstream still cannot put a card number on the wire.
   */
  checkBody: (record: StoredRecord) => string;
  clock: Clock;
  log: Logger;
}

export interface PublishLatency {
  count: number;
  avgMs: number;
  maxMs: number;
}

/**
 * PUBACK reasons that will not change on a retry: topic name invalid, packet too large, payload format
 * invalid. Such a batch is dropped and counted, not resent forever. Not 0x87 (not authorised): that is
 * a broker ACL being deployed wrong, and deleting the fleet's backlog for it would be worse than waiting.
 */
const PERMANENT_REFUSALS = new Set([0x90, 0x95, 0x99]);
const PAGE_ROWS = 2000;
const PAGE_BYTES = 256 * 1024;
/**
 * Bytes awaiting PUBACK at once. Batches are large, so a message window alone would keep megabytes
 * alive long enough to reach V8's old generation; this keeps the drain's memory flat.
 */
const MAX_INFLIGHT_BYTES = 1024 * 1024;
/** Fixed header, topic length prefix, packet id and MQTT 5 property length. */
const PACKET_OVERHEAD = 16;

type Inflight = { batch: Batch; sentAt: number; generation: number };

/**
 * Drains the SQLite outbox to the broker, oldest first. The outbox is the only queue: the cursor and
 * the in-flight set live for one connection; on every reconnect we start again from the oldest row
 * still on disk, and a row is deleted only after its PUBACK.
 */
export function createPublisher(options: PublisherOptions) {
  const { outbox, session, topics, clock, log } = options;
  let connection: Connection | undefined;
  let cursor = 0;
  let historicalUpTo = 0;
  let queue: Batch[] = [];
  const inflight = new Map<number, Inflight>();
  let inflightBytes = 0;
  let removals: Array<{ stream: Stream; fromSeq: number; toSeq: number }> = [];
  let pumpScheduled = false;
  let removalScheduled = false;
  let watchdog: NodeJS.Timeout | undefined;
  let paused = false;
  let stopped = false;
  let latency = { count: 0, sumMs: 0, maxMs: 0 };

  const topicOf: Record<Stream, string> = {
    telemetry: topics.telemetry,
    events: topics.events,
    logs: topics.logs,
  };

  function payloadLimit(conn: Connection, stream: Stream): number {
    const brokerLimit = conn.maximumPacketSize ?? Number.POSITIVE_INFINITY;
    return (
      Math.min(options.maxMessageBytes, brokerLimit) - Buffer.byteLength(topicOf[stream]) - PACKET_OVERHEAD
    );
  }

  function schedulePump(): void {
    if (pumpScheduled || paused || connection === undefined) return;
    pumpScheduled = true;
    setImmediate(pump);
  }

  function fillQueue(conn: Connection): boolean {
    const rows = outbox.readAfter(cursor, PAGE_ROWS, PAGE_BYTES).map((row) => {
      const body = options.checkBody(row);
      return body === row.body ? row : { ...row, body };
    });
    const last = rows.at(-1);
    if (last === undefined) return false;
    cursor = last.seq;
    const header = { deviceId: options.deviceId, sessionId: conn.sessionId };
    // One limit for all streams: the longest topic decides, so a batch fits whichever it goes to.
    const limit = Math.min(
      payloadLimit(conn, "telemetry"),
      payloadLimit(conn, "events"),
      payloadLimit(conn, "logs"),
    );
    queue = [];
    for (const batch of buildBatches(rows, header, limit, historicalUpTo)) {
      if (batch.count > 1 || Buffer.byteLength(batch.payload) <= limit) {
        queue.push(batch);
        continue;
      }
      // A single record larger than the broker accepts (its Maximum Packet Size is below ours): the
      // broker would drop the connection for it every time, and nothing behind it would move.
      log.error(
        { stream: batch.stream, seq: batch.fromSeq, bytes: batch.payload.length, limit },
        "record larger than the broker accepts; dropping it",
      );
      discard(batch);
    }
    return queue.length > 0 || fillQueue(conn);
  }

  function discard(batch: Batch): void {
    try {
      outbox.discard(batch.stream, batch.fromSeq, batch.toSeq);
    } catch (error) {
      log.error({ err: error }, "could not drop a refused batch; it will be sent again");
    }
  }

  function pump(): void {
    pumpScheduled = false;
    const conn = connection;
    if (conn === undefined || paused) return;
    const window = Math.min(options.maxInflight, conn.receiveMaximum ?? Number.POSITIVE_INFINITY);
    try {
      while (inflight.size < window && inflightBytes < MAX_INFLIGHT_BYTES) {
        if (queue.length === 0 && !fillQueue(conn)) break;
        const batch = queue.shift() as Batch;
        const sentAt = clock.monotonic();
        const accepted = session.publish(topicOf[batch.stream], batch.payload, { qos: 1 }, (error) =>
          onAck(batch, sentAt, conn.generation, error),
        );
        if (!accepted) {
          queue.unshift(batch);
          break;
        }
        inflight.set(batch.fromSeq, { batch, sentAt, generation: conn.generation });
        // String length, not bytes: a bound, and no scan of 64 KiB per message on the hot path.
        inflightBytes += batch.payload.length;
      }
    } catch (error) {
      log.error({ err: error }, "reading the outbox failed; will retry on the next append or reconnect");
    }
  }

  function onAck(batch: Batch, sentAt: number, generation: number, error: Error | undefined): void {
    if (error === undefined) {
      // A PUBACK is a PUBACK even if the connection that carried it is gone: the row can go.
      removals.push({ stream: batch.stream, fromSeq: batch.fromSeq, toSeq: batch.toSeq });
      scheduleRemoval();
      const ms = clock.monotonic() - sentAt;
      latency.count += 1;
      latency.sumMs += ms;
      latency.maxMs = Math.max(latency.maxMs, ms);
    }
    if (connection?.generation !== generation) return;
    if (inflight.delete(batch.fromSeq)) inflightBytes -= batch.payload.length;
    if (error !== undefined) {
      const reason = (error as { code?: unknown }).code;
      if (typeof reason === "number" && PERMANENT_REFUSALS.has(reason)) {
        log.error(
          { stream: batch.stream, fromSeq: batch.fromSeq, toSeq: batch.toSeq, reason },
          "broker refused batch for good; dropping it",
        );
        discard(batch);
      } else {
        session.forceReconnect(`publish failed: ${errorMessage(error)}`);
        return;
      }
    }
    schedulePump();
  }

  function scheduleRemoval(): void {
    if (removalScheduled) return;
    removalScheduled = true;
    setImmediate(flushRemovals);
  }

  function flushRemovals(): void {
    removalScheduled = false;
    if (removals.length === 0 || stopped) return;
    const ranges = removals;
    removals = [];
    try {
      outbox.removeMany(ranges);
    } catch (error) {
      // Not deleting only means sending again later (consumers de-duplicate by seq).
      log.error({ err: error }, "deleting acknowledged records failed");
    }
  }

  function checkAcks(): void {
    if (connection === undefined) return;
    const now = clock.monotonic();
    for (const entry of inflight.values()) {
      if (now - entry.sentAt > options.ackTimeoutMs) {
        session.forceReconnect(`no PUBACK for ${Math.round((now - entry.sentAt) / 1000)} s`);
        return;
      }
    }
  }

  const unsubscribeOutbox = outbox.onAppend(schedulePump);
  const unsubscribeSession = session.subscribe({
    up(conn) {
      connection = conn;
      cursor = 0;
      queue = [];
      inflight.clear();
      inflightBytes = 0;
      historicalUpTo = outbox.lastSeq();
      schedulePump();
    },
    down() {
      connection = undefined;
      queue = [];
      inflight.clear();
      inflightBytes = 0;
      flushRemovals();
    },
  });

  return {
    start(): void {
      watchdog = setInterval(checkAcks, Math.min(1000, options.ackTimeoutMs));
      watchdog.unref();
    },

    get inflight(): number {
      return inflight.size;
    },

    /** PUBACK latency since the previous call. */
    takeLatency(): PublishLatency {
      const taken = {
        count: latency.count,
        avgMs: latency.count === 0 ? 0 : latency.sumMs / latency.count,
        maxMs: latency.maxMs,
      };
      latency = { count: 0, sumMs: 0, maxMs: 0 };
      return taken;
    },

    /** Waits until nothing is left to send or the time is up; true if the outbox emptied. */
    async drain(timeoutMs: number): Promise<boolean> {
      const deadline = clock.monotonic() + timeoutMs;
      while (clock.monotonic() < deadline) {
        flushRemovals();
        if (outbox.stats().records === 0) return true;
        if (connection === undefined) return false;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      return false;
    },

    /** Sends nothing more (the clean stop's `offline` goes alone); acknowledgements still delete rows. */
    pause(): void {
      paused = true;
    },

    /** Final: deletes what was acknowledged and lets go of the outbox, which may be closed after this. */
    stop(): void {
      if (watchdog !== undefined) clearInterval(watchdog);
      unsubscribeOutbox();
      unsubscribeSession();
      paused = true;
      flushRemovals();
      stopped = true;
    },
  };
}
export type Publisher = ReturnType<typeof createPublisher>;
