// What host sampling costs on this machine: (a) each systeminformation call that could feed host
// metrics, timed for wall ms, processes spawned and the longest event-loop stall while it ran;
// (b) the agent's own host source (dist/metrics/host) per sample in CPU ms, extrapolated to CPU
// seconds per hour at a 10 s interval, against an idle Node process measured over the same wall time;
// (c) one process-watch scan of every /proc/<pid>/cmdline. Needs `npm run build` first. Prints nothing.
import childProcess from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, tmpdir } from "node:os";
import { resolve } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { killOnExit } from "./kill-on-exit.mjs";

const DIST = resolve(import.meta.dirname, "../../dist/metrics/host");
const SI_CALLS = [
  "time",
  "currentLoad",
  "mem",
  "fsSize",
  "battery",
  "cpuTemperature",
  "networkInterfaces",
  "networkStats",
  "wifiConnections",
  "wifiNetworks",
  "osInfo",
  "processes",
];
/** Linux USER_HZ: /proc/<pid>/stat counts CPU time in these. */
const TICK_MS = 10;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const silentLog = { child: () => silentLog, debug() {}, info() {}, warn() {}, error() {} };

let spawnCount = 0;
let hooked = false;

/**
 * Counts child_process calls. systeminformation binds `require('child_process').exec` (and execSync,
 * spawn…) when its files load, so the hook must be in place before it is first required; processes
 * those children start (a shell's pipeline) are not counted here but show in `pidsCreated`.
 */
function installSpawnHook() {
  if (hooked) return;
  hooked = true;
  for (const name of ["exec", "execFile", "spawn", "fork", "execSync", "execFileSync", "spawnSync"]) {
    const original = childProcess[name];
    childProcess[name] = function counted(...args) {
      spawnCount += 1;
      return original.apply(this, args);
    };
  }
}

/** The kernel's last allocated pid (/proc/loadavg): its growth counts every fork and thread, system-wide. */
function lastPid() {
  return Number(readFileSync("/proc/loadavg", "utf8").trim().split("/").pop()?.split(" ").pop());
}

/** utime, stime, cutime, cstime of a process in ms (fields 14–17, counted after the command name). */
function statCpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  return { self: (f[11] + f[12]) * TICK_MS, children: (f[13] + f[14]) * TICK_MS };
}

/** CPU time of every thread of a process in ms, at ns resolution where the kernel keeps schedstat. */
function threadsCpuMs(pid) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    }
    if (Number.isFinite(ns)) return { ms: ns / 1e6, source: "schedstat" };
  } catch {
    // no schedstat: fall back to tick counts
  }
  return { ms: statCpuMs(pid).self, source: "stat" };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)];
};
const round = (value, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Runs `fn` once and reports its wall ms, CPU, spawns and the longest event-loop stall meanwhile. */
async function measure(fn, timeoutMs = 30_000) {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  // The histogram's first tick only sets its baseline: a stall before it would go unseen.
  await sleep(3);
  const spawns0 = spawnCount;
  const pid0 = lastPid();
  const children0 = statCpuMs(process.pid).children;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let error;
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // Give the histogram's timer one turn so a stall at the very end is recorded, and children time to be reaped.
  await sleep(5);
  histogram.disable();
  return {
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    childCpuMs: statCpuMs(process.pid).children - children0,
    spawns: spawnCount - spawns0,
    pidsCreated: lastPid() - pid0,
    stallMs: histogram.count > 0 ? histogram.max / 1e6 : 0,
    error,
  };
}

function summarise(name, runs) {
  const [first, ...rest] = runs;
  const steady = rest.length > 0 ? rest : runs;
  return {
    name,
    firstMs: round(first.ms),
    medianMs: round(median(steady.map((r) => r.ms))),
    maxMs: round(Math.max(...steady.map((r) => r.ms))),
    cpuMs: round(median(steady.map((r) => r.cpuMs))),
    childCpuMs: round(median(steady.map((r) => r.childCpuMs))),
    spawns: median(steady.map((r) => r.spawns)),
    pidsCreated: median(steady.map((r) => r.pidsCreated)),
    stallMs: round(Math.max(...runs.map((r) => r.stallMs))),
    ...(runs.some((r) => r.error) ? { error: runs.find((r) => r.error)?.error } : {}),
  };
}

/**
 * @param {import("./bench-host.d.mts").BenchHostOptions} [options]
 */
export async function benchHost(options = {}) {
  const samples = Math.max(2, options.samples ?? 5);
  const intervalMs = options.intervalMs ?? 200;
  const siGapMs = options.siGapMs ?? 600;
  const dataDir = options.dataDir ?? tmpdir();
  const watch = options.watch ?? [{ name: "node", match: "(^|/)node( |$)" }];

  installSpawnHook();
  const require = createRequire(import.meta.url);
  const siLoadedEarlier = require.cache[require.resolve("systeminformation")] !== undefined;
  const si = require("systeminformation");
  const { createLinuxReaders } = await import(`${DIST}/linux-readers.js`);
  const { createHostSource } = await import(`${DIST}/host-source.js`);
  const { createProcessWatch } = await import(`${DIST}/process-watch.js`);

  // (a) systeminformation, call by call.
  const calls = [];
  for (const name of options.siCalls ?? SI_CALLS) {
    const runs = [];
    for (let i = 0; i < samples; i++) {
      runs.push(await measure(async () => si[name]()));
      // processes() and currentLoad() answer from a cache when called again within 500/200 ms.
      await sleep(siGapMs);
    }
    calls.push(summarise(name, runs));
  }

  // Our readers one by one (the host source runs them in sequence).
  const readers = createLinuxReaders({ dataDir });
  const readerCosts = [];
  for (const name of ["cpu", "memory", "filesystems", "battery", "temperature", "network", "uptimeSec"]) {
    const runs = [];
    for (let i = 0; i < samples; i++) runs.push(await measure(() => readers[name]()));
    readerCosts.push(summarise(name, runs));
  }

  // (c) one process-watch scan with this machine's processes.
  const processCount = readdirSync("/proc").filter((e) => /^\d+$/.test(e)).length;
  const scanWatch = createProcessWatch({ processes: watch });
  const scans = [];
  for (let i = 0; i < samples; i++) scans.push(await measure(() => scanWatch.sample()));
  const processWatch = { ...summarise("processWatch.sample", scans), processes: processCount };

  // (b) the host source plus process watch as the heartbeat runs them, against an idle Node process.
  const idle = childProcess.spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { stdio: "ignore" });
  killOnExit(idle);
  try {
    await sleep(500); // its start-up is not idling
    const source = createHostSource({
      readers: createLinuxReaders({ dataDir }),
      now: () => performance.now(),
      log: silentLog,
    });
    const processes = createProcessWatch({ processes: watch });
    await source.sample(); // the CPU reader's baseline, as the agent's first heartbeat
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    const idle0 = threadsCpuMs(idle.pid);
    const children0 = statCpuMs(process.pid).children;
    const spawns0 = spawnCount;
    const t0 = performance.now();
    histogram.enable();
    await sleep(3);
    let ownCpuMs = 0;
    const wallPerSample = [];
    let metricsCount = 0;
    for (let i = 0; i < samples; i++) {
      const cpu0 = process.cpuUsage();
      const s0 = performance.now();
      const metrics = { ...(await source.sample()), ...(await processes.sample()) };
      wallPerSample.push(performance.now() - s0);
      const cpu = process.cpuUsage(cpu0);
      ownCpuMs += (cpu.user + cpu.system) / 1000;
      metricsCount = Object.keys(metrics).length;
      await sleep(intervalMs);
    }
    histogram.disable();
    const wallMs = performance.now() - t0;
    const idleCpu = threadsCpuMs(idle.pid);
    const childCpuMs = statCpuMs(process.pid).children - children0;
    const cpuMsPerSample = (ownCpuMs + childCpuMs) / samples;
    const sourceResult = {
      samples,
      metrics: metricsCount,
      wallMsPerSample: round(median(wallPerSample)),
      cpuMsPerSample: round(cpuMsPerSample, 3),
      childCpuMsPerSample: round(childCpuMs / samples, 3),
      spawns: spawnCount - spawns0,
      cpuSecPerHourAt10s: round((cpuMsPerSample * 360) / 1000, 3),
      idleNodeCpuSecPerHour: round(((idleCpu.ms - idle0.ms) / wallMs) * 3600, 3),
      idleNodeSource: idleCpu.source,
      windowMs: round(wallMs, 0),
      stallMs: round(histogram.max / 1e6),
    };
    return {
      node: process.version,
      platform: `${process.platform}/${process.arch}`,
      cores: cpus().length,
      spawnHook: siLoadedEarlier ? "systeminformation was loaded before the hook: spawns undercounted" : "ok",
      calls,
      readers: readerCosts,
      processWatch,
      source: sourceResult,
    };
  } finally {
    idle.kill("SIGKILL");
  }
}
