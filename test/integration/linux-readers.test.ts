import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { statfsSync } from "node:fs";
import { totalmem, uptime } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HOST_READER_NAMES } from "../../src/metrics/host/host-readers.js";
import { createHostSource } from "../../src/metrics/host/host-source.js";
import { createLinuxReaders } from "../../src/metrics/host/linux-readers.js";
import { createProcessWatch } from "../../src/metrics/host/process-watch.js";
import { silentLogger } from "../../src/shared/logger.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function burn(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) Math.sqrt(Math.random());
}

describe.runIf(process.platform === "linux")("Linux readers on this machine's /proc and /sys", () => {
  it("reads memory, uptime and the data filesystem, all plausible", async () => {
    const dataDir = makeTmpDir("agent-data");
    const readers = createLinuxReaders({ dataDir });

    const memory = await readers.memory();
    expect(memory).toBeDefined();
    expect(Math.abs((memory?.totalBytes ?? 0) - totalmem()) / totalmem()).toBeLessThan(0.02);
    expect(memory?.usedPct).toBeGreaterThan(0);
    expect(memory?.usedPct).toBeLessThan(100);
    expect(memory?.availableBytes).toBeGreaterThan(0);
    expect(memory?.availableBytes).toBeLessThanOrEqual(memory?.totalBytes ?? 0);

    expect(Math.abs(((await readers.uptimeSec()) ?? 0) - uptime())).toBeLessThan(2);

    const filesystems = await readers.filesystems();
    expect(filesystems[0]?.name).toBe("data");
    const data = filesystems[0];
    const stats = statfsSync(dataDir);
    expect(data?.totalBytes).toBe(stats.blocks * stats.bsize);
    // Others write to this disk meanwhile: close, not equal.
    expect(Math.abs((data?.freeBytes ?? 0) - stats.bavail * stats.bsize)).toBeLessThan(256 * 1024 ** 2);
    expect(data?.usedPct).toBeGreaterThanOrEqual(0);
    expect(data?.usedPct).toBeLessThanOrEqual(100);
    expect(new Set(filesystems.map((fs) => fs.name)).size).toBe(filesystems.length);
    expect(filesystems.length).toBeLessThanOrEqual(8);
    for (const fs of filesystems) expect(fs.name).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it("reports CPU load from the second sample on", async () => {
    const readers = createLinuxReaders({ dataDir: makeTmpDir("agent-data") });
    expect(await readers.cpu()).toBeUndefined();
    burn(300);
    await sleep(50);
    const cpu = await readers.cpu();
    expect(cpu).toBeDefined();
    expect(cpu?.loadPct).toBeGreaterThan(0);
    expect(cpu?.loadPct).toBeLessThanOrEqual(100);
  });

  it("reports battery, temperature and network either absent or plausible, never zero-filled", async () => {
    const readers = createLinuxReaders({ dataDir: makeTmpDir("agent-data") });
    const battery = await readers.battery();
    if (battery !== undefined) {
      expect(battery.pct).toBeGreaterThanOrEqual(0);
      expect(battery.pct).toBeLessThanOrEqual(100);
      if (battery.healthPct !== undefined) expect(battery.healthPct).toBeGreaterThan(0);
    }
    const temperature = await readers.temperature();
    if (temperature !== undefined) {
      expect(temperature.cpuC).toBeGreaterThan(0);
      expect(temperature.cpuC).toBeLessThan(150);
    }
    const network = await readers.network();
    expect(network).toBeDefined();
    expect(Number.isInteger(network?.interfacesUp)).toBe(true);
    expect(network?.rxBytes).toBeGreaterThanOrEqual(0);
    if (network?.wifiSignalDbm !== undefined) {
      expect(network.wifiSignalDbm).toBeLessThan(0);
      expect(network.wifiSignalDbm).toBeGreaterThanOrEqual(-120);
    }

    const source = createHostSource({
      readers,
      now: () => performance.now(),
      log: silentLogger,
    });
    await source.sample();
    await sleep(100);
    const metrics = await source.sample();
    expect(metrics).toMatchObject({
      "cpu.loadPct": expect.any(Number),
      "mem.usedPct": expect.any(Number),
      "mem.availableBytes": expect.any(Number),
      "disk.data.usedPct": expect.any(Number),
      "disk.data.freeBytes": expect.any(Number),
      "uptime.sec": expect.any(Number),
      "net.rxBytesPerSec": expect.any(Number),
    });
    for (const value of Object.values(metrics)) expect(Number.isFinite(value)).toBe(true);
    if (battery === undefined)
      expect(Object.keys(metrics).filter((k) => k.startsWith("battery."))).toEqual([]);
    else expect(metrics["battery.pct"]).toBe(Math.round(battery.pct * 10) / 10);
    if (temperature === undefined) expect(metrics).not.toHaveProperty("cpu.tempC");
    else expect(metrics["cpu.tempC"]).toBeGreaterThan(0);
  });

  it("resolves every method to absent, without rejecting, where /proc and /sys are missing", async () => {
    const root = makeTmpDir("empty-root");
    const readers = createLinuxReaders({
      dataDir: join(root, "data"),
      procRoot: join(root, "proc"),
      sysRoot: join(root, "sys"),
    });
    for (const name of HOST_READER_NAMES) {
      const value = await readers[name]();
      expect(value === undefined || (Array.isArray(value) && value.length === 0), name).toBe(true);
    }
  });
});

describe.runIf(process.platform === "linux")("process watch on this machine's /proc", () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill("SIGKILL");
  });

  async function startApp(marker: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", marker], { stdio: "ignore" });
    children.push(child);
    await new Promise((r) => child.once("spawn", r));
    return child;
  }

  it("sees a real process alive, killed and started again as one restart", async () => {
    const marker = `pos-app-${randomUUID()}`;
    const watch = createProcessWatch({ processes: [{ name: "pos", match: marker }] });
    const first = await startApp(marker);
    const alive = await watch.sample();
    expect(alive).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 0 });
    expect(alive["proc.pos.rssBytes"]).toBeGreaterThan(1024 * 1024);

    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 0, "proc.pos.restarts": 0 });

    const second = await startApp(marker);
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 1 });
    expect(watch.events().map((e) => [e.type, e.details])).toEqual([
      ["process.down", { name: "pos", pid: first.pid }],
      ["process.up", { name: "pos", pid: second.pid, previousPid: first.pid }],
    ]);
  });
});
