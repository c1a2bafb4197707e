#!/usr/bin/env node
// Many simulated terminals in one process, for `pos-ops cmd` / `pos-ops diag` tests, the demo and the
// fan-out benchmark. Each is its own MQTT 5 client (client id = device id) subscribed to its
// ROOT/cmd/req and its groups' topics, answering as the agent does (CONTRACT 6): on the request's
// Response Topic with its Correlation Data, else ROOT/cmd/res; one terminal status per id, repeats
// answered from memory with duplicate:true, target and expiresAt checked. It knows `ping` and
// `diagnostics.run` (a plausible report, the same for a device on every run; some devices warn or
// fail). Signed envelopes are unwrapped but NOT verified: this tests the fleet side, not the agent.
// Some devices can be silent (subscribed, never answer) or slow (every answer delayed).
//
// Usage: node scripts/sim/fleet.mjs --broker URL [--tenant acme] [--count 50] [--prefix POS-]
//        [--group NAME=ID,ID…]… [--silent ID,ID…] [--slow ID=MS,…] [--seed 1]
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import mqtt from "mqtt";
import { prng } from "../lib/prng.mjs";

/** The check names of the agent's diagnostics suite (src/diagnostics). */
export const DIAGNOSTIC_CHECKS = Object.freeze([
  "database",
  "outbox",
  "disk",
  "memory",
  "clock",
  "broker",
  "peripherals",
  "certificates",
  "components",
]);

/** A detail sentence per check for pass, warn and fail. */
const DETAILS = {
  database: [
    "quick_check ok, 38 MiB",
    "freelist is 31% of the file; a VACUUM would help",
    "quick_check: page 412 is corrupt",
  ],
  outbox: [
    "12 records, the oldest 2 s old",
    "18 400 records, the oldest 41 min old",
    "full: 2 310 records dropped",
  ],
  disk: ["data 38% used", "data 91% used (alert at 90%)", "data 99% used, 41 MiB free"],
  memory: ["62% used", "93% used (alert at 92%)", "98% used"],
  clock: ["synchronised, above the floor", "not synchronised for 3 h", "2 days behind the clock floor"],
  broker: ["PUBACK in 14 ms", "PUBACK in 1 840 ms", "no PUBACK within 10 s"],
  peripherals: [
    "2 peripherals online and answering: printer, pinpad",
    "printer paper near end",
    "printer paper out",
  ],
  certificates: [
    "device certificate valid for 301 days",
    "device certificate expires in 12 days",
    "device certificate expired 3 days ago",
  ],
  components: [
    "pos-app 2.4.0 healthy",
    "pos-app restarted 3 times in the last hour",
    "pos-app health check failing",
  ],
};

/** FNV-1a: a device id to a 32-bit seed, so each device gets its own report on every run. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The report a simulated device returns: about 65% all pass, 25% with warnings, 10% with a failure.
 * @param {string} deviceId
 * @param {{ seed?: number, checks?: readonly string[], now?: number }} [options]
 */
export function simulatedReport(deviceId, options = {}) {
  const random = prng(hash(deviceId) ^ (options.seed ?? 1));
  const profile = random();
  const statuses = DIAGNOSTIC_CHECKS.map(() => "pass");
  const pickIndex = () => Math.floor(random() * DIAGNOSTIC_CHECKS.length);
  if (profile < 0.1) {
    statuses[pickIndex()] = "fail";
    if (random() < 0.5) {
      const i = pickIndex();
      if (statuses[i] === "pass") statuses[i] = "warn";
    }
  } else if (profile < 0.35) {
    statuses[pickIndex()] = "warn";
    if (random() < 0.3) statuses[pickIndex()] = "warn";
  }
  const all = DIAGNOSTIC_CHECKS.map((name, i) => {
    const status = statuses[i] ?? "pass";
    const detail = DETAILS[name]?.[status === "pass" ? 0 : status === "warn" ? 1 : 2] ?? status;
    return {
      name,
      status,
      detail,
      durationMs: 1 + Math.floor(random() * (name === "broker" ? 60 : 25)),
    };
  });
  const known = DIAGNOSTIC_CHECKS.join(", ");
  // As the agent: the checks asked for, in that order; an unknown name is a fail of that name.
  const checks =
    options.checks === undefined
      ? all
      : [...new Set(options.checks)].map(
          (name) =>
            all.find((check) => check.name === name) ?? {
              name,
              status: "fail",
              detail: `no check is named "${name}"; known: ${known}`,
              durationMs: 0,
            },
        );
  const count = (status) => checks.filter((check) => check.status === status).length;
  const worst =
    checks.find((check) => check.status === "fail") ?? checks.find((check) => check.status === "warn");
  const summary = { pass: count("pass"), warn: count("warn"), fail: count("fail") };
  if (worst !== undefined) summary.worst = worst.name;
  return { ts: options.now ?? Date.now(), deviceId, summary, checks };
}

/** `POS-001` … with at least three digits. */
export function fleetDeviceIds(count, prefix = "POS-") {
  const width = Math.max(3, String(count).length);
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(width, "0")}`);
}

/**
 * @param {import("./fleet.d.mts").FleetOptions} options
 * @returns {Promise<import("./fleet.d.mts").Fleet>}
 */
export async function startFleet(options) {
  const tenant = options.tenant ?? "acme";
  const deviceIds = options.deviceIds
    ? [...options.deviceIds]
    : fleetDeviceIds(options.count ?? 50, options.prefix);
  const silent = new Set(options.silent ?? []);
  const slow = new Map(Object.entries(options.slow ?? {}));
  const seed = options.seed ?? 1;
  const runMs = options.runMs ?? 0;
  const concurrency = options.connectConcurrency ?? 100;
  /** @type {Map<string, string[]>} */
  const groupsOf = new Map(deviceIds.map((id) => [id, []]));
  for (const [group, members] of Object.entries(options.groups ?? {})) {
    for (const member of members) groupsOf.get(member)?.push(group);
  }
  /** @type {Map<string, unknown[]>} */
  const received = new Map(deviceIds.map((id) => [id, []]));
  /** @type {import("mqtt").MqttClient[]} */
  const clients = [];
  const timers = new Set();
  let stopped = false;
  let requestCount = 0;

  /** @param {string} deviceId */
  const startOne = async (deviceId) => {
    const root = `pos/v1/${tenant}/${deviceId}`;
    const groups = groupsOf.get(deviceId) ?? [];
    const groupTopics = groups.map((group) => `pos/v1/${tenant}/groups/${group}/cmd/req`);
    const allowedTargets = new Set([deviceId, ...groups.map((group) => `group:${group}`)]);
    /** @type {Map<string, object>} terminal responses by command id */
    const journal = new Map();
    const client = mqtt.connect(options.brokerUrl, {
      clientId: deviceId,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
      ...options.mqttOptions,
    });
    clients.push(client);
    // Answers are small and interactive; Nagle's algorithm would hold each one back 40 ms or more.
    if (options.noDelay ?? true) client.on("connect", () => client.stream.setNoDelay?.(true));
    client.on("error", () => {}); // reconnects on its own; a test sees the missing answers
    await new Promise((res, rej) => {
      client.once("connect", res);
      client.once("close", () => rej(new Error(`${deviceId}: cannot connect to ${options.brokerUrl}`)));
    });
    await client.subscribeAsync([`${root}/cmd/req`, ...groupTopics], { qos: 1 });

    const later = (fn, ms) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        fn();
      }, ms);
      timers.add(timer);
    };
    const publish = (response, packet) => {
      const responseTopic = packet.properties?.responseTopic ?? `${root}/cmd/res`;
      const correlationData = packet.properties?.correlationData;
      const body = JSON.stringify({ v: 1, deviceId, ts: Date.now(), ...response });
      const delay = slow.get(deviceId) ?? 0;
      const send = () => {
        if (stopped) return;
        client.publish(responseTopic, body, {
          qos: 1,
          ...(correlationData ? { properties: { correlationData } } : {}),
        });
      };
      if (delay <= 0) send();
      else later(send, delay);
    };
    const finish = (id, terminal, packet) => {
      journal.set(id, terminal);
      publish({ id, ...terminal }, packet);
    };

    client.on("message", (_topic, payload, packet) => {
      requestCount += 1;
      let request;
      try {
        request = JSON.parse(payload.toString("utf8"));
      } catch {
        request = undefined;
      }
      const log = received.get(deviceId);
      log?.push(request);
      if (log && log.length > 50) log.shift();
      if (silent.has(deviceId)) return;
      let command = request;
      if (
        request &&
        typeof request === "object" &&
        "signatures" in request &&
        typeof request.payload === "string"
      ) {
        try {
          command = JSON.parse(Buffer.from(request.payload, "base64url").toString("utf8"));
        } catch {
          command = undefined;
        }
      }
      const id = typeof command?.id === "string" ? command.id : undefined;
      if (id === undefined || typeof command.cmd !== "string") {
        publish(
          { id: id ?? "unknown", status: "rejected", code: "BAD_REQUEST", message: "not a command" },
          packet,
        );
        return;
      }
      const stored = journal.get(id);
      if (stored !== undefined) {
        publish({ id, ...stored, duplicate: true }, packet);
        return;
      }
      if (command.target !== undefined && !allowedTargets.has(command.target)) {
        finish(
          id,
          {
            status: "rejected",
            code: "WRONG_TARGET",
            message: `target ${command.target} is not ${deviceId}`,
          },
          packet,
        );
        return;
      }
      if (typeof command.expiresAt === "number" && command.expiresAt < Date.now()) {
        finish(id, { status: "rejected", code: "EXPIRED", message: "the command expired" }, packet);
        return;
      }
      switch (command.cmd) {
        case "ping":
          finish(id, { status: "succeeded", result: { pong: true, ts: Date.now() } }, packet);
          return;
        case "diagnostics.run": {
          const checks = command.args?.checks;
          if (
            checks !== undefined &&
            (!Array.isArray(checks) || checks.some((name) => typeof name !== "string"))
          ) {
            const message = "args.checks: must be a list of check names";
            finish(id, { status: "rejected", code: "BAD_REQUEST", message }, packet);
            return;
          }
          publish({ id, status: "accepted" }, packet);
          const run = () => {
            const report = simulatedReport(deviceId, { seed, ...(checks ? { checks } : {}) });
            finish(id, { status: "succeeded", result: report }, packet);
          };
          if (runMs > 0) later(run, runMs);
          else run();
          return;
        }
        default:
          finish(
            id,
            { status: "rejected", code: "UNKNOWN_COMMAND", message: `no command ${command.cmd}` },
            packet,
          );
      }
    });
  };

  try {
    for (let i = 0; i < deviceIds.length; i += concurrency) {
      await Promise.all(deviceIds.slice(i, i + concurrency).map(startOne));
    }
  } catch (error) {
    stopped = true;
    await Promise.all(clients.map((client) => client.endAsync(true)));
    throw error;
  }

  return {
    tenant,
    deviceIds,
    groupsOf: (deviceId) => [...(groupsOf.get(deviceId) ?? [])],
    received: (deviceId) => [...(received.get(deviceId) ?? [])],
    get requestCount() {
      return requestCount;
    },
    reportFor: (deviceId, checks) => simulatedReport(deviceId, { seed, ...(checks ? { checks } : {}) }),
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all(clients.map((client) => client.endAsync(true)));
    },
  };
}

/** `a=1,b=2` → { a: "1", b: "2" } */
function pairs(text) {
  return Object.fromEntries(
    text
      .split(",")
      .filter(Boolean)
      .map((pair) => {
        const at = pair.indexOf("=");
        if (at <= 0) throw new Error(`"${pair}" is not NAME=VALUE`);
        return [pair.slice(0, at), pair.slice(at + 1)];
      }),
  );
}

async function main() {
  const { values } = parseArgs({
    options: {
      broker: { type: "string" },
      tenant: { type: "string" },
      count: { type: "string" },
      prefix: { type: "string" },
      group: { type: "string", multiple: true },
      silent: { type: "string" },
      slow: { type: "string" },
      seed: { type: "string" },
    },
  });
  if (values.broker === undefined) throw new Error("--broker URL is required");
  const groups = {};
  for (const spec of values.group ?? []) {
    const at = spec.indexOf("=");
    if (at <= 0) throw new Error(`--group "${spec}" is not NAME=ID,ID…`);
    groups[spec.slice(0, at)] = spec
      .slice(at + 1)
      .split(",")
      .filter(Boolean);
  }
  const slow = Object.fromEntries(
    Object.entries(pairs(values.slow ?? "")).map(([id, ms]) => [id, Number(ms)]),
  );
  const fleet = await startFleet({
    brokerUrl: values.broker,
    ...(values.tenant ? { tenant: values.tenant } : {}),
    count: Number(values.count ?? 50),
    ...(values.prefix ? { prefix: values.prefix } : {}),
    groups,
    silent: (values.silent ?? "").split(",").filter(Boolean),
    slow,
    seed: Number(values.seed ?? 1),
  });
  const first = fleet.deviceIds[0];
  const last = fleet.deviceIds[fleet.deviceIds.length - 1];
  console.error(
    `fleet: ${fleet.deviceIds.length} terminals ${first}…${last} on ${values.broker}, tenant ${fleet.tenant} (Ctrl-C to stop)`,
  );
  const shutdown = () => {
    fleet.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`fleet: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
