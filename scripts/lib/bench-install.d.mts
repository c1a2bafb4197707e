export interface BenchInstallOptions {
  /** Work directory (created; removed at the end). */
  dir: string;
  /** Size of the release tree, MiB. Default 256. */
  mib?: number;
  /** Files in each tree. Default 1000. */
  files?: number;
  /** Size of the tree whose install RSS growth the big one's is compared with, MiB. Default mib / 16. */
  smallMib?: number;
  /** Rounds of every timed run, alternating their order; each figure is the best (RSS: the worst). Default 3. */
  rounds?: number;
}

/** One install in a fresh process (bench-install-child.mjs): seconds per phase and RSS in bytes. */
export interface InstallRun {
  downloadSec: number;
  stageSec: number;
  /** promote + switchTo. */
  switchSec: number;
  totalSec: number;
  rssBefore: number;
  rssPeak: number;
  /** Peak RSS while downloading, and while staging. */
  downloadPeak: number;
  stagePeak: number;
  /** VmHWM could be reset (/proc/self/clear_refs), so it counted besides 50 ms sampling. */
  hwmReset: boolean;
}

export interface BenchInstallResult {
  files: number;
  /** Bytes in the big tree. */
  bytes: number;
  /** Bytes of its gzip artifact. */
  artifactBytes: number;
  rounds: number;
  /** Every timed run's seconds, in run order. */
  runs: Record<"baseline" | "baselineSync" | "baselineFsync" | "gzip" | "none" | "small", number[]>;
  /** cp -r + sha256sum; then with one `sync`; then with an fsync of every file and directory. */
  baselineSec: number;
  baselineSyncSec: number;
  baselineFsyncSec: number;
  /** The best install of the gzip artifact, and of the same tar uncompressed (compression "none"). */
  install: InstallRun;
  installNone: InstallRun;
  /** baselineSec / install seconds: >= 1 means the install is as fast as the baseline. */
  ratio: number;
  ratioNone: number;
  rss: {
    smallMib: number;
    largeMib: number;
    /** Peak RSS growth over RSS before the install, worst run of each size, bytes. */
    smallGrowth: number;
    largeGrowth: number;
    largeDownloadGrowth: number;
    largeStageGrowth: number;
    growths: { small: number[]; large: number[] };
    method: string;
    /** largeGrowth / smallGrowth: flat is near 1. */
    ratio: number;
  };
  delta: {
    changedPath: string;
    changedBytes: number;
    artifactBytes: number;
    /** The delta's (unsigned) manifest file as buildRelease writes it. */
    manifestBytes: number;
    /** artifact / (changed + manifest). */
    ratio: number;
    /** (artifact + manifest) / (changed + manifest): what a terminal fetches against the least it could. */
    transferRatio: number;
    /** artifact / changed. */
    overChanged: number;
  };
  /** Human-readable report lines. */
  lines: string[];
}

/**
 * Install of a seeded release tree (download, stage, promote, switch, each in a fresh process) vs
 * `cp -r` + `sha256sum` of the same tree in the same run; install RSS growth for a tree 1/16 the
 * size vs the full one; delta artifact size for one changed file. Needs `npm run build` first.
 */
export declare function benchInstall(options: BenchInstallOptions): Promise<BenchInstallResult>;
