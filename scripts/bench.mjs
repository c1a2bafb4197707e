#!/usr/bin/env node
// npm run bench: the agent's delivery against raw mqtt.js on the same local Mosquitto, in one run,
// printed as ratios. Figures are machine-dependent; the ratios are what the targets speak of.
//   raw      mqtt.js QoS 1 publishes of 200-byte messages, window 1000 (the baseline)
//   e2e      intake -> commit -> publish -> PUBACK -> delete, records/s
//   drain    a backlog of BACKLOG records drained after the link comes back, records/s and RSS growth
//   idle     agent RSS at rest vs a bare node process that has only imported the dependencies
//   serial   lines/s from a PTY through framing, level, storm filter, scrubbing and SQLite commit, vs
//            node-serialport's ReadlineParser alone on the same kind of PTY (needs socat)
//   scrub    the card-data scrubber over a realistic log corpus, MB/s
//   commands ping round trip to a real agent (publish → terminal response) vs a raw MQTT 5
//            request/response echo, median and p99; diagnostics fan-out to 1 000 simulated terminals
//   host     each systeminformation call's cost, and the host sampling's CPU per hour at a 10 s
//            interval vs an idle node process, with the longest event-loop stall it caused
//   install  a 256 MiB, 1 000-file release installed vs cp -r + sha256sum; RSS 16 vs 256 MiB; delta size
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import mqtt from "mqtt";
import { benchCommands } from "./lib/bench-commands.mjs";
import { benchHost } from "./lib/bench-host.mjs";
import { benchInstall } from "./lib/bench-install.mjs";
import { benchScrubber } from "./lib/bench-scrubber.mjs";
import { benchSerialCapture } from "./lib/bench-serial.mjs";
import { freePort } from "./lib/free-port.mjs";
import { startMosquitto } from "./lib/mosquitto.mjs";
import { startTcpProxy } from "./lib/tcp-proxy.mjs";

const ROOT = resolve(import.meta.dirname, "..");
const RAW_MESSAGES = Number(process.env.BENCH_RAW ?? 50_000);
const E2E_RECORDS = Number(process.env.BENCH_E2E ?? 100_000);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 1_000_000);
const SERIAL_LINES = Number(process.env.BENCH_SERIAL_LINES ?? 200_000);
const INSTALL_MIB = Number(process.env.BENCH_INSTALL_MIB ?? 256);
const WORK = join(tmpdir(), `pos-bench-${process.pid}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const line200 = (i) => `bench record ${String(i).padStart(9, "0")} `.padEnd(200, "x");
const rssOf = (pid) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) * 1024;
const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

async function rawRate(url) {
  const client = mqtt.connect(url, { clientId: "bench-raw", protocolVersion: 5 });
  await new Promise((r) => client.once("connect", r));
  const payload = Buffer.from(line200(0));
  let sent = 0;
  let acked = 0;
  const t0 = performance.now();
  await new Promise((done) => {
    const pump = () => {
      while (sent < RAW_MESSAGES && sent - acked < 1000) {
        sent += 1;
        client.publish("bench/raw", payload, { qos: 1 }, (error) => {
          if (error) throw error;
          acked += 1;
          if (acked === RAW_MESSAGES) done();
          else pump();
        });
      }
    };
    pump();
  });
  const seconds = (performance.now() - t0) / 1000;
  await client.endAsync();
  return RAW_MESSAGES / seconds;
}

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

async function startAgent(name, brokerPort) {
  const dir = join(WORK, name);
  mkdirSync(dir, { recursive: true });
  const intakePort = await freePort();
  const config = {
    deviceId: `BENCH-${name}`,
    tenant: "bench",
    dataDir: join(dir, "data"),
    mqtt: { urls: [`mqtt://127.0.0.1:${brokerPort}`], reconnect: { minSec: 1, maxSec: 1 } },
    intake: { host: "127.0.0.1", port: intakePort },
    telemetry: { intervalSec: 3600 },
    outbox: { maxBytes: 1024 * 1024 * 1024 },
    log: { level: "warn" },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  const child = spawn(
    process.execPath,
    [join(ROOT, "bin/pos-agent"), "run", "--config", join(dir, "config.json")],
    {
      stdio: ["ignore", "ignore", "ignore"],
    },
  );
  children.add(child);
  child.once("exit", () => children.delete(child));
  for (let i = 0; i < 100; i++) {
    if (await health(intakePort).catch(() => undefined)) break;
    await sleep(50);
  }
  return { child, intakePort };
}

async function health(port) {
  const response = await fetch(`http://127.0.0.1:${port}/v1/health`);
  return response.json();
}

async function post(port, from, count) {
  const items = Array.from({ length: count }, (_, i) => ({
    source: "bench",
    level: "info",
    line: line200(from + i),
  }));
  const response = await fetch(`http://127.0.0.1:${port}/v1/logs`, {
    method: "POST",
    body: JSON.stringify(items),
  });
  if (response.status !== 200) throw new Error(`intake answered ${response.status}`);
}

async function waitEmpty(port, onTick = () => {}) {
  for (;;) {
    onTick();
    const h = await health(port);
    if (h.connected && h.outbox.records === 0) return;
    await sleep(20);
  }
}

async function e2eRate(brokerPort) {
  const { child, intakePort } = await startAgent("e2e", brokerPort);
  await sleep(500);
  const t0 = performance.now();
  // Four producers, as several apps on a terminal would be.
  const perProducer = E2E_RECORDS / 4;
  await Promise.all(
    [0, 1, 2, 3].map(async (p) => {
      for (let done = 0; done < perProducer; done += 1000)
        await post(intakePort, p * perProducer + done, 1000);
    }),
  );
  await waitEmpty(intakePort);
  const seconds = (performance.now() - t0) / 1000;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  return E2E_RECORDS / seconds;
}

async function drain(brokerPort) {
  const link = await startTcpProxy({ targetPort: brokerPort });
  await link.down();
  const { child, intakePort } = await startAgent("drain", link.port);
  process.stdout.write(`  filling a backlog of ${BACKLOG} records`);
  // 4 000 lines of ~260 bytes of JSON each stay under the intake's 1 MiB body limit.
  for (let done = 0; done < BACKLOG; done += 4_000) {
    await post(intakePort, done, Math.min(4_000, BACKLOG - done));
    if (done % 100_000 === 0) process.stdout.write(".");
  }
  process.stdout.write("\n");
  await sleep(2000);
  const baseline = rssOf(child.pid);
  let peak = baseline;
  await link.up();
  // The clock starts when the agent is connected again: its reconnect backoff is not drain time.
  while (!(await health(intakePort)).connected) await sleep(5);
  const t0 = performance.now();
  await waitEmpty(intakePort, () => {
    peak = Math.max(peak, rssOf(child.pid));
  });
  const seconds = (performance.now() - t0) / 1000;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  await link.close();
  return { rate: BACKLOG / seconds, baseline, peak, seconds };
}

async function idle(brokerPort) {
  const bare = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      "await Promise.all(['mqtt','better-sqlite3','zod','pino','serialport','systeminformation'].map((m) => import(m))); setTimeout(() => {}, 60000);",
    ],
    { cwd: ROOT, stdio: "ignore" },
  );
  const { child } = await startAgent("idle", brokerPort);
  // Past start-up: V8's memory reducer has had time to shrink both heaps.
  await sleep(Number(process.env.BENCH_IDLE_MS ?? 15_000));
  const bareRss = rssOf(bare.pid);
  const agentRss = rssOf(child.pid);
  bare.kill("SIGKILL");
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  return { bareRss, agentRss };
}

async function main() {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  // Mosquitto's defaults (no TCP_NODELAY), as the earlier figures were measured; command round trips
  // are Nagle-bound then (see README, Performance).
  const broker = await startMosquitto({ dir: join(WORK, "broker"), persistence: false });
  try {
    console.log(`broker: Mosquitto on ${broker.url}; node ${process.version}`);
    const raw = await rawRate(broker.url);
    console.log(`raw mqtt.js QoS 1, 200 B, window 1000: ${raw.toFixed(0)} msg/s`);
    const e2e = await e2eRate(broker.port);
    console.log(`agent end-to-end (intake->PUBACK->delete): ${e2e.toFixed(0)} records/s`);
    const d = await drain(broker.port);
    console.log(
      `backlog drain: ${d.rate.toFixed(0)} records/s (${d.seconds.toFixed(1)} s), RSS ${mib(d.baseline)} -> peak ${mib(d.peak)}`,
    );
    const i = await idle(broker.port);
    console.log(
      `idle RSS: agent ${mib(i.agentRss)}, bare node with the dependencies imported ${mib(i.bareRss)}`,
    );
    const hasSocat = spawnSync("sh", ["-c", "command -v socat"]).status === 0;
    const serial = hasSocat
      ? await benchSerialCapture({ lines: SERIAL_LINES, dir: join(WORK, "serial") })
      : undefined;
    if (serial) {
      console.log(
        `serial capture of ${serial.lines} lines (${mib(serial.bytes)}): ReadlineParser ${serial.raw.toFixed(0)} lines/s, agent (parse, storm, scrub, commit) ${serial.pipeline.toFixed(0)} lines/s, ${serial.redactions} redactions`,
      );
    } else {
      console.log("serial capture: skipped (socat is not installed)");
    }
    const scrub = benchScrubber({ megabytes: 50 });
    console.log(
      `card-data scrubber: ${scrub.mbPerSec.toFixed(1)} MB/s over ${(scrub.bytes / 1e6).toFixed(0)} MB`,
    );
    const commandAgent = await startAgent("cmd", broker.port);
    await sleep(1500); // connected and subscribed
    const commands = await benchCommands({
      brokerUrl: broker.url,
      rounds: 500,
      target: { tenant: "bench", deviceId: "BENCH-cmd" },
      fanoutDevices: 1000,
    });
    commandAgent.child.kill("SIGTERM");
    console.log(
      `command round trip (ping to a real agent): median ${commands.fleet.medianMs.toFixed(2)} ms, p99 ${commands.fleet.p99Ms.toFixed(2)} ms; raw MQTT 5 request/response echo: median ${commands.raw.medianMs.toFixed(2)} ms, p99 ${commands.raw.p99Ms.toFixed(2)} ms`,
    );
    if (commands.fanout) {
      console.log(
        `diagnostics fan-out to ${commands.fanout.devices} simulated terminals: ${commands.fanout.listMs.toFixed(0)} ms one request each, ${commands.fanout.groupMs.toFixed(0)} ms by group topic (connecting them took ${commands.fanout.connectMs.toFixed(0)} ms)`,
      );
    }
    const host = await benchHost({ samples: 8, dataDir: WORK });
    console.log("\nsysteminformation calls (ms: first / median; spawns; worst event-loop stall):");
    for (const call of host.calls) {
      console.log(
        `  ${call.name.padEnd(18)} ${call.firstMs.toFixed(1).padStart(7)} / ${call.medianMs.toFixed(1).padStart(6)} ms  spawns ${String(call.spawns).padStart(2)} (pids ${String(call.pidsCreated).padStart(3)})  stall ${call.stallMs.toFixed(0).padStart(3)} ms${call.error ? `  ${call.error}` : ""}`,
      );
    }
    console.log("our readers (/proc, /sys, statfs; median ms):");
    for (const reader of host.readers)
      console.log(`  ${reader.name.padEnd(18)} ${reader.medianMs.toFixed(2)} ms`);
    console.log(
      `host sampling: ${host.source.cpuMsPerSample.toFixed(2)} ms CPU a sample (${host.source.metrics} metrics, ${host.source.spawns} spawns) = ${host.source.cpuSecPerHourAt10s.toFixed(2)} CPU s/hour at 10 s; idle node ${host.source.idleNodeCpuSecPerHour.toFixed(2)} CPU s/hour; process watch scan of ${host.processWatch.processes} processes ${host.processWatch.medianMs.toFixed(2)} ms`,
    );
    console.log("");
    const install = await benchInstall({ mib: INSTALL_MIB, dir: join(WORK, "install") });
    for (const line of install.lines) console.log(line);
    // The sampler's own CPU is already what it adds above an idle process; the idle figure is context.
    const aboveIdlePct = (host.source.cpuSecPerHourAt10s / 3600) * 100;
    console.log("\n| measure | value | target | result |\n|---|---|---|---|");
    const row = (name, value, target, pass) =>
      console.log(`| ${name} | ${value} | ${target} | ${pass ? "ok" : "MISSED"} |`);
    row("delivered / raw QoS 1 rate", `${(e2e / raw).toFixed(2)}x`, ">= 1.0x", e2e / raw >= 1);
    row(
      `drain of ${BACKLOG} / raw QoS 1 rate`,
      `${(d.rate / raw).toFixed(2)}x`,
      ">= 1.5x",
      d.rate / raw >= 1.5,
    );
    row(
      "RSS growth during drain",
      mib(d.peak - d.baseline),
      "<= 10 MiB",
      d.peak - d.baseline <= 10 * 1048576,
    );
    row(
      "idle RSS / bare process",
      `${(i.agentRss / i.bareRss).toFixed(2)}x`,
      "<= 1.15x",
      i.agentRss / i.bareRss <= 1.15,
    );
    if (serial) {
      row(
        "serial lines committed / ReadlineParser rate",
        `${(serial.pipeline / serial.raw).toFixed(2)}x`,
        ">= 0.5x",
        serial.pipeline / serial.raw >= 0.5,
      );
    }
    row("card-data scrubber", `${scrub.mbPerSec.toFixed(0)} MB/s`, ">= 50 MB/s", scrub.mbPerSec >= 50);
    row(
      "command round trip, median / p99 (raw echo)",
      `${commands.fleet.medianMs.toFixed(2)} / ${commands.fleet.p99Ms.toFixed(2)} ms (${commands.raw.medianMs.toFixed(2)} / ${commands.raw.p99Ms.toFixed(2)} ms)`,
      "reported",
      true,
    );
    row(
      "host sampling at 10 s, CPU it adds to an idle node",
      `${aboveIdlePct.toFixed(3)} % of a core`,
      "<= 0.5 %",
      aboveIdlePct <= 0.5,
    );
    row(
      "longest event-loop stall from sampling",
      `${host.source.stallMs.toFixed(0)} ms`,
      "<= 20 ms",
      host.source.stallMs <= 20,
    );
    row(
      `install of ${mib(install.bytes)}, ${install.files} files / cp -r + sha256sum`,
      `${install.ratio.toFixed(2)}x`,
      ">= 1.0x",
      install.ratio >= 1,
    );
    row(
      `install RSS growth, ${install.rss.largeMib} / ${install.rss.smallMib} MiB tree`,
      `${install.rss.ratio.toFixed(2)}x (${mib(install.rss.largeGrowth)} / ${mib(install.rss.smallGrowth)})`,
      "flat (<= 1.25x)",
      install.rss.ratio <= 1.25,
    );
    row(
      `delta artifact for 1 changed file of ${install.files} / (changed + manifest)`,
      `${install.delta.ratio.toFixed(3)}x (artifact / changed ${install.delta.overChanged.toFixed(3)}x)`,
      "<= 1.05x",
      install.delta.ratio <= 1.05,
    );
  } finally {
    await broker.stop();
    rmSync(WORK, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(`bench failed: ${error.stack ?? error}`);
  process.exit(1);
});
