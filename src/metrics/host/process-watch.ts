import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentEvent } from "../../shared/events.js";
import type { MetricSource, Metrics } from "../heartbeat.js";

export interface WatchedProcess {
  /** Metric-safe name: `proc.<name>.alive`. */
  name: string;
  /** Regex source tested against the full command line (arguments joined by spaces). */
  match: string;
}

export interface ProcessWatchDeps {
  processes: readonly WatchedProcess[];
  procRoot?: string;
  readdir?: (path: string) => Promise<string[]>;
  readFile?: (path: string) => Promise<string>;
  /** Our own pid, never matched: a pattern like "pos" would otherwise find the agent itself. */
  selfPid?: number;
}

export type ProcessWatch = MetricSource & {
  /** Events since the previous call (down, up, restarted); the caller records them. */
  events(): AgentEvent[];
};

/** A process as seen once: pid plus start time, so a pid the kernel hands out again is not "the same". */
interface Seen {
  pid: number;
  start: number;
}

interface Watched {
  name: string;
  pattern: RegExp;
  /** The oldest matching process at the previous scan; undefined while none runs. */
  current: Seen | undefined;
  /** The last one ever seen, so a down-then-up can be told apart from the first start. */
  last?: Seen;
  restarts: number;
}

const SOURCE = "host.process";
/** Scans this many /proc entries at once: enough to hide the pool's latency, few enough not to hog it. */
const CONCURRENCY = 16;
/** Every cached command line is read again at least this often (scans). */
const REREAD_EVERY = 4;

/**
 * Watches configured processes (the POS app) through /proc: alive, restarts (changes of the oldest
 * matching process since the agent started) and RSS (summed over all matching processes, so an app's
 * helper processes count toward its footprint).
 *
 * Reading every /proc/<pid>/cmdline each scan cost 4.5 ms CPU for 70 processes here (async reads are
 * ~60 µs each; sync ones are 10× cheaper but a cmdline read waits on the target's mmap lock, and a
 * process stuck holding it would freeze our event loop). So command lines are cached by pid and read
 * again when a pid is new, was new at the previous scan (Android apps fork from zygote and rename
 * themselves just after), matches a watched pattern (to see it exec or its pid reused), or comes up in
 * a rotation that rereads every pid within REREAD_EVERY scans (exec, Android's pre-forked USAP
 * processes becoming an app). scripts/lib/bench-host.mjs measures a scan.
 */
export function createProcessWatch(deps: ProcessWatchDeps): ProcessWatch {
  const procRoot = deps.procRoot ?? "/proc";
  const list = deps.readdir ?? ((path: string) => readdir(path));
  const read = deps.readFile ?? ((path: string) => readFile(path, "utf8"));
  const selfPid = deps.selfPid ?? process.pid;
  const watched: Watched[] = deps.processes.map((p) => {
    if (!/^[A-Za-z0-9_-]+$/.test(p.name))
      throw new Error(`watched process name "${p.name}" is not metric-safe`);
    return { name: p.name, pattern: new RegExp(p.match), current: undefined, restarts: 0 };
  });
  let pending: AgentEvent[] = [];
  let scanned = false;
  let restrictedReported = false;

  const readOr = (path: string): Promise<string | undefined> => read(path).catch(() => undefined);

  /** Command line by pid ("" for kernel threads), and the scan at which the pid was first seen. */
  const cache = new Map<number, { line: string; firstScan: number }>();
  const matched = new Set<number>();
  let scan = 0;

  function needsRead(pid: number): boolean {
    const cached = cache.get(pid);
    return (
      cached === undefined ||
      cached.firstScan === scan - 1 ||
      matched.has(pid) ||
      (pid + scan) % REREAD_EVERY === 0
    );
  }

  /** Command line by pid; undefined when /proc hides other users' processes (init, pid 1, not listed). */
  async function commandLines(): Promise<Map<number, string> | undefined> {
    const pids = (await list(procRoot)).filter((e) => /^\d+$/.test(e)).map(Number);
    if (!pids.includes(1)) return undefined;
    scan += 1;
    const present = new Set(pids);
    for (const pid of cache.keys()) if (!present.has(pid)) cache.delete(pid);
    const toRead = pids.filter((pid) => pid !== selfPid && needsRead(pid));
    for (let i = 0; i < toRead.length; i += CONCURRENCY) {
      const batch = toRead.slice(i, i + CONCURRENCY);
      const texts = await Promise.all(batch.map((pid) => readOr(join(procRoot, String(pid), "cmdline"))));
      batch.forEach((pid, j) => {
        // Kernel threads have an empty cmdline; a process gone since readdir has none.
        const line = texts[j]?.replace(/\0+$/, "").replaceAll("\0", " ");
        if (line === undefined) cache.delete(pid);
        else cache.set(pid, { line, firstScan: cache.get(pid)?.firstScan ?? scan });
      });
    }
    const lines = new Map<number, string>();
    for (const [pid, { line }] of cache) if (line !== "") lines.set(pid, line);
    return lines;
  }

  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat), to find the oldest. */
  async function startTime(pid: number): Promise<number> {
    const stat = await readOr(join(procRoot, String(pid), "stat"));
    // The command name in parentheses may hold spaces and parentheses: count fields after the last ")".
    const after = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
    const value = Number(after?.[19]);
    return Number.isFinite(value) ? value : Number.POSITIVE_INFINITY;
  }

  async function rssBytes(pid: number): Promise<number | undefined> {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec((await readOr(join(procRoot, String(pid), "status"))) ?? "");
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
  }

  function emit(type: string, severity: AgentEvent["severity"], w: Watched, details: object): void {
    const what: Record<string, string> = {
      "process.down": "is not running",
      "process.up": "is running again",
      "process.restarted": "restarted",
    };
    pending.push({
      type,
      severity,
      source: SOURCE,
      message: `${w.name} ${what[type] ?? type}`,
      details: { name: w.name, ...details },
    });
  }

  function track(w: Watched, matches: readonly Seen[]): void {
    let oldest: Seen | undefined;
    for (const m of matches) {
      // Ties (or unreadable stat) go to the lower pid, so the choice is stable between scans.
      if (
        oldest === undefined ||
        m.start < oldest.start ||
        (m.start === oldest.start && m.pid < oldest.pid)
      ) {
        oldest = m;
      }
    }
    const previous = w.current;
    if (oldest === undefined) {
      if (previous !== undefined) emit("process.down", "medium", w, { pid: previous.pid });
    } else if (previous === undefined) {
      const details: Record<string, number> = { pid: oldest.pid };
      if (w.last !== undefined && !same(w.last, oldest)) {
        w.restarts += 1;
        details.previousPid = w.last.pid;
      }
      if (scanned) emit("process.up", "info", w, details);
    } else if (!matches.some((m) => same(m, previous))) {
      // Gone and replaced between two scans: a restart we never saw as down.
      w.restarts += 1;
      emit("process.restarted", "info", w, { oldPid: previous.pid, newPid: oldest.pid });
    }
    if (oldest !== undefined) w.last = oldest;
    w.current = oldest;
  }

  return {
    name: "processWatch",
    async sample(): Promise<Metrics> {
      const metrics: Metrics = {};
      if (watched.length === 0) return metrics;
      const lines = await commandLines();
      if (lines === undefined) {
        // hidepid (every Android app, hardened Linux): we would see the POS app as dead. Unknown, not 0.
        if (!restrictedReported) {
          restrictedReported = true;
          pending.push({
            type: "process.watch.unavailable",
            severity: "low",
            source: SOURCE,
            message: "other processes are hidden from the agent (/proc hidepid); process metrics left out",
          });
        }
        return metrics;
      }
      matched.clear();
      for (const w of watched) {
        const matches: Seen[] = [];
        let rss: number | undefined;
        for (const [pid, line] of lines) {
          if (!w.pattern.test(line)) continue;
          matched.add(pid);
          matches.push({ pid, start: await startTime(pid) });
          const bytes = await rssBytes(pid);
          if (bytes !== undefined) rss = (rss ?? 0) + bytes;
        }
        track(w, matches);
        metrics[`proc.${w.name}.alive`] = w.current === undefined ? 0 : 1;
        metrics[`proc.${w.name}.restarts`] = w.restarts;
        if (rss !== undefined) metrics[`proc.${w.name}.rssBytes`] = rss;
      }
      scanned = true;
      return metrics;
    },
    events(): AgentEvent[] {
      const drained = pending;
      pending = [];
      return drained;
    },
  };
}

function same(a: Seen, b: Seen): boolean {
  // A stat we could not read once must not turn the same process into a restart.
  const known = Number.isFinite(a.start) && Number.isFinite(b.start);
  return a.pid === b.pid && (!known || a.start === b.start);
}
