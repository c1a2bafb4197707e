import { readFileSync } from "node:fs";
import type { IClientOptions, IClientPublishOptions, MqttClient } from "mqtt";
import mqtt from "mqtt";
import type { Backoff } from "../shared/backoff.js";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/** A connection that lasted this long was healthy: the next reconnect starts from the shortest wait. */
const STABLE_CONNECTION_MS = 30_000;

export interface MqttSessionOptions {
  urls: readonly string[];
  protocolVersion: 4 | 5;
  clientId: string;
  keepaliveSec: number;
  willDelaySec: number;
  /** MQTT 5 session expiry; never below the Will delay, or the broker would send the Will early. */
  sessionExpirySec: number;
  connectTimeoutMs: number;
  tls: { ca?: string; cert?: string; key?: string } | undefined;
  username: string | undefined;
  passwordFile: string | undefined;
  /** Called before each connect attempt: persists and returns the next sessionId. */
  nextSessionId(): number;
  will(sessionId: number): { topic: string; payload: string };
  backoff: Backoff;
  log: Logger;
  now(): number;
}

export interface Connection {
  /** Increments on every connect, so late callbacks from an old client are recognisable. */
  generation: number;
  sessionId: number;
  url: string;
  protocolVersion: 4 | 5;
  /** What the broker allows in flight (MQTT 5 Receive Maximum), if it said. */
  receiveMaximum: number | undefined;
  maximumPacketSize: number | undefined;
  connectedAt: number;
}

export interface SessionListener {
  up(connection: Connection): void;
  down(connection: Connection, reason: string): void;
}

/** An inbound message with the MQTT 5 properties request/response needs (absent under 3.1.1). */
export interface InboundMessage {
  topic: string;
  payload: Buffer;
  responseTopic?: string;
  correlationData?: Buffer;
  /** What is left of the Message Expiry Interval, in seconds, as the broker forwarded it. */
  messageExpirySec?: number;
}

export type MqttSession = ReturnType<typeof createMqttSession>;

/**
 * One MQTT connection at a time, made by us rather than by mqtt.js's own reconnect: each attempt is
 * a new client, so nothing survives in mqtt.js's in-memory store (REFERENCE 1) and each connect
 * carries a fresh sessionId in its Will. URLs are tried in turn; waits follow the backoff.
 */
export function createMqttSession(options: MqttSessionOptions) {
  const { log } = options;
  const listeners = new Set<SessionListener>();
  const messageListeners = new Set<(message: InboundMessage) => void>();
  const subscriptions = new Set<string>();
  let client: MqttClient | undefined;
  let current: Connection | undefined;
  let generation = 0;
  let urlIndex = 0;
  let stopping = false;
  let reconnects = 0;
  let wakeSleep: (() => void) | undefined;
  let loop: Promise<void> | undefined;
  let forcedGeneration = 0;
  /** Brokers that refused MQTT 5 are spoken to in 3.1.1 from then on. */
  const downgraded = new Set<string>();

  /** A listener that throws (e.g. SQLITE_FULL while noting the connection) must not take mqtt.js down with it. */
  function notify(event: "up" | "down", connection: Connection, reason = ""): void {
    for (const listener of listeners) {
      try {
        if (event === "up") listener.up(connection);
        else listener.down(connection, reason);
      } catch (error) {
        log.error({ err: error, event }, "connection listener failed");
      }
    }
  }

  function clientOptions(sessionId: number, protocolVersion: 4 | 5): IClientOptions {
    const will = options.will(sessionId);
    const opts: IClientOptions = {
      clientId: options.clientId,
      protocolVersion,
      clean: true,
      keepalive: options.keepaliveSec,
      reconnectPeriod: 0,
      connectTimeout: options.connectTimeoutMs,
      queueQoSZero: false,
      resubscribe: false,
      rejectUnauthorized: true,
      will: {
        topic: will.topic,
        payload: Buffer.from(will.payload),
        qos: 1,
        retain: true,
        ...(protocolVersion === 5 ? { properties: { willDelayInterval: options.willDelaySec } } : {}),
      },
    };
    if (protocolVersion === 5) {
      opts.properties = { sessionExpiryInterval: Math.max(options.sessionExpirySec, options.willDelaySec) };
    }
    // Certificates and the password are read on every attempt so a renewed file is picked up.
    if (options.tls?.ca !== undefined) opts.ca = readFileSync(options.tls.ca);
    if (options.tls?.cert !== undefined) opts.cert = readFileSync(options.tls.cert);
    if (options.tls?.key !== undefined) opts.key = readFileSync(options.tls.key);
    if (options.username !== undefined) opts.username = options.username;
    if (options.passwordFile !== undefined) opts.password = readFileSync(options.passwordFile, "utf8").trim();
    return opts;
  }

  /** Resolves when this client's connection is over (or never came up). */
  function attempt(
    url: string,
  ): Promise<{ connected: boolean; lasted?: number; downgraded?: boolean; reason: string }> {
    const protocolVersion = downgraded.has(url) ? 4 : options.protocolVersion;
    let sessionId: number;
    let opts: IClientOptions;
    try {
      sessionId = options.nextSessionId();
      opts = clientOptions(sessionId, protocolVersion);
    } catch (error) {
      return Promise.resolve({ connected: false, reason: errorMessage(error) });
    }
    generation += 1;
    const myGeneration = generation;
    log.info({ url, sessionId, protocolVersion }, "connecting");
    const c = mqtt.connect(url, opts);
    client = c;
    return new Promise((resolve) => {
      let connection: Connection | undefined;
      let lastError = "connection closed";
      let downgradedNow = false;
      c.on("connect", (connack) => {
        // Nagle's algorithm holds a command's small response until the broker acknowledges the
        // PUBACK before it, ~40 ms on every round trip; records go out in batches that fill segments anyway.
        (c.stream as { setNoDelay?: (on: boolean) => unknown } | undefined)?.setNoDelay?.(true);
        connection = {
          generation: myGeneration,
          sessionId,
          url,
          protocolVersion,
          receiveMaximum: connack.properties?.receiveMaximum,
          maximumPacketSize: connack.properties?.maximumPacketSize,
          connectedAt: options.now(),
        };
        current = connection;
        log.info({ url, sessionId }, "connected");
        notify("up", connection);
        // A clean start every time: subscriptions are made again on each connection.
        if (subscriptions.size > 0) {
          c.subscribe([...subscriptions], { qos: 1 }, (error) => {
            if (error) log.error({ err: error, topics: [...subscriptions] }, "subscribe failed");
            else log.info({ topics: [...subscriptions] }, "subscribed");
          });
        }
      });
      c.on("message", (topic, payload, packet) => {
        const properties = packet.properties;
        const message: InboundMessage = { topic, payload };
        if (properties?.responseTopic !== undefined) message.responseTopic = properties.responseTopic;
        if (properties?.correlationData !== undefined) message.correlationData = properties.correlationData;
        if (properties?.messageExpiryInterval !== undefined) {
          message.messageExpirySec = properties.messageExpiryInterval;
        }
        for (const listener of messageListeners) {
          try {
            listener(message);
          } catch (error) {
            log.error({ err: error, topic }, "message listener failed");
          }
        }
      });
      c.on("error", (error) => {
        lastError = errorMessage(error);
        const code = (error as { code?: unknown }).code;
        // 3.1.1 CONNACK 1 / MQTT 5 reason 0x84: the broker does not speak MQTT 5.
        if (protocolVersion === 5 && (code === 132 || code === 1)) {
          downgraded.add(url);
          downgradedNow = true;
          log.warn({ url }, "broker refused MQTT 5; falling back to MQTT 3.1.1");
        }
      });
      c.on("close", () => {
        c.removeAllListeners();
        c.on("error", () => {});
        if (client === c) client = undefined;
        if (connection !== undefined) {
          current = undefined;
          if (stopping) log.info({ url, sessionId }, "disconnected");
          else log.warn({ url, sessionId, reason: lastError }, "disconnected");
          notify("down", connection, lastError);
        }
        resolve({
          connected: connection !== undefined,
          lasted: connection === undefined ? 0 : options.now() - connection.connectedAt,
          downgraded: downgradedNow,
          reason: lastError,
        });
      });
    });
  }

  async function run(): Promise<void> {
    while (!stopping) {
      const url = options.urls[urlIndex % options.urls.length] as string;
      const outcome = await attempt(url);
      if (stopping) break;
      if (outcome.connected) {
        reconnects += 1;
        // Only a connection that held resets the backoff: a broker that accepts and then drops us at
        // once (a bad batch, a duplicate client id) must not be hammered at the 1 s floor.
        if ((outcome.lasted ?? 0) >= STABLE_CONNECTION_MS) options.backoff.reset();
      } else if (outcome.downgraded) {
        log.warn({ url }, "retrying the same broker with MQTT 3.1.1");
      } else {
        urlIndex += 1;
        const next = options.urls[urlIndex % options.urls.length];
        log.warn({ url, reason: outcome.reason, next }, "connect failed");
      }
      const delay = options.backoff.next();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wakeSleep = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wakeSleep = undefined;
    }
  }

  return {
    start(): void {
      loop ??= run().catch((error: unknown) => {
        log.error({ err: error }, "connection loop failed; no more reconnects");
      });
    },

    subscribe(listener: SessionListener): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    /** Topics to subscribe to (QoS 1) on every connection, and who receives what arrives on them. */
    listen(topics: readonly string[], listener: (message: InboundMessage) => void): () => void {
      for (const topic of topics) subscriptions.add(topic);
      messageListeners.add(listener);
      return () => messageListeners.delete(listener);
    },

    get connection(): Connection | undefined {
      return current;
    },

    /** Reconnects counted since start (the first connect is not one). */
    get reconnects(): number {
      return Math.max(0, reconnects - 1);
    },

    /**
     * Publishes on the live connection; rejects if there is none or it drops first. Callers decide
     * what an unacknowledged message means; nothing here retries or queues.
     */
    publish(
      topic: string,
      payload: string | Buffer,
      opts: IClientPublishOptions,
      onAck: (error: Error | undefined) => void,
    ): boolean {
      const c = client;
      if (c === undefined || current === undefined || !c.connected) return false;
      c.publish(topic, payload, opts, (error) => onAck(error ?? undefined));
      return true;
    },

    /**
     * Drops the link (connected but no PUBACK for too long, a refused batch); the loop reconnects.
     * Once per connection: ending it fails every pending publish, and each failure asks again.
     */
    forceReconnect(reason: string): void {
      if (stopping || client === undefined || forcedGeneration === generation) return;
      forcedGeneration = generation;
      log.warn({ reason }, "forcing reconnect");
      client.end(true);
    },

    /**
     * Ends the connection with a normal DISCONNECT (no Will) and stops reconnecting. mqtt.js's
     * graceful end first waits for every pending PUBACK, which never come on a dead link; those rows
     * are still in the outbox, so their publishes are abandoned and only the DISCONNECT is waited for.
     */
    async stop(graceMs = 2000): Promise<void> {
      stopping = true;
      wakeSleep?.();
      const c = client;
      if (c !== undefined) {
        for (const id of Object.keys(c.outgoing)) c.removeOutgoingMessage(Number(id));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            c.stream?.destroy();
            resolve();
          }, graceMs);
          c.end(false, {}, () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      await loop;
    },
  };
}
