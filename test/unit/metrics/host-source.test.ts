import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { type NetworkSample, withOverrides } from "../../../src/metrics/host/host-readers.js";
import { createHostSource } from "../../../src/metrics/host/host-source.js";
import { createLinuxReaders, type StatFsResult } from "../../../src/metrics/host/linux-readers.js";
import type { Logger } from "../../../src/shared/logger.js";
import { createFakeHostReaders } from "../../fakes/fake-host-readers.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

function recordingLogger() {
  const lines: { level: string; obj: object; msg: string | undefined }[] = [];
  const log: Logger = {
    child: () => log,
    debug: (obj, msg) => lines.push({ level: "debug", obj, msg }),
    info: (obj, msg) => lines.push({ level: "info", obj, msg }),
    warn: (obj, msg) => lines.push({ level: "warn", obj, msg }),
    error: (obj, msg) => lines.push({ level: "error", obj, msg }),
  };
  return { log, lines };
}

function manualClock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const net = (rxBytes: number, txBytes: number, extra: Partial<NetworkSample> = {}): NetworkSample => ({
  interfacesUp: 1,
  defaultRoute: true,
  rxBytes,
  txBytes,
  counterSet: "eth0",
  ...extra,
});

describe("host source", () => {
  it("names every metric with its unit and rounds it", async () => {
    const readers = createFakeHostReaders({
      cpu: async () => ({ loadPct: 12.3456 }),
      memory: async () => ({ usedPct: 62.5123, availableBytes: 1_234_567.8, totalBytes: 4e9 }),
      filesystems: async () => [
        { name: "data", mount: "/data", usedPct: 71.04, freeBytes: 5e9, totalBytes: 16e9 },
        { name: "mnt_sdcard", mount: "/mnt/sdcard", usedPct: 3.96, freeBytes: 30e9, totalBytes: 32e9 },
      ],
      battery: async () => ({ pct: 88, charging: true, healthPct: 91.26 }),
      temperature: async () => ({ cpuC: 47.25 }),
      network: async () => net(1000, 2000, { wifiSignalDbm: -56.4, cellSignalDbm: -97 }),
      uptimeSec: async () => 3600.7,
    });
    const source = createHostSource({ readers, now: manualClock().now, log: recordingLogger().log });
    expect(await source.sample()).toEqual({
      "cpu.loadPct": 12.3,
      "cpu.tempC": 47.3,
      "mem.usedPct": 62.5,
      "mem.availableBytes": 1_234_568,
      "disk.data.usedPct": 71,
      "disk.data.freeBytes": 5e9,
      "disk.mnt_sdcard.usedPct": 4,
      "disk.mnt_sdcard.freeBytes": 30e9,
      "battery.pct": 88,
      "battery.charging": 1,
      "battery.healthPct": 91.3,
      "net.interfacesUp": 1,
      "net.defaultRoute": 1,
      "net.wifi.signalDbm": -56,
      "net.cell.signalDbm": -97,
      "uptime.sec": 3601,
    });
  });

  it("reports network rates from counter deltas over elapsed time, and none on the first sample", async () => {
    const clock = manualClock();
    const samples = [net(1_000, 500), net(21_000, 2_500), net(21_000, 2_500)];
    const readers = createFakeHostReaders({ network: async () => samples.shift() ?? net(0, 0) });
    const source = createHostSource({ readers, now: clock.now, log: recordingLogger().log });
    const first = await source.sample();
    expect(first).not.toHaveProperty("net.rxBytesPerSec");
    expect(first).toMatchObject({ "net.interfacesUp": 1, "net.defaultRoute": 1 });
    clock.advance(10_000);
    expect(await source.sample()).toMatchObject({ "net.rxBytesPerSec": 2_000, "net.txBytesPerSec": 200 });
    clock.advance(10_000);
    expect(await source.sample()).toMatchObject({ "net.rxBytesPerSec": 0, "net.txBytesPerSec": 0 });
  });

  it("skips one rate when a counter goes back (reset) or the interface set changes, then resumes", async () => {
    const clock = manualClock();
    const samples = [
      net(50_000, 50_000),
      net(1_000, 60_000), // rx reset: driver reloaded
      net(11_000, 70_000),
      net(900_000, 900_000, { counterSet: "eth0,wwan0" }), // a modem came up with old counters
      net(910_000, 910_000, { counterSet: "eth0,wwan0" }),
    ];
    const readers = createFakeHostReaders({ network: async () => samples.shift() ?? net(0, 0) });
    const source = createHostSource({ readers, now: clock.now, log: recordingLogger().log });
    const rates: (number | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await source.sample();
      rates.push(m["net.rxBytesPerSec"]);
      clock.advance(10_000);
    }
    expect(rates).toEqual([undefined, undefined, 1_000, undefined, 1_000]);
  });

  it("leaves absent sensors out instead of reporting 0", async () => {
    const readers = createFakeHostReaders({
      cpu: async () => undefined,
      memory: async () => ({ usedPct: 40, availableBytes: 100, totalBytes: 200 }),
      filesystems: async () => [],
      battery: async () => undefined,
      temperature: async () => undefined,
      network: async () => ({ interfacesUp: 0, rxBytes: 0, txBytes: 0 }),
      uptimeSec: async () => undefined,
    });
    const metrics = await createHostSource({
      readers,
      now: manualClock().now,
      log: recordingLogger().log,
    }).sample();
    expect(metrics).toEqual({ "mem.usedPct": 40, "mem.availableBytes": 100, "net.interfacesUp": 0 });
    for (const name of Object.keys(metrics)) expect(name).not.toMatch(/^(battery|cpu|uptime|disk)\./);
  });

  it("keeps sampling the other readers when one throws, one rejects and one returns garbage", async () => {
    const { log, lines } = recordingLogger();
    const readers = createFakeHostReaders({
      // memory is not implemented: the strict fake throws
      cpu: async () => {
        throw new Error("EACCES /proc/stat");
      },
      battery: () => Promise.reject(new Error("vendor bridge gone")),
      temperature: async () => ({ cpuC: Number.NaN }),
      uptimeSec: async () => 42,
      filesystems: async () => [],
      network: async () => undefined,
    });
    const source = createHostSource({ readers, now: manualClock().now, log });
    expect(await source.sample()).toEqual({ "uptime.sec": 42 });
    expect(await source.sample()).toEqual({ "uptime.sec": 42 });
    const failures = lines.filter((l) => l.msg?.includes("failed"));
    // Once per reader, at debug, however many samples fail.
    expect(failures.map((l) => (l.obj as { reader: string }).reader).sort()).toEqual([
      "battery",
      "cpu",
      "memory",
    ]);
    expect(failures.every((l) => l.level === "debug")).toBe(true);
  });

  it("gives up on a reader that does not answer in time and samples the rest", async () => {
    const readers = createFakeHostReaders({
      battery: () => new Promise(() => {}),
      uptimeSec: async () => 7,
      cpu: async () => ({ loadPct: 5 }),
      memory: async () => undefined,
      temperature: async () => undefined,
      filesystems: async () => [],
      network: async () => undefined,
    });
    const source = createHostSource({
      readers,
      now: () => performance.now(),
      log: recordingLogger().log,
      readerTimeoutMs: 30,
    });
    expect(await source.sample()).toEqual({ "cpu.loadPct": 5, "uptime.sec": 7 });
  });

  it("runs declared slow readers at most every slowEveryMs, repeating their last values in between", async () => {
    const clock = manualClock();
    let pct = 90;
    const readers = createFakeHostReaders(
      {
        battery: async () => ({ pct: pct--, charging: false }),
        uptimeSec: async () => 1,
        cpu: async () => undefined,
        memory: async () => undefined,
        temperature: async () => undefined,
        filesystems: async () => [],
        network: async () => undefined,
      },
      { slow: ["battery"] },
    );
    const source = createHostSource({
      readers,
      now: clock.now,
      log: recordingLogger().log,
      slowEveryMs: 60_000,
    });
    const seen: (number | undefined)[] = [];
    for (let i = 0; i < 7; i++) {
      seen.push((await source.sample())["battery.pct"]);
      clock.advance(10_000);
    }
    expect(seen).toEqual([90, 90, 90, 90, 90, 90, 89]);
    expect(readers.calls.battery).toBe(2);
    expect(readers.calls.uptimeSec).toBe(7);
  });

  it("moves a reader that turns out slow to the slow cadence", async () => {
    const clock = manualClock();
    const { log, lines } = recordingLogger();
    const readers = createFakeHostReaders({
      temperature: async () => {
        clock.advance(250); // a fuel gauge or a vendor bridge that takes its time
        return { cpuC: 40 };
      },
      uptimeSec: async () => 1,
      cpu: async () => undefined,
      memory: async () => undefined,
      battery: async () => undefined,
      filesystems: async () => [],
      network: async () => undefined,
    });
    const source = createHostSource({ readers, now: clock.now, log, slowAfterMs: 100, slowEveryMs: 60_000 });
    for (let i = 0; i < 6; i++) {
      expect(await source.sample()).toMatchObject({ "cpu.tempC": 40 });
      clock.advance(10_000);
    }
    // Slow three samples in a row (one slow sample may be an event loop busy elsewhere), then at most
    // once a minute: the 4th..6th samples (30 s) repeat the cached value.
    expect(readers.calls.temperature).toBe(3);
    expect(lines.some((l) => l.level === "info" && l.msg?.includes("slow"))).toBe(true);
  });

  it("lets a vendor reader replace one method, its cost declared by the override", async () => {
    const base = createFakeHostReaders({ uptimeSec: async () => 5 }, { slow: ["battery", "network"] });
    const vendor = createFakeHostReaders({ battery: async () => ({ pct: 55, charging: true }) });
    const readers = withOverrides(base, { battery: () => vendor.battery(), slow: ["temperature"] });
    expect(await readers.battery()).toEqual({ pct: 55, charging: true });
    expect(await readers.uptimeSec()).toBe(5);
    expect(base.calls.battery).toBe(0);
    expect([...(readers.slow ?? [])].sort()).toEqual(["network", "temperature"]);
  });
});

/**
 * A /proc and /sys tree written as real files, as a POS terminal lays them out: an eMMC with the data
 * partition, an SD card, a battery with a fuel gauge, two CPU thermal zones, Wi-Fi and Ethernet.
 */
function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
}

const MOUNTS = [
  "/dev/mmcblk0p2 / ext4 rw,relatime 0 0",
  "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
  "tmpfs /run tmpfs rw,nosuid,nodev 0 0",
  "/dev/mmcblk0p5 /var/lib/pos-agent f2fs rw,lazytime 0 0",
  "/dev/mmcblk0p5 /var/lib/pos-agent/bind f2fs rw,lazytime 0 0",
  "/dev/mmcblk0p3 /system ext4 ro,relatime 0 0",
  "/dev/block/loop3 /apex/com.android.tzdata ext4 ro 0 0",
  "/dev/mmcblk1p1 /mnt/sdcard vfat rw,relatime 0 0",
  "/dev/mmcblk0p7 /mnt/my\\040logs ext4 rw 0 0",
  "/dev/mmcblk0p8 /data ext4 rw 0 0",
  "",
].join("\n");

function fakeStatfs(sizes: Record<string, StatFsResult>) {
  return async (path: string): Promise<StatFsResult> => {
    const stats = sizes[path];
    if (stats === undefined) throw Object.assign(new Error(`ENOENT ${path}`), { code: "ENOENT" });
    return stats;
  };
}

const GiB = 1024 ** 3;
const blocks = (totalGiB: number, freeGiB: number, availGiB: number): StatFsResult => ({
  bsize: 4096,
  blocks: (totalGiB * GiB) / 4096,
  bfree: (freeGiB * GiB) / 4096,
  bavail: (availGiB * GiB) / 4096,
});

describe("host source over Linux readers on a fake /proc and /sys", () => {
  function terminal() {
    const root = makeTmpDir("host-tree");
    writeTree(root, {
      "proc/stat": "cpu  1000 0 500 8000 500 0 0 0 0 0\ncpu0 500 0 250 4000 250 0 0 0 0 0\n",
      "proc/meminfo":
        "MemTotal:        2000000 kB\nMemFree:          200000 kB\nMemAvailable:     500000 kB\n",
      "proc/uptime": "12345.67 20000.00\n",
      "proc/self/mounts": MOUNTS,
      "proc/net/route":
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n",
      "proc/net/wireless":
        "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" +
        " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n" +
        " wlan0: 0000   54.  -61.  -256        0      0      0      0      0        0\n",
      "sys/class/power_supply/AC/type": "Mains\n",
      "sys/class/power_supply/AC/online": "1\n",
      "sys/class/power_supply/hid-mouse/type": "Battery\n",
      "sys/class/power_supply/hid-mouse/scope": "Device\n",
      "sys/class/power_supply/hid-mouse/capacity": "5\n",
      "sys/class/power_supply/battery/type": "Battery\n",
      "sys/class/power_supply/battery/capacity": "76\n",
      "sys/class/power_supply/battery/status": "Charging\n",
      "sys/class/power_supply/battery/charge_full": "2700000\n",
      "sys/class/power_supply/battery/charge_full_design": "3000000\n",
      "sys/class/thermal/thermal_zone0/type": "battery\n",
      "sys/class/thermal/thermal_zone0/temp": "31000\n",
      "sys/class/thermal/thermal_zone1/type": "cpu0-thermal\n",
      "sys/class/thermal/thermal_zone1/temp": "52300\n",
      "sys/class/thermal/thermal_zone2/type": "cpu1-thermal\n",
      "sys/class/thermal/thermal_zone2/temp": "55800\n",
      "sys/class/thermal/thermal_zone3/type": "soc-unused\n",
      "sys/class/thermal/thermal_zone3/temp": "0\n",
      "sys/class/net/lo/operstate": "unknown\n",
      "sys/class/net/lo/statistics/rx_bytes": "999999\n",
      "sys/class/net/lo/statistics/tx_bytes": "999999\n",
      "sys/class/net/wlan0/operstate": "up\n",
      "sys/class/net/wlan0/flags": "0x1003\n",
      "sys/class/net/wlan0/statistics/rx_bytes": "100000\n",
      "sys/class/net/wlan0/statistics/tx_bytes": "40000\n",
      "sys/class/net/eth0/operstate": "down\n",
      "sys/class/net/eth0/flags": "0x1002\n",
      "sys/class/net/eth0/statistics/rx_bytes": "5000\n",
      "sys/class/net/eth0/statistics/tx_bytes": "1000\n",
      "sys/class/net/docker0/operstate": "up\n",
      "sys/class/net/docker0/statistics/rx_bytes": "77777777\n",
      "sys/class/net/docker0/statistics/tx_bytes": "77777777\n",
    });
    const statfs = fakeStatfs({
      "/": blocks(8, 3, 2.5),
      "/var/lib/pos-agent": blocks(16, 4, 4),
      "/var/lib/pos-agent/bind": blocks(16, 4, 4),
      "/mnt/sdcard": blocks(32, 24, 24),
      "/mnt/my logs": blocks(1, 0.5, 0.5),
      "/data": blocks(2, 1, 1),
      "/system": blocks(2, 0, 0),
    });
    const readers = createLinuxReaders({
      dataDir: "/var/lib/pos-agent/db",
      procRoot: join(root, "proc"),
      sysRoot: join(root, "sys"),
      statfs,
      realpath: async (path) => path,
      platform: "linux",
    });
    return { root, readers };
  }

  it("reads every sensor of the terminal under the stable names", async () => {
    const { root, readers } = terminal();
    const clock = manualClock();
    const source = createHostSource({ readers, now: clock.now, log: recordingLogger().log });
    const first = await source.sample();
    expect(first).toEqual({
      "cpu.tempC": 55.8,
      "mem.usedPct": 75,
      "mem.availableBytes": 500_000 * 1024,
      "disk.data.usedPct": 75,
      "disk.data.freeBytes": 4 * GiB,
      "disk.root.usedPct": 66.7,
      "disk.root.freeBytes": 2.5 * GiB,
      "disk.mnt_sdcard.usedPct": 25,
      "disk.mnt_sdcard.freeBytes": 24 * GiB,
      "disk.mnt_my_logs.usedPct": 50,
      "disk.mnt_my_logs.freeBytes": 0.5 * GiB,
      "disk.data_2.usedPct": 50,
      "disk.data_2.freeBytes": 1 * GiB,
      "battery.pct": 76,
      "battery.charging": 1,
      "battery.healthPct": 90,
      "net.interfacesUp": 1,
      "net.defaultRoute": 1,
      "net.wifi.signalDbm": -61,
      "uptime.sec": 12346,
    });

    writeTree(root, {
      "proc/stat": "cpu  1300 0 600 8500 600 0 0 0 0 0\n", // 400 busy of 1000
      "sys/class/net/wlan0/statistics/rx_bytes": "150000\n",
      "sys/class/net/wlan0/statistics/tx_bytes": "50000\n",
    });
    clock.advance(5_000);
    expect(await source.sample()).toMatchObject({
      "cpu.loadPct": 40,
      "net.rxBytesPerSec": 10_000,
      "net.txBytesPerSec": 2_000,
    });
  });

  it("names the filesystem holding dataDir 'data' whatever its type, and caps the list at 8", async () => {
    const root = makeTmpDir("host-tree");
    const mounts = ["overlay /srv/agent overlay rw 0 0", "/dev/sda1 / ext4 rw 0 0"];
    for (let i = 0; i < 12; i++) mounts.push(`/dev/sdb${i} /mnt/disk${i} xfs rw 0 0`);
    writeTree(root, { "proc/mounts": `${mounts.join("\n")}\n` });
    const readers = createLinuxReaders({
      dataDir: "/srv/agent",
      procRoot: join(root, "proc"),
      sysRoot: join(root, "sys"),
      statfs: async () => blocks(1, 0.5, 0.5),
      realpath: async (path) => path,
    });
    const names = (await readers.filesystems()).map((fs) => fs.name);
    expect(names).toEqual([
      "data",
      "root",
      "mnt_disk0",
      "mnt_disk1",
      "mnt_disk2",
      "mnt_disk3",
      "mnt_disk4",
      "mnt_disk5",
    ]);
  });

  it("reports absent sensors as absent on a terminal without battery, thermal zones or routes", async () => {
    const root = makeTmpDir("host-tree");
    writeTree(root, {
      "proc/uptime": "100.5 50.0\n",
      "proc/net/route":
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
      "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
      "sys/class/thermal/thermal_zone0/temp": "0\n",
      "sys/class/power_supply/usb/type": "USB\n",
      "sys/class/net/lo/operstate": "unknown\n",
    });
    const readers = createLinuxReaders({
      dataDir: "/var/lib/pos-agent",
      procRoot: join(root, "proc"),
      sysRoot: join(root, "sys"),
      platform: "linux",
    });
    const metrics = await createHostSource({
      readers,
      now: manualClock().now,
      log: recordingLogger().log,
    }).sample();
    expect(metrics).toEqual({ "net.interfacesUp": 0, "net.defaultRoute": 0, "uptime.sec": 101 });
  });

  it("leaves the default route unknown on Android, where /proc/net/route shows only the main table", async () => {
    const { root } = terminal();
    const readers = createLinuxReaders({
      dataDir: "/var/lib/pos-agent",
      procRoot: join(root, "proc"),
      sysRoot: join(root, "sys"),
      platform: "android",
    });
    const sample = await readers.network();
    expect(sample).toBeDefined();
    expect(sample).not.toHaveProperty("defaultRoute");
  });
});
