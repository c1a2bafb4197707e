export interface BenchHostOptions {
  /** Runs of each call (the first, cold one is reported apart); at least 2. Default 5. */
  samples?: number;
  /** Pause between our own samples in (b), ms. Default 200. */
  intervalMs?: number;
  /** Pause between systeminformation calls, ms: processes() and currentLoad() cache for 500/200 ms. Default 600. */
  siGapMs?: number;
  /** Directory whose filesystem is "data". Default the OS temp dir. */
  dataDir?: string;
  /** Processes the process watch looks for. Default: node. */
  watch?: { name: string; match: string }[];
  /** systeminformation functions to time. Default: every one that could feed host metrics. */
  siCalls?: string[];
}

export interface CallCost {
  name: string;
  /** The first, cold call (caches, lazy requires). */
  firstMs: number;
  /** Median and max of the later calls. */
  medianMs: number;
  maxMs: number;
  /** This process's CPU (all threads) per call, median. */
  cpuMs: number;
  /** CPU of reaped children per call (10 ms ticks), median. */
  childCpuMs: number;
  /** child_process calls per call, median. */
  spawns: number;
  /** Pids the kernel handed out meanwhile (forks and threads, system-wide), median. */
  pidsCreated: number;
  /** Longest event-loop stall seen over all runs, ms (1 ms resolution). */
  stallMs: number;
  error?: string;
}

export interface BenchHostResult {
  node: string;
  platform: string;
  cores: number;
  /** "ok", or a warning that systeminformation loaded before the spawn hook. */
  spawnHook: string;
  /** (a) systeminformation, call by call. */
  calls: CallCost[];
  /** Our Linux readers, method by method. */
  readers: CallCost[];
  /** (c) one process-watch scan; `processes` is how many /proc entries it read. */
  processWatch: CallCost & { processes: number };
  /** (b) host source plus process watch as the heartbeat runs them. */
  source: {
    samples: number;
    metrics: number;
    wallMsPerSample: number;
    cpuMsPerSample: number;
    childCpuMsPerSample: number;
    spawns: number;
    cpuSecPerHourAt10s: number;
    /** An idle `node -e "setInterval(()=>{},1000)"` over the same wall time, per hour. */
    idleNodeCpuSecPerHour: number;
    idleNodeSource: "schedstat" | "stat";
    windowMs: number;
    stallMs: number;
  };
}

/** Measures host sampling on this machine. Needs `npm run build` first. Prints nothing. */
export declare function benchHost(options?: BenchHostOptions): Promise<BenchHostResult>;
