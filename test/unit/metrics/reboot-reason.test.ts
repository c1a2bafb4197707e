import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import {
  type BootFacts,
  createRunJournal,
  RUN_KEY,
  type RunRecord,
  readBootFacts,
} from "../../../src/metrics/reboot-reason.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { openDatabase } from "../../../src/store/database.js";
import { createMetaStore, type MetaStore } from "../../../src/store/meta.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const T0 = Date.UTC(2026, 0, 10, 9, 0, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;
const BOOT_A = "6f1c2f0e-8a43-4f0b-9a57-1d2a2c0b9e11";
const BOOT_B = "0b0e3c55-2d7e-4a8e-b3b2-5c6f7e8d9a00";

/** The meta store as SQLite holds it: JSON text per key, so only what survives JSON comes back. */
function memoryMeta(initial: Record<string, string> = {}) {
  const rows = new Map(Object.entries(initial));
  const meta: Pick<MetaStore, "getJson" | "setJson"> = {
    getJson<T>(key: string): T | undefined {
      const raw = rows.get(key);
      if (raw === undefined) return undefined;
      try {
        return JSON.parse(raw) as T;
      } catch {
        return undefined;
      }
    },
    setJson(key, value) {
      const text = JSON.stringify(value);
      if (text === undefined) throw new Error(`setJson(${key}): value does not serialise`);
      rows.set(key, text);
    },
  };
  return { meta, rows, record: () => meta.getJson<RunRecord>(RUN_KEY) };
}

/** `null` for a fact that could not be read (an `undefined` argument would take the default). */
function facts(now: number, bootId: string | null = BOOT_A, uptimeSec: number | null = 30): BootFacts {
  return { bootId: bootId ?? undefined, uptimeSec: uptimeSec ?? undefined, now };
}

describe("createRunJournal", () => {
  it("reports a first start when there is no record of a previous run", () => {
    const { meta, record } = memoryMeta();
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0));
    expect(events).toEqual([
      {
        type: "agent.started",
        severity: "info",
        source: "agent",
        message: "agent started",
        details: { reason: "first start", bootId: BOOT_A, uptimeSec: 30, agentVersion: "1.2.0" },
      },
    ]);
    expect(record()).toEqual({
      bootId: BOOT_A,
      uptimeSec: 30,
      startedAt: T0,
      agentVersion: "1.2.0",
      cleanStop: false,
      starts: [T0],
    });
  });

  it("reports a clean restart when the previous run wrote the clean-stop marker in the same boot", () => {
    const { meta, record } = memoryMeta();
    const first = createRunJournal({ meta, agentVersion: "1.2.0" });
    first.start(facts(T0));
    first.cleanStop(T0 + 5 * MIN);
    expect(record()).toMatchObject({ cleanStop: true, stoppedAt: T0 + 5 * MIN });

    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + 6 * MIN, BOOT_A, 390));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "agent.restart",
      severity: "info",
      source: "agent",
      message: "agent restarted after a clean stop",
      details: {
        reason: "clean restart",
        previousStartedAt: T0,
        previousStoppedAt: T0 + 5 * MIN,
        agentVersion: "1.2.0",
        previousAgentVersion: "1.2.0",
        versionChanged: false,
      },
    });
    expect(record()).toMatchObject({ cleanStop: false, startedAt: T0 + 6 * MIN, starts: [T0, T0 + 6 * MIN] });
  });

  it("reports a crash when the previous run in the same boot ended without the marker", () => {
    const { meta } = memoryMeta();
    createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0));
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + MIN, BOOT_A, 90));
    expect(events).toEqual([
      expect.objectContaining({
        type: "agent.restart",
        severity: "medium",
        source: "agent",
        message: "agent restarted after a crash (killed, crashed or out of memory)",
        details: expect.objectContaining({ reason: "crash" }),
      }),
    ]);
  });

  it("reports an orderly reboot when the boot id changed after a clean stop", () => {
    const { meta } = memoryMeta();
    const first = createRunJournal({ meta, agentVersion: "1.2.0" });
    first.start(facts(T0));
    first.cleanStop(T0 + HOUR);
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + 2 * HOUR, BOOT_B, 25));
    expect(events).toEqual([
      {
        type: "device.reboot",
        severity: "medium",
        source: "device",
        message: "device rebooted: orderly reboot",
        details: {
          reason: "orderly reboot",
          detectedBy: "bootId",
          bootId: BOOT_B,
          previousBootId: BOOT_A,
          uptimeSec: 25,
          cleanStopBeforeReboot: true,
          previousStartedAt: T0,
          previousStoppedAt: T0 + HOUR,
          agentVersion: "1.2.0",
          previousAgentVersion: "1.2.0",
          versionChanged: false,
        },
      },
    ]);
  });

  it("reports power loss or a device crash when the boot id changed without a clean stop", () => {
    const { meta } = memoryMeta();
    createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0));
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + HOUR, BOOT_B, 25));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "device.reboot",
      severity: "medium",
      message: "device rebooted: power loss or crash of the device",
      details: {
        reason: "power loss or crash of the device",
        cleanStopBeforeReboot: false,
        previousBootId: BOOT_A,
      },
    });
  });

  describe("without a boot id", () => {
    it("reads a reboot from an uptime shorter than the time since the previous start", () => {
      const { meta } = memoryMeta();
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0, null, 30));
      const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + HOUR, null, 600));
      expect(events[0]).toMatchObject({
        type: "device.reboot",
        details: { detectedBy: "uptime", reason: "power loss or crash of the device", uptimeSec: 600 },
      });
    });

    it("reads a restart when uptime covers the time since the previous start", () => {
      const { meta } = memoryMeta();
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0, null, 30));
      const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + HOUR, null, 3630));
      expect(events[0]).toMatchObject({ type: "agent.restart", details: { reason: "crash" } });
    });

    it("reads a reboot from uptime going back even when the wall clock went back too", () => {
      const { meta } = memoryMeta();
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0, null, 7200));
      // A terminal without RTC: the wall clock restarts at 1970, so the time since the previous start is negative.
      const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(5_000, null, 20));
      expect(events[0]).toMatchObject({ type: "device.reboot", details: { detectedBy: "uptime" } });
    });

    it("falls back to uptime when only the previous run had a boot id", () => {
      const { meta } = memoryMeta();
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0, BOOT_A, 30));
      const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + HOUR, null, 40));
      expect(events[0]).toMatchObject({ type: "device.reboot", details: { detectedBy: "uptime" } });
    });

    it("counts a start as a restart and says a reboot could not be told when uptime is unknown too", () => {
      const { meta } = memoryMeta();
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0, null, null));
      const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + HOUR, null, null));
      expect(events[0]).toMatchObject({
        type: "agent.restart",
        details: { reason: "crash", rebootDetectable: false },
      });
    });
  });

  describe("crash loop", () => {
    /** One start every `everyMs`, each run crashing (no cleanStop); returns the events per start. */
    function crashing(
      meta: Pick<MetaStore, "getJson" | "setJson">,
      count: number,
      from: number,
      everyMs: number,
    ) {
      return Array.from({ length: count }, (_, i) =>
        createRunJournal({ meta, agentVersion: "1.2.0" }).start(
          facts(from + i * everyMs, BOOT_A, 30 + i * 60),
        ),
      );
    }
    const loops = (events: { type: string }[][]) =>
      events.map((list) => list.filter((e) => e.type === "agent.crash_loop").length);

    it("raises a high event on the sixth start within an hour, once an hour at most", () => {
      const { meta } = memoryMeta();
      const events = crashing(meta, 16, T0, 5 * MIN);
      // Starts at 0, 5, …, 75 min: the 6th (25 min) raises; the next allowed at 85 min, beyond this run.
      expect(loops(events)).toEqual([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect(events[5]?.find((e) => e.type === "agent.crash_loop")).toEqual({
        type: "agent.crash_loop",
        severity: "high",
        source: "agent",
        message: "agent started 6 times within an hour, the latest after a crash",
        details: {
          startsLastHour: 6,
          maxStartsPerHour: 5,
          reason: "crash",
          agentVersion: "1.2.0",
          previousAgentVersion: "1.2.0",
        },
      });
      const later = crashing(meta, 1, T0 + 25 * MIN + HOUR, 0);
      expect(loops(later)).toEqual([1]);
    });

    it("never raises for clean restarts, however many", () => {
      const { meta } = memoryMeta();
      for (let i = 0; i < 10; i += 1) {
        const journal = createRunJournal({ meta, agentVersion: "1.2.0" });
        const events = journal.start(facts(T0 + i * MIN, BOOT_A, 30 + i * 60));
        expect(events.map((e) => e.type)).not.toContain("agent.crash_loop");
        journal.cleanStop(T0 + i * MIN + 30_000);
      }
    });

    it("counts reboots that followed an unclean end", () => {
      const { meta } = memoryMeta();
      const events = Array.from({ length: 6 }, (_, i) =>
        createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + i * 5 * MIN, `boot-${i}`, 20)),
      );
      expect(loops(events)).toEqual([0, 0, 0, 0, 0, 1]);
      expect(events[5]?.[1]?.details).toMatchObject({ reason: "power loss or crash of the device" });
    });

    it("follows a configured limit and forgets starts older than an hour", () => {
      const { meta } = memoryMeta();
      const events = crashing(meta, 4, T0, 30 * MIN);
      // Starts at 0, 30, 60, 90 min: never more than 2 within an hour.
      expect(loops(events)).toEqual([0, 0, 0, 0]);
      const tight = createRunJournal({ meta, agentVersion: "1.2.0", crashLoop: { maxStartsPerHour: 1 } });
      expect(tight.start(facts(T0 + 100 * MIN, BOOT_A, 6000)).map((e) => e.type)).toContain(
        "agent.crash_loop",
      );
    });

    it("keeps the list of start times bounded", () => {
      const { meta, record } = memoryMeta();
      crashing(meta, 200, T0, 1000);
      const starts = record()?.starts ?? [];
      expect(starts.length).toBe(60);
      expect(starts.at(-1)).toBe(T0 + 199 * 1000);
    });

    it("drops start times from the future after the wall clock went back", () => {
      const { meta, record } = memoryMeta();
      crashing(meta, 3, T0, MIN);
      createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 - HOUR, BOOT_A, 400));
      expect(record()?.starts).toEqual([T0 - HOUR]);
    });
  });

  it("reads its record back through the SQLite meta store", () => {
    const dir = makeTmpDir("run-journal");
    const open = () => {
      const opened = openDatabase({
        dataDir: dir,
        log: silentLogger,
        now: () => T0,
        walLimitBytes: 1024 * 1024,
      });
      onTestFinished(() => {
        if (opened.db.open) opened.db.close();
      });
      return opened.db;
    };
    const first = open();
    const journal = createRunJournal({ meta: createMetaStore(first), agentVersion: "1.2.0" });
    journal.start(facts(T0));
    journal.cleanStop(T0 + MIN);
    first.close();

    const events = createRunJournal({ meta: createMetaStore(open()), agentVersion: "1.2.0" }).start(
      facts(T0 + HOUR, BOOT_B, 20),
    );
    expect(events[0]).toMatchObject({ type: "device.reboot", details: { reason: "orderly reboot" } });
  });

  it("reports the version change of a restart after an update", () => {
    const { meta } = memoryMeta();
    const old = createRunJournal({ meta, agentVersion: "1.2.0" });
    old.start(facts(T0));
    old.cleanStop(T0 + MIN);
    const events = createRunJournal({ meta, agentVersion: "1.3.0" }).start(facts(T0 + 2 * MIN, BOOT_A, 150));
    expect(events[0]).toMatchObject({
      type: "agent.restart",
      severity: "info",
      message: "agent restarted after a clean stop (version 1.2.0 → 1.3.0)",
      details: { agentVersion: "1.3.0", previousAgentVersion: "1.2.0", versionChanged: true },
    });
  });

  it("leaves a crashed previous run looking crashed when stopped before start", () => {
    const { meta, record } = memoryMeta();
    createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0));
    createRunJournal({ meta, agentVersion: "1.2.0" }).cleanStop(T0 + MIN);
    expect(record()?.cleanStop).toBe(false);
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0 + 2 * MIN, BOOT_A, 150));
    expect(events[0]?.details).toMatchObject({ reason: "crash" });
  });

  // The meta store reads torn JSON as absent, so that one is a plain first start.
  it.each([
    ["a record of another shape", '{"bootId":42}'],
    ["JSON null", "null"],
  ])("starts afresh, saying so, when the record is %s", (_, text) => {
    const { meta, record } = memoryMeta({ [RUN_KEY]: text });
    const events = createRunJournal({ meta, agentVersion: "1.2.0" }).start(facts(T0));
    expect(events).toEqual([
      expect.objectContaining({
        type: "agent.started",
        details: expect.objectContaining({ reason: "previous run record unreadable" }),
      }),
    ]);
    expect(record()).toMatchObject({ startedAt: T0, cleanStop: false });
  });
});

describe("readBootFacts", () => {
  it("reads the boot id and uptime from the files given", () => {
    const dir = makeTmpDir("boot-facts");
    writeFileSync(join(dir, "boot_id"), `${BOOT_A}\n`);
    writeFileSync(join(dir, "uptime"), "12345.67 40000.12\n");
    const read = readBootFacts({
      bootIdFile: join(dir, "boot_id"),
      uptimeFile: join(dir, "uptime"),
      now: () => T0,
    });
    expect(read).toEqual({ bootId: BOOT_A, uptimeSec: 12345.67, now: T0 });
  });

  it("reads undefined for missing files and never throws", () => {
    const dir = makeTmpDir("boot-facts");
    const read = readBootFacts({
      bootIdFile: join(dir, "none"),
      uptimeFile: join(dir, "none"),
      now: () => T0,
    });
    expect(read).toEqual({ bootId: undefined, uptimeSec: undefined, now: T0 });
  });

  it.each([
    ["empty files", "", ""],
    ["whitespace", "  \n", " \n"],
    ["garbage", `${"x".repeat(200)}`, "up since tuesday"],
    ["a multi-line boot id and a negative uptime", "a\nb", "-3 4"],
  ])("reads undefined from %s", (_, bootText, uptimeText) => {
    const files: Record<string, string> = { boot: bootText, up: uptimeText };
    const readFile = (path: string) => files[path] ?? "";
    expect(readBootFacts({ bootIdFile: "boot", uptimeFile: "up", now: () => T0, readFile })).toEqual({
      bootId: undefined,
      uptimeSec: undefined,
      now: T0,
    });
  });

  it("reads /proc/uptime by default", () => {
    const seen: string[] = [];
    readBootFacts({
      bootIdFile: "/x/boot_id",
      now: () => T0,
      readFile: (path) => {
        seen.push(path);
        throw new Error("EACCES");
      },
    });
    expect(seen).toEqual(["/x/boot_id", "/proc/uptime"]);
  });
});
