import { readdir, readFile, realpath, statfs } from "node:fs/promises";
import { join, resolve } from "node:path";
import type {
  BatterySample,
  FilesystemSample,
  HostReaders,
  MemorySample,
  NetworkSample,
  TemperatureSample,
} from "./host-readers.js";

export interface StatFsResult {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
}

export interface LinuxReadersDeps {
  /** The agent's data directory: the filesystem holding it is reported as "data". */
  dataDir: string;
  procRoot?: string;
  sysRoot?: string;
  readFile?: (path: string) => Promise<string>;
  readdir?: (path: string) => Promise<string[]>;
  statfs?: (path: string) => Promise<StatFsResult>;
  realpath?: (path: string) => Promise<string>;
  /** "android" leaves the default route unknown (see NetworkSample.defaultRoute). */
  platform?: NodeJS.Platform;
}

/** Block filesystems that hold data; everything else (proc, tmpfs, overlay, fuse…) is skipped unless it holds dataDir. */
const DATA_FS_TYPES = new Set([
  "ext2",
  "ext3",
  "ext4",
  "f2fs",
  "xfs",
  "btrfs",
  "vfat",
  "exfat",
  "ubifs",
  "jffs2",
]);
const MAX_FILESYSTEMS = 8;
/** Bridges, veths, tunnels and shapers carry traffic already counted on a real link, or none at all. */
const VIRTUAL_NET = /^(lo|veth|docker|br-|virbr|ifb|dummy|tun|tap|wg|vxlan|lxc|cni|flannel|sit|ip6tnl|gre)/;
const CPU_ZONE = /cpu|soc|x86_pkg/i;
const CPU_HWMON = new Set(["coretemp", "k10temp", "zenpower", "cpu_thermal", "soc_thermal"]);
const IFF_UP = 0x1;
const RTF_UP = 0x1;
const RTF_REJECT = 0x200;

/**
 * Host readers from /proc and /sys only: plain async file reads (~0.1 ms each), no process spawned,
 * no event-loop block; every method measured well under 2 ms here, so none is declared slow.
 * systeminformation is not used: scripts/lib/bench-host.mjs timed every call that could stand in for
 * these files, and those that add anything do it by spawning (fsSize runs df, cpuTemperature 7
 * processes, networkStats 3, osInfo 8, processes runs ps; networkInterfaces forks ~60 processes through
 * execSync and stalled the event loop 50 ms). Its cheap calls (mem, battery, currentLoad) read the same
 * files we read.
 * On Android the same files are read where SELinux allows (apps lose /proc/stat and /proc/net from
 * Android 8 and 10): a denied read is an absent sensor, and vendor readers fill in via `withOverrides`.
 */
export function createLinuxReaders(deps: LinuxReadersDeps): HostReaders {
  const procRoot = deps.procRoot ?? "/proc";
  const sysRoot = deps.sysRoot ?? "/sys";
  const read = deps.readFile ?? ((path: string) => readFile(path, "utf8"));
  const list = deps.readdir ?? ((path: string) => readdir(path));
  const statFs = deps.statfs ?? ((path: string) => statfs(path));
  const realPath = deps.realpath ?? ((path: string) => realpath(path));
  const platform = deps.platform ?? process.platform;

  const readOr = async (path: string): Promise<string | undefined> => {
    try {
      return await read(path);
    } catch {
      return undefined;
    }
  };
  const readNumber = async (path: string): Promise<number | undefined> => {
    const text = (await readOr(path))?.trim();
    if (text === undefined || text === "") return undefined;
    const value = Number(text);
    return Number.isFinite(value) ? value : undefined;
  };
  const listOr = async (path: string): Promise<string[]> => {
    try {
      return (await list(path)).sort();
    } catch {
      return [];
    }
  };

  let lastCpu: { busy: number; total: number } | undefined;

  async function cpu() {
    const line = (await readOr(join(procRoot, "stat")))?.split("\n").find((l) => l.startsWith("cpu "));
    if (line === undefined) return undefined;
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
    if (fields.length < 5 || fields.some((n) => !Number.isFinite(n))) return undefined;
    const total = fields.reduce((sum, n) => sum + n, 0);
    const busy = total - (fields[3] ?? 0) - (fields[4] ?? 0);
    const previous = lastCpu;
    lastCpu = { busy, total };
    // No previous sample: the since-boot average would read as current load on a box up for weeks.
    if (previous === undefined || total <= previous.total) return undefined;
    const loadPct = ((busy - previous.busy) / (total - previous.total)) * 100;
    return { loadPct: Math.min(100, Math.max(0, loadPct)) };
  }

  async function memory(): Promise<MemorySample | undefined> {
    const text = await readOr(join(procRoot, "meminfo"));
    if (text === undefined) return undefined;
    const kb = (key: string) => {
      const match = new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text);
      return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
    };
    const totalBytes = kb("MemTotal");
    // MemAvailable arrived in 3.14; older kernels (still on some Android 4.4 terminals) need the estimate.
    const free = kb("MemFree");
    const availableBytes =
      kb("MemAvailable") ??
      (free === undefined ? undefined : free + (kb("Buffers") ?? 0) + (kb("Cached") ?? 0));
    if (totalBytes === undefined || totalBytes <= 0 || availableBytes === undefined) return undefined;
    const usedPct = ((totalBytes - Math.min(availableBytes, totalBytes)) / totalBytes) * 100;
    return { usedPct, availableBytes, totalBytes };
  }

  async function filesystems(): Promise<FilesystemSample[]> {
    const text = (await readOr(join(procRoot, "self", "mounts"))) ?? (await readOr(join(procRoot, "mounts")));
    if (text === undefined) return [];
    const mounts = parseMounts(text);
    const dataPath = await realPath(deps.dataDir).catch(() => resolve(deps.dataDir));
    const data = holdingMount(mounts, dataPath);
    const candidates = [
      ...(data === undefined ? [] : [data]),
      ...mounts.filter(
        (m) =>
          m !== data &&
          DATA_FS_TYPES.has(m.type) &&
          !m.options.includes("ro") &&
          !/^\/dev\/(block\/)?loop/.test(m.device),
      ),
    ];
    // The root mount next, so a cap never pushes it out.
    candidates.sort((a, b) => rank(a) - rank(b));
    function rank(m: Mount): number {
      return m === data ? 0 : m.mount === "/" ? 1 : 2;
    }
    const seenDevices = new Set<string>();
    const usedNames = new Set<string>();
    const out: FilesystemSample[] = [];
    for (const m of candidates) {
      if (out.length >= MAX_FILESYSTEMS) break;
      // Bind mounts and Android's views of /data show one device many times: count its space once.
      if (seenDevices.has(m.device)) continue;
      seenDevices.add(m.device);
      let stats: StatFsResult;
      try {
        stats = await statFs(m.mount);
      } catch {
        continue;
      }
      if (stats.blocks <= 0 || stats.bsize <= 0) continue;
      const used = stats.blocks - stats.bfree;
      const usable = used + stats.bavail;
      const name = uniqueName(m === data ? "data" : mountName(m.mount), usedNames);
      out.push({
        name,
        mount: m.mount,
        usedPct: usable > 0 ? (used / usable) * 100 : 0,
        freeBytes: stats.bavail * stats.bsize,
        totalBytes: stats.blocks * stats.bsize,
      });
    }
    return out;
  }

  async function battery(): Promise<BatterySample | undefined> {
    const base = join(sysRoot, "class", "power_supply");
    for (const supply of await listOr(base)) {
      const dir = join(base, supply);
      if ((await readOr(join(dir, "type")))?.trim() !== "Battery") continue;
      // Scope "Device": a wireless mouse or a stylus reporting its own battery, not the terminal's.
      if ((await readOr(join(dir, "scope")))?.trim() === "Device") continue;
      if ((await readNumber(join(dir, "present"))) === 0) continue;
      const pct =
        (await readNumber(join(dir, "capacity"))) ??
        ratioPct(await readNumber(join(dir, "energy_now")), await readNumber(join(dir, "energy_full"))) ??
        ratioPct(await readNumber(join(dir, "charge_now")), await readNumber(join(dir, "charge_full")));
      if (pct === undefined || pct < 0 || pct > 100) continue;
      const status = (await readOr(join(dir, "status")))?.trim();
      const sample: BatterySample = { pct, charging: status === "Charging" || status === "Full" };
      const healthPct =
        ratioPct(
          await readNumber(join(dir, "energy_full")),
          await readNumber(join(dir, "energy_full_design")),
        ) ??
        ratioPct(
          await readNumber(join(dir, "charge_full")),
          await readNumber(join(dir, "charge_full_design")),
        );
      if (healthPct !== undefined && healthPct > 0 && healthPct <= 150) sample.healthPct = healthPct;
      return sample;
    }
    return undefined;
  }

  async function temperature(): Promise<TemperatureSample | undefined> {
    const readings: number[] = [];
    const thermal = join(sysRoot, "class", "thermal");
    for (const zone of await listOr(thermal)) {
      if (!zone.startsWith("thermal_zone")) continue;
      const type = (await readOr(join(thermal, zone, "type")))?.trim() ?? "";
      if (!CPU_ZONE.test(type)) continue;
      const celsius = toCelsius(await readNumber(join(thermal, zone, "temp")));
      if (celsius !== undefined) readings.push(celsius);
    }
    if (readings.length === 0) {
      const hwmon = join(sysRoot, "class", "hwmon");
      for (const mon of await listOr(hwmon)) {
        if (!CPU_HWMON.has((await readOr(join(hwmon, mon, "name")))?.trim() ?? "")) continue;
        for (const file of await listOr(join(hwmon, mon))) {
          if (!/^temp\d+_input$/.test(file)) continue;
          const celsius = toCelsius(await readNumber(join(hwmon, mon, file)));
          if (celsius !== undefined) readings.push(celsius);
        }
      }
    }
    // Several CPU zones (one per cluster): the hottest is the one that throttles.
    return readings.length === 0 ? undefined : { cpuC: Math.max(...readings) };
  }

  async function network(): Promise<NetworkSample | undefined> {
    const base = join(sysRoot, "class", "net");
    const all = await listOr(base);
    if (all.length === 0) return undefined;
    const names = all.filter((name) => !VIRTUAL_NET.test(name));
    let interfacesUp = 0;
    let rxBytes = 0;
    let txBytes = 0;
    const counted: string[] = [];
    const up = new Set<string>();
    for (const name of names) {
      const dir = join(base, name);
      if ((await readNumber(join(dir, "type"))) === 772) continue; // ARPHRD_LOOPBACK under another name
      const operstate = (await readOr(join(dir, "operstate")))?.trim();
      const flags = Number.parseInt((await readOr(join(dir, "flags"))) ?? "0", 16);
      // ppp and cellular (rmnet, wwan) links often say "unknown": trust IFF_UP plus carrier then.
      const isUp =
        operstate === "up" ||
        (operstate === "unknown" && (flags & IFF_UP) !== 0 && (await readNumber(join(dir, "carrier"))) === 1);
      if (isUp) {
        interfacesUp += 1;
        up.add(name);
      }
      const rx = await readNumber(join(dir, "statistics", "rx_bytes"));
      const tx = await readNumber(join(dir, "statistics", "tx_bytes"));
      if (rx !== undefined && tx !== undefined) {
        rxBytes += rx;
        txBytes += tx;
        counted.push(name);
      }
    }
    const sample: NetworkSample = { interfacesUp, rxBytes, txBytes, counterSet: counted.join(",") };
    if (platform !== "android") {
      const defaultRoute = await hasDefaultRoute();
      if (defaultRoute !== undefined) sample.defaultRoute = defaultRoute;
    }
    const wifi = parseWireless((await readOr(join(procRoot, "net", "wireless"))) ?? "", up);
    if (wifi !== undefined) sample.wifiSignalDbm = wifi;
    // Cellular signal has no /proc or /sys file (it lives in the modem, behind ModemManager or
    // TelephonyManager): a vendor reader supplies it.
    return sample;
  }

  async function hasDefaultRoute(): Promise<boolean | undefined> {
    const v4 = await readOr(join(procRoot, "net", "route"));
    const v6 = await readOr(join(procRoot, "net", "ipv6_route"));
    if (v4 === undefined && v6 === undefined) return undefined;
    const v4Default = (v4 ?? "")
      .split("\n")
      .slice(1)
      .some((line) => {
        const [iface, dest, , flags, , , , mask] = line.trim().split(/\s+/);
        return (
          iface !== undefined &&
          iface !== "lo" &&
          dest === "00000000" &&
          mask === "00000000" &&
          (Number.parseInt(flags ?? "0", 16) & RTF_UP) !== 0
        );
      });
    const v6Default = (v6 ?? "").split("\n").some((line) => {
      const f = line.trim().split(/\s+/);
      const flags = Number.parseInt(f[8] ?? "0", 16);
      return (
        /^0{32}$/.test(f[0] ?? "") &&
        f[1] === "00" &&
        f[9] !== undefined &&
        f[9] !== "lo" &&
        (flags & RTF_UP) !== 0 &&
        (flags & RTF_REJECT) === 0
      );
    });
    return v4Default || v6Default;
  }

  async function uptimeSec(): Promise<number | undefined> {
    const first = (await readOr(join(procRoot, "uptime")))?.trim().split(/\s+/)[0];
    const value = first === undefined ? Number.NaN : Number(first);
    return Number.isFinite(value) && value > 0 ? value : undefined;
  }

  return { cpu, memory, filesystems, battery, temperature, network, uptimeSec };
}

interface Mount {
  device: string;
  mount: string;
  type: string;
  options: string[];
}

function parseMounts(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split("\n")) {
    const [device, mount, type, options] = line.split(" ");
    if (device === undefined || mount === undefined || type === undefined) continue;
    mounts.push({ device, mount: unescapeMount(mount), type, options: (options ?? "").split(",") });
  }
  return mounts;
}

/** The kernel escapes space, tab, newline and backslash in mount paths as octal (`\040`). */
function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The mount a path lives on: the longest mount point above it; of equal ones the last, which hides the others. */
function holdingMount(mounts: readonly Mount[], path: string): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    const inside = m.mount === "/" || path === m.mount || path.startsWith(`${m.mount}/`);
    if (inside && (best === undefined || m.mount.length >= best.mount.length)) best = m;
  }
  return best;
}

function mountName(mount: string): string {
  if (mount === "/") return "root";
  const name = mount
    .replace(/^\/+|\/+$/g, "")
    .replace(/\//g, "_")
    .replace(/[^A-Za-z0-9_-]/g, "_");
  return name === "" ? "root" : name;
}

/** A plain `/data` mount that is not the agent's disk must not take the name "data". */
function uniqueName(name: string, used: Set<string>): string {
  let candidate = name;
  for (let n = 2; used.has(candidate); n += 1) candidate = `${name}_${n}`;
  used.add(candidate);
  return candidate;
}

function ratioPct(part: number | undefined, whole: number | undefined): number | undefined {
  if (part === undefined || whole === undefined || whole <= 0) return undefined;
  return (part / whole) * 100;
}

/**
 * sysfs gives millidegrees; a few old vendor kernels give degrees. A zone reading 0 or beyond the
 * silicon's range is a sensor that is not wired up, and must read as absent.
 */
function toCelsius(raw: number | undefined): number | undefined {
  if (raw === undefined || raw === 0) return undefined;
  const celsius = Math.abs(raw) >= 1000 ? raw / 1000 : raw;
  return celsius > -40 && celsius < 150 ? celsius : undefined;
}

/** /proc/net/wireless: `wlan0: 0000   70.  -40.  -256 …`; some drivers give the level as u8 (216 = -40). */
function parseWireless(text: string, up: ReadonlySet<string>): number | undefined {
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    if (!up.has(name)) continue;
    const level = Number.parseFloat(
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)[2] ?? "",
    );
    if (!Number.isFinite(level) || level === 0) continue;
    const dbm = level > 0 && level < 256 ? level - 256 : level;
    if (dbm >= -120 && dbm < 0) return dbm;
  }
  return undefined;
}
