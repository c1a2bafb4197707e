import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createProcessWatch } from "../../../src/metrics/host/process-watch.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

/** A /proc with real files: cmdline (NUL-separated), stat (start time in field 22) and status (VmRSS). */
function fakeProc() {
  const root = makeTmpDir("proc");
  const procRoot = join(root, "proc");
  mkdirSync(procRoot);
  const api = {
    procRoot,
    start(pid: number, argv: string[], opts: { startTicks?: number; rssKb?: number; comm?: string } = {}) {
      const dir = join(procRoot, String(pid));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "cmdline"), argv.length === 0 ? "" : `${argv.join("\0")}\0`);
      const comm = opts.comm ?? (argv[0] ?? "kthread").split("/").pop();
      // pid (comm) state ppid … starttime is field 22, the 20th after the command name.
      const rest = [
        "S",
        "1",
        ...Array.from({ length: 17 }, () => "0"),
        String(opts.startTicks ?? pid * 10),
        "0",
      ];
      writeFileSync(join(dir, "stat"), `${pid} (${comm}) ${rest.join(" ")}\n`);
      writeFileSync(
        join(dir, "status"),
        `Name:\t${comm}\nVmPeak:\t  999999 kB\n${opts.rssKb === undefined ? "" : `VmRSS:\t  ${opts.rssKb} kB\n`}`,
      );
      return api;
    },
    /** A process that exec()s or renames itself: same pid, new command line. */
    rename(pid: number, argv: string[]) {
      writeFileSync(join(procRoot, String(pid), "cmdline"), `${argv.join("\0")}\0`);
      return api;
    },
    stop(pid: number) {
      rmSync(join(procRoot, String(pid)), { recursive: true, force: true });
      return api;
    },
  };
  // init, a kernel thread and a bystander, as on any box
  api.start(1, ["/sbin/init"]).start(2, []).start(300, ["/usr/sbin/sshd", "-D"]);
  return api;
}

const POS = { name: "pos", match: "pos-app( |$)" };

describe("process watch", () => {
  it("reports a running process alive with the RSS of all its processes, never matching the agent itself", async () => {
    const proc = fakeProc()
      .start(500, ["/opt/pos/bin/pos-app", "--kiosk"], { rssKb: 100_000 })
      .start(510, ["/opt/pos/bin/pos-app", "--renderer"], { rssKb: 50_000 })
      .start(600, ["node", "/opt/pos-agent/dist/main.js", "--watch", "pos-app"], { rssKb: 70_000 });
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot, selfPid: 600 });
    expect(await watch.sample()).toEqual({
      "proc.pos.alive": 1,
      "proc.pos.restarts": 0,
      "proc.pos.rssBytes": 150_000 * 1024,
    });
    expect(watch.events()).toEqual([]);
  });

  it("counts a pid change between two scans as one restart, with an event naming both pids", async () => {
    const proc = fakeProc().start(500, ["pos-app"], { rssKb: 1 });
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    await watch.sample();
    proc.stop(500).start(777, ["pos-app"], { rssKb: 1 });
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 1 });
    expect(watch.events()).toEqual([
      {
        type: "process.restarted",
        severity: "info",
        source: "host.process",
        message: "pos restarted",
        details: { name: "pos", oldPid: 500, newPid: 777 },
      },
    ]);
    expect(watch.events()).toEqual([]); // drained
  });

  it("raises down when the process vanishes and up when a new one returns: one restart", async () => {
    const proc = fakeProc().start(500, ["pos-app"]);
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    await watch.sample();
    proc.stop(500);
    const down = await watch.sample();
    expect(down).toEqual({ "proc.pos.alive": 0, "proc.pos.restarts": 0 });
    expect(down).not.toHaveProperty("proc.pos.rssBytes");
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 0 });
    proc.start(900, ["pos-app"]);
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 1 });
    expect(watch.events().map((e) => [e.type, e.severity, e.details])).toEqual([
      ["process.down", "medium", { name: "pos", pid: 500 }],
      ["process.up", "info", { name: "pos", pid: 900, previousPid: 500 }],
    ]);
  });

  it("raises no event for a process missing at start, and up without a restart when it first appears", async () => {
    const proc = fakeProc();
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    expect(await watch.sample()).toEqual({ "proc.pos.alive": 0, "proc.pos.restarts": 0 });
    expect(watch.events()).toEqual([]);
    proc.start(500, ["pos-app"]);
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 0 });
    expect(watch.events().map((e) => e.type)).toEqual(["process.up"]);
  });

  it("sees a restart that got the same pid back, by its start time", async () => {
    const proc = fakeProc().start(500, ["pos-app"], { startTicks: 1000 });
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    await watch.sample();
    proc.stop(500).start(500, ["pos-app"], { startTicks: 9000 });
    expect(await watch.sample()).toMatchObject({ "proc.pos.restarts": 1 });
    expect(watch.events().map((e) => e.details)).toEqual([{ name: "pos", oldPid: 500, newPid: 500 }]);
  });

  it("does not count a helper process coming and going as a restart", async () => {
    const proc = fakeProc().start(500, ["pos-app"], { startTicks: 100 });
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    await watch.sample();
    proc.start(520, ["pos-app", "--worker"], { startTicks: 200 });
    await watch.sample();
    proc.stop(520);
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1, "proc.pos.restarts": 0 });
    expect(watch.events()).toEqual([]);
  });

  it("finds an app that renamed itself after forking (zygote) at the next scan", async () => {
    const proc = fakeProc();
    const watch = createProcessWatch({
      processes: [{ name: "pos", match: "^com\\.example\\.pos$" }],
      procRoot: proc.procRoot,
    });
    await watch.sample();
    proc.start(4242, ["zygote64"]); // caught between fork and setArgV0
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 0 });
    proc.rename(4242, ["com.example.pos"]);
    expect(await watch.sample()).toMatchObject({ "proc.pos.alive": 1 });
  });

  it("sees a long-lived process exec into the watched one within a few scans", async () => {
    const proc = fakeProc().start(333, ["/bin/sh", "/opt/pos/wait-for-network.sh"]);
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot });
    for (let i = 0; i < 3; i++) await watch.sample();
    proc.rename(333, ["/opt/pos/bin/pos-app"]);
    const alive: number[] = [];
    for (let i = 0; i < 4; i++) alive.push((await watch.sample())["proc.pos.alive"] ?? -1);
    expect(alive).toContain(1);
    expect(alive.at(-1)).toBe(1);
  });

  it("leaves metrics out, with one event, when /proc hides other processes (hidepid)", async () => {
    const proc = fakeProc().stop(1).stop(2).stop(300).start(600, ["pos-agent"]);
    const watch = createProcessWatch({ processes: [POS], procRoot: proc.procRoot, selfPid: 600 });
    expect(await watch.sample()).toEqual({});
    expect(await watch.sample()).toEqual({});
    expect(watch.events().map((e) => [e.type, e.severity])).toEqual([["process.watch.unavailable", "low"]]);
  });

  it("refuses a watched name that would break the metric name", () => {
    expect(() => createProcessWatch({ processes: [{ name: "pos.app", match: "x" }] })).toThrow(/metric-safe/);
  });
});
