import mqtt, { type MqttClient } from "mqtt";

export interface ReceivedRecord {
  seq: number;
  ts: number;
  historical?: boolean;
  [key: string]: unknown;
}

export interface Consumer {
  client: MqttClient;
  /** Distinct records by seq. */
  records: Map<number, ReceivedRecord>;
  /** Records received again with a seq already seen. */
  duplicates: number;
  /** Every message as received: topic and parsed payload. */
  messages: Array<{ topic: string; payload: Record<string, unknown>; retain: boolean }>;
  waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A fleet-side consumer: MQTT 5 with a persistent session (clean start off, long session expiry), so
 * the broker queues for it while it is away, as a real back end would. De-duplicates by seq.
 */
export async function startConsumer(options: {
  url: string;
  clientId: string;
  topics: string[];
  persistent?: boolean;
  protocolVersion?: 4 | 5;
}): Promise<Consumer> {
  const persistent = options.persistent ?? true;
  const client = mqtt.connect(options.url, {
    clientId: options.clientId,
    protocolVersion: options.protocolVersion ?? 5,
    clean: !persistent,
    reconnectPeriod: 500,
    ...(persistent && options.protocolVersion !== 4 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
  });
  const records = new Map<number, ReceivedRecord>();
  const messages: Consumer["messages"] = [];
  const consumer: Consumer = {
    client,
    records,
    duplicates: 0,
    messages,
    waitFor(predicate, timeoutMs, what) {
      return new Promise((resolve, reject) => {
        const started = Date.now();
        const timer = setInterval(() => {
          if (predicate()) {
            clearInterval(timer);
            resolve();
          } else if (Date.now() - started > timeoutMs) {
            clearInterval(timer);
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
          }
        }, 20);
      });
    },
    close() {
      return new Promise((resolve) => client.end(false, {}, () => resolve()));
    },
  };
  client.on("message", (topic, payload, packet) => {
    const parsed = JSON.parse(payload.toString("utf8")) as Record<string, unknown>;
    messages.push({ topic, payload: parsed, retain: packet.retain });
    if (Array.isArray(parsed.records)) {
      for (const record of parsed.records as ReceivedRecord[]) {
        if (records.has(record.seq)) consumer.duplicates += 1;
        else records.set(record.seq, record);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  await client.subscribeAsync(options.topics, { qos: 1 });
  return consumer;
}
