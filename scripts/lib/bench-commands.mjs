// Command round trips on one broker, in one run:
//   raw     a bare MQTT 5 request/response echo (QoS 1 both ways, Response Topic + Correlation Data):
//           the floor any command path stands on
//   fleet   the fleet-side command client (dist/transport/command-client.js) sending `ping` to one
//           terminal, a simulated one unless a real agent's device id is given, until its terminal answer
//   fanout  diagnostics.run to N simulated terminals until every one has answered: one request per
//           device (as `pos-ops diag DEV1,DEV2,…` does) and one request on a group topic they all share
// Returns numbers and prints nothing. Needs `npm run build` (the client is imported from dist/).
// Start the broker with `set_tcp_nodelay true` (mosquitto's default is false): otherwise Nagle's
// algorithm meets delayed ACKs and every round trip here, raw included, is about 44 ms of waiting.
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import mqtt from "mqtt";
import { startFleet } from "../sim/fleet.mjs";

const DIST = resolve(import.meta.dirname, "../../dist");
const ANSWER_TIMEOUT_MS = 10_000;

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (ms) => Math.round(ms * 1000) / 1000;
  return { medianMs: round(percentile(sorted, 50)), p99Ms: round(percentile(sorted, 99)) };
}

/** A few rounds first, unmeasured: connections, JIT and the broker's topic tree warm up. */
const warmupOf = (rounds) => Math.min(20, Math.ceil(rounds / 10));

async function connected(url, options) {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  await new Promise((res, rej) => {
    client.once("connect", res);
    client.once("error", rej);
  });
  // The floor: Nagle's algorithm off at this end (the broker needs set_tcp_nodelay for its end).
  client.stream.setNoDelay?.(true);
  return client;
}

async function benchRaw(brokerUrl, rounds) {
  const tag = randomBytes(4).toString("hex");
  const requestTopic = `bench/echo/${tag}/req`;
  const replyTopic = `bench/echo/${tag}/res`;
  const echo = await connected(brokerUrl, { clientId: `bench-echo-${tag}` });
  const requester = await connected(brokerUrl, { clientId: `bench-req-${tag}` });
  try {
    echo.on("message", (_topic, payload, packet) => {
      const { responseTopic, correlationData } = packet.properties ?? {};
      if (responseTopic === undefined) return;
      echo.publish(responseTopic, payload, { qos: 1, properties: { correlationData } });
    });
    await echo.subscribeAsync(requestTopic, { qos: 1 });
    await requester.subscribeAsync(replyTopic, { qos: 1 });
    const waiting = new Map();
    requester.on("message", (_topic, _payload, packet) => {
      const key = packet.properties?.correlationData?.toString("utf8");
      waiting.get(key)?.();
    });
    const samples = [];
    const warmup = warmupOf(rounds);
    for (let i = 0; i < warmup + rounds; i += 1) {
      const key = `r-${i}`;
      const payload = JSON.stringify({ id: key, cmd: "ping", args: {} });
      const t0 = performance.now();
      await new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`raw echo: no reply to ${key}`)), ANSWER_TIMEOUT_MS);
        waiting.set(key, () => {
          clearTimeout(timer);
          res();
        });
        requester.publish(requestTopic, payload, {
          qos: 1,
          properties: { responseTopic: replyTopic, correlationData: Buffer.from(key) },
        });
      });
      waiting.delete(key);
      if (i >= warmup) samples.push(performance.now() - t0);
    }
    return { rounds, ...stats(samples) };
  } finally {
    await Promise.all([echo.endAsync(), requester.endAsync()]);
  }
}

async function benchFleet(brokerUrl, rounds, target) {
  const { connectCommandClient } = await import(`${DIST}/transport/command-client.js`);
  let fleet;
  let tenant = target?.tenant;
  let deviceId = target?.deviceId;
  if (deviceId === undefined) {
    tenant ??= "bench";
    deviceId = `BENCH-SIM-${randomBytes(3).toString("hex")}`;
    fleet = await startFleet({ brokerUrl, tenant, deviceIds: [deviceId] });
  }
  const client = await connectCommandClient({ url: brokerUrl });
  try {
    const samples = [];
    const warmup = warmupOf(rounds);
    const run = randomBytes(4).toString("hex");
    for (let i = 0; i < warmup + rounds; i += 1) {
      const id = `bench-${run}-${i}`;
      const now = Date.now();
      const command = { id, cmd: "ping", args: {}, target: deviceId, issuedAt: now, expiresAt: now + 60_000 };
      const t0 = performance.now();
      const answer = await client.request(tenant, { kind: "device", deviceId }, command, {
        timeoutMs: ANSWER_TIMEOUT_MS,
        expirySec: 60,
      });
      const ms = performance.now() - t0;
      client.forget(id);
      if (answer === undefined) throw new Error(`fleet: no answer from ${deviceId} to ${id}`);
      if (answer.response.status !== "succeeded") {
        throw new Error(
          `fleet: ${deviceId} answered ${id} ${answer.response.status} ${answer.response.code ?? ""}`,
        );
      }
      if (i >= warmup) samples.push(ms);
    }
    return { target: deviceId, simulated: fleet !== undefined, rounds, ...stats(samples) };
  } finally {
    await client.close();
    await fleet?.stop();
  }
}

async function benchFanout(brokerUrl, devices, timeoutMs) {
  const { connectCommandClient } = await import(`${DIST}/transport/command-client.js`);
  const tenant = `fan${randomBytes(3).toString("hex")}`;
  const t0 = performance.now();
  const deviceIds = Array.from({ length: devices }, (_, i) => `FAN-${String(i + 1).padStart(5, "0")}`);
  const fleet = await startFleet({ brokerUrl, tenant, deviceIds, groups: { fanout: deviceIds } });
  const connectMs = performance.now() - t0;
  const client = await connectCommandClient({ url: brokerUrl });
  try {
    /** Resolves when `expected` distinct devices have a terminal answer to one of `ids`. */
    const allAnswered = (ids, expected) =>
      new Promise((res, rej) => {
        const done = new Set();
        const timer = setTimeout(() => {
          unsubscribe();
          rej(new Error(`fanout: ${done.size} of ${expected} terminals answered within ${timeoutMs} ms`));
        }, timeoutMs);
        const unsubscribe = client.onResponse((received) => {
          const { status, deviceId } = received.response;
          if (!ids.has(received.id) || !["succeeded", "failed", "rejected"].includes(status)) return;
          done.add(deviceId);
          if (done.size === expected) {
            clearTimeout(timer);
            unsubscribe();
            res();
          }
        });
      });
    const command = (id, target) => {
      const now = Date.now();
      return { id, cmd: "diagnostics.run", args: {}, target, issuedAt: now, expiresAt: now + 60_000 };
    };

    const run = randomBytes(4).toString("hex");
    const listIds = new Set(fleet.deviceIds.map((deviceId) => `fan-${run}-${deviceId}`));
    const startList = performance.now();
    const listDone = allAnswered(listIds, devices);
    await Promise.all(
      fleet.deviceIds.map((deviceId) =>
        client.send(tenant, { kind: "device", deviceId }, command(`fan-${run}-${deviceId}`, deviceId)),
      ),
    );
    await listDone;
    const listMs = performance.now() - startList;

    const groupId = `fan-${run}-group`;
    const startGroup = performance.now();
    const groupDone = allAnswered(new Set([groupId]), devices);
    await client.send(tenant, { kind: "group", group: "fanout" }, command(groupId, "group:fanout"));
    await groupDone;
    const groupMs = performance.now() - startGroup;
    return {
      devices,
      connectMs: Math.round(connectMs),
      listMs: Math.round(listMs),
      groupMs: Math.round(groupMs),
    };
  } finally {
    await client.close();
    await fleet.stop();
  }
}

/**
 * @param {import("./bench-commands.d.mts").BenchCommandsOptions} options
 * @returns {Promise<import("./bench-commands.d.mts").BenchCommandsResult>}
 */
export async function benchCommands(options) {
  const rounds = options.rounds ?? 1000;
  const raw = await benchRaw(options.brokerUrl, rounds);
  const fleet = await benchFleet(options.brokerUrl, rounds, options.target);
  const devices = options.fanoutDevices ?? 1000;
  const fanout =
    devices > 0
      ? await benchFanout(options.brokerUrl, devices, options.fanoutTimeoutMs ?? 120_000)
      : undefined;
  return { raw, fleet, ...(fanout === undefined ? {} : { fanout }) };
}
