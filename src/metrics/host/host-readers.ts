/**
 * The hardware boundary of host health: one method per sensor. Every method resolves `undefined` (or
 * `[]`) when the sensor is absent or unreadable, and never rejects: a terminal without a battery or a
 * thermal zone is normal, and the host source must leave such metrics out, never report them as 0.
 * Callers still guard against a rejecting implementation (vendor bridges are outside our control).
 */
export interface HostReaders {
  /** Busy share of all CPUs since the previous call, 0–100. The first call has no baseline: undefined. */
  cpu(): Promise<CpuSample | undefined>;
  /** Used share counts page cache as available (the kernel's MemAvailable), as `free -h` does. */
  memory(): Promise<MemorySample | undefined>;
  /** Writable data filesystems; the one holding the agent's data directory is named "data", first. */
  filesystems(): Promise<FilesystemSample[]>;
  battery(): Promise<BatterySample | undefined>;
  temperature(): Promise<TemperatureSample | undefined>;
  network(): Promise<NetworkSample | undefined>;
  uptimeSec(): Promise<number | undefined>;
  /**
   * Methods that spawn a process, block the event loop or take more than ~5 ms (measure them with
   * scripts/lib/bench-host.mjs): the host source runs these at most every `slowEveryMs`.
   */
  readonly slow?: readonly HostReaderName[];
}

export interface CpuSample {
  loadPct: number;
}

export interface MemorySample {
  usedPct: number;
  availableBytes: number;
  totalBytes: number;
}

export interface FilesystemSample {
  /** Metric-safe name: "data", "root", or the mount path with `/` turned into `_` ("mnt_sdcard"). */
  name: string;
  mount: string;
  /** Used share of the space an unprivileged writer can use (reserved blocks excluded), as `df` shows. */
  usedPct: number;
  /** Bytes an unprivileged writer (the agent) can still write. */
  freeBytes: number;
  totalBytes: number;
}

export interface BatterySample {
  pct: number;
  /** On external power: the supply says Charging or Full. */
  charging: boolean;
  /** Full-charge capacity against design capacity, where the fuel gauge reports both. */
  healthPct?: number;
}

export interface TemperatureSample {
  cpuC: number;
}

export interface NetworkSample {
  interfacesUp: number;
  /**
   * Absent where it cannot be known: Android keeps default routes in per-network policy tables that
   * /proc/net/route (the main table) does not show, so "false" there would be a lie.
   */
  defaultRoute?: boolean;
  /** Monotonic counters summed over the counted interfaces; rates are the host source's business. */
  rxBytes: number;
  txBytes: number;
  /**
   * Which interfaces the counters sum (e.g. "eth0,wlan0"). A rate is only taken between two samples over
   * the same set: an interface appearing with its old counters would otherwise read as a burst.
   */
  counterSet?: string;
  wifiSignalDbm?: number;
  cellSignalDbm?: number;
}

export const HOST_READER_NAMES = [
  "cpu",
  "memory",
  "filesystems",
  "battery",
  "temperature",
  "network",
  "uptimeSec",
] as const;
export type HostReaderName = (typeof HOST_READER_NAMES)[number];

/**
 * Vendor readers (an Android vendor SDK bridge: battery from BatteryManager, cellular signal from
 * TelephonyManager, a built-in printer's state) replace individual methods of a base reader set; this
 * is the place for them. An override that resolves `undefined` means "absent", it does not fall back:
 * a vendor bridge that knows there is no battery is right over a sysfs file that SELinux hides.
 */
export function withOverrides(base: HostReaders, overrides: Partial<HostReaders>): HostReaders {
  // An overridden method's cost is the override's to declare, not the base's.
  const slow = [
    ...(base.slow ?? []).filter((name) => overrides[name] === undefined),
    ...(overrides.slow ?? []),
  ];
  return {
    slow,
    cpu: overrides.cpu ?? (() => base.cpu()),
    memory: overrides.memory ?? (() => base.memory()),
    filesystems: overrides.filesystems ?? (() => base.filesystems()),
    battery: overrides.battery ?? (() => base.battery()),
    temperature: overrides.temperature ?? (() => base.temperature()),
    network: overrides.network ?? (() => base.network()),
    uptimeSec: overrides.uptimeSec ?? (() => base.uptimeSec()),
  };
}
