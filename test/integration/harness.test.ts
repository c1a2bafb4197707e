// Proves the test harness itself: a private Mosquitto that drops nothing and keeps its queue across
// restarts, and a TCP proxy that can cut, refuse and stall a real MQTT connection.
import { mkdtemp, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mqtt from "mqtt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Broker, startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy, type TcpProxy } from "../../scripts/lib/tcp-proxy.mjs";

const QUEUED = 1_500; // above mosquitto's default max_queued_messages of 1000

let dir: string;
let broker: Broker | undefined;
let proxy: TcpProxy | undefined;
const clients: mqtt.MqttClient[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "harness-"));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await proxy?.close();
  await broker?.stop();
  proxy = undefined;
  broker = undefined;
  await rm(dir, { recursive: true, force: true });
});

function track(client: mqtt.MqttClient): mqtt.MqttClient {
  clients.push(client);
  return client;
}

/** A persistent MQTT 5 session: the broker keeps its subscriptions and queue while it is away. */
function persistentOptions(clientId: string): mqtt.IClientOptions {
  return {
    clientId,
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  };
}

async function subscribeThenLeave(url: string, clientId: string, topic: string): Promise<void> {
  const sub = await mqtt.connectAsync(url, persistentOptions(clientId));
  await sub.subscribeAsync(topic, { qos: 1 });
  await sub.endAsync();
}

async function publishMany(url: string, topic: string, count: number): Promise<void> {
  const pub = track(await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 }));
  for (let i = 0; i < count; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(i + 100, count); j += 1) {
      batch.push(pub.publishAsync(topic, String(j), { qos: 1 }));
    }
    await Promise.all(batch);
  }
  await pub.endAsync();
}

/** Reconnect the persistent session and collect distinct payloads until `count` arrived. */
async function drain(url: string, clientId: string, count: number): Promise<Set<string>> {
  const seen = new Set<string>();
  const client = track(mqtt.connect(url, { ...persistentOptions(clientId), manualConnect: true }));
  const all = new Promise<void>((resolve) => {
    client.on("message", (_topic, payload) => {
      seen.add(payload.toString());
      if (seen.size >= count) resolve();
    });
  });
  const connack = new Promise<mqtt.IConnackPacket>((resolve) => client.once("connect", resolve));
  client.connect();
  expect((await connack).sessionPresent).toBe(true);
  await Promise.race([all, sleep(10_000)]);
  return seen;
}

/** Next `event` from an mqtt.js client; unlike events.once, an 'error' (ECONNRESET after a cut) is not a failure. */
function next(client: mqtt.MqttClient, event: "connect" | "close"): Promise<void> {
  return new Promise((resolve) => client.once(event, () => resolve()));
}

function tcpRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}

describe("mosquitto harness", () => {
  it("starts a broker on a free port that an mqtt.js client can use", { timeout: 15_000 }, async () => {
    broker = await startMosquitto({ dir });
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
    expect(broker.running).toBe(true);

    const client = track(await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 }));
    await client.subscribeAsync("harness/echo", { qos: 1 });
    const received = new Promise<[string, Buffer]>((resolve) =>
      client.once("message", (topic, payload) => resolve([topic, payload])),
    );
    await client.publishAsync("harness/echo", "hello", { qos: 1 });
    const [topic, payload] = await received;
    expect(topic).toBe("harness/echo");
    expect(payload.toString()).toBe("hello");
  });

  it("delivers more than 1000 QoS 1 messages queued for an offline persistent session", {
    timeout: 15_000,
  }, async () => {
    broker = await startMosquitto({ dir });
    await subscribeThenLeave(broker.url, "harness-offline", "harness/queue");
    await publishMany(broker.url, "harness/queue", QUEUED);

    const seen = await drain(broker.url, "harness-offline", QUEUED);
    expect(seen.size).toBe(QUEUED);
    expect(await broker.logTail(200)).not.toMatch(/being dropped/);
  });

  it("keeps the queued messages of an offline session across restart()", { timeout: 15_000 }, async () => {
    broker = await startMosquitto({ dir });
    const { port } = broker;
    await subscribeThenLeave(broker.url, "harness-restart", "harness/restart");
    await publishMany(broker.url, "harness/restart", QUEUED);

    const before = broker.pid;
    await broker.restart();
    expect(broker.running).toBe(true);
    expect(broker.pid).not.toBe(before);
    expect(broker.port).toBe(port);

    const seen = await drain(broker.url, "harness-restart", QUEUED);
    expect(seen.size).toBe(QUEUED);
  });

  it("stops on kill() and comes back on the same port with restart()", { timeout: 15_000 }, async () => {
    broker = await startMosquitto({ dir, persistence: false });
    await broker.kill();
    expect(broker.running).toBe(false);
    expect(await tcpRefused(broker.port)).toBe(true);
    await broker.restart();
    expect(await tcpRefused(broker.port)).toBe(false);
  });
});

describe("tcp proxy harness", () => {
  it("drops an mqtt.js connection on cut(), refuses on down() and accepts again on up()", {
    timeout: 15_000,
  }, async () => {
    broker = await startMosquitto({ dir, persistence: false });
    proxy = await startTcpProxy({ targetPort: broker.port });
    const client = track(
      mqtt.connect(`mqtt://127.0.0.1:${proxy.port}`, {
        protocolVersion: 5,
        reconnectPeriod: 100,
        connectTimeout: 2_000,
      }),
    );
    const errors: string[] = [];
    client.on("error", (err) => errors.push(String("code" in err ? err.code : err.message)));
    await next(client, "connect");
    expect(proxy.connections).toBe(1);

    // cut: the link drops, the proxy keeps listening, the client gets back in by itself
    const closed = next(client, "close");
    proxy.cut();
    await closed;
    expect(client.connected).toBe(false);
    expect(errors).toContain("ECONNRESET");
    await next(client, "connect");
    expect(proxy.connections).toBe(1);

    // down: nothing listens; the client's reconnects are refused
    await proxy.down();
    await until(() => !client.connected && proxy?.connections === 0);
    expect(await tcpRefused(proxy.port)).toBe(true);
    await sleep(300);
    expect(client.connected).toBe(false);

    // up: same port, the client reconnects
    await proxy.up();
    await next(client, "connect");
    expect(client.connected).toBe(true);
  });

  it("holds bytes while stalled and forwards them after resume()", { timeout: 15_000 }, async () => {
    broker = await startMosquitto({ dir, persistence: false });
    proxy = await startTcpProxy({ targetPort: broker.port });
    const client = track(
      await mqtt.connectAsync(`mqtt://127.0.0.1:${proxy.port}`, { protocolVersion: 5, reconnectPeriod: 0 }),
    );

    proxy.stall();
    let acked = false;
    const publish = client.publishAsync("harness/stall", "x", { qos: 1 }).then(() => {
      acked = true;
    });
    await sleep(300);
    expect(acked).toBe(false);
    expect(client.connected).toBe(true);

    proxy.resume();
    await publish;
    expect(acked).toBe(true);
  });
});
