import { describe, expect, it, onTestFinished } from "vitest";
import {
  type ClockTrust,
  createClockSanity,
  LAST_TRUSTED_KEY,
  SETTLE_MS,
  TRUST_KEY,
  type TrustedTime,
} from "../../../src/metrics/clock-sanity.js";
import type { Clock } from "../../../src/shared/clock.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { openDatabase } from "../../../src/store/database.js";
import { createMetaStore, type MetaStore } from "../../../src/store/meta.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const BUILD = Date.UTC(2026, 0, 1);
const REAL = Date.UTC(2026, 2, 15, 8, 0, 0);
const BOOT_A = "6f1c2f0e-8a43-4f0b-9a57-1d2a2c0b9e11";
const BOOT_B = "0b0e3c55-2d7e-4a8e-b3b2-5c6f7e8d9a00";

type Meta = Pick<MetaStore, "getJson" | "setJson">;

/** The meta store as SQLite holds it (JSON text per key), counting writes per key. */
function memoryMeta() {
  const rows = new Map<string, string>();
  const writes = new Map<string, number>();
  const meta: Meta = {
    getJson<T>(key: string): T | undefined {
      const raw = rows.get(key);
      return raw === undefined ? undefined : (JSON.parse(raw) as T);
    },
    setJson(key, value) {
      const text = JSON.stringify(value);
      if (text === undefined) throw new Error(`setJson(${key}): value does not serialise`);
      rows.set(key, text);
      writes.set(key, (writes.get(key) ?? 0) + 1);
    },
  };
  return {
    meta,
    writes: (key: string) => writes.get(key) ?? 0,
    lastTrusted: () => meta.getJson<TrustedTime>(LAST_TRUSTED_KEY),
  };
}

/**
 * A terminal: wall clock, this process's monotonic clock and uptime (which counts suspend).
 * `null` uptime stands for an unreadable /proc/uptime.
 */
function terminal(wall: number, uptimeSec: number | null = 20) {
  const state = { wall, mono: 0, uptime: uptimeSec };
  const clock: Clock = { now: () => state.wall, monotonic: () => state.mono };
  return {
    clock,
    uptimeSec: () => state.uptime ?? undefined,
    /** Time passes: every clock moves. */
    advance(ms: number) {
      state.wall += ms;
      state.mono += ms;
      if (state.uptime !== null) state.uptime += ms / SEC;
    },
    /** Someone (NTP, a user, an RTC reset) sets the wall clock. */
    setWall(ms: number) {
      state.wall = ms;
    },
    /** The device sleeps: the process's monotonic clock stops, wall and uptime go on. */
    suspend(ms: number) {
      state.wall += ms;
      if (state.uptime !== null) state.uptime += ms / SEC;
    },
    /** The agent process restarts in the same boot: a new monotonic origin. */
    restartProcess() {
      state.mono = 0;
    },
  };
}

type Terminal = ReturnType<typeof terminal>;

function sanity(
  device: Terminal,
  meta: Meta,
  /** `null` for an unreadable boot id (an `undefined` argument would take the default). */
  bootId: string | null = BOOT_A,
  extra: { maxAheadMs?: number; toleranceMs?: number } = {},
) {
  return createClockSanity({
    clock: device.clock,
    buildTime: BUILD,
    bootId: bootId ?? undefined,
    uptimeSec: device.uptimeSec,
    meta,
    ...extra,
  });
}

const types = (events: { type: string }[]) => events.map((e) => e.type);

describe("createClockSanity", () => {
  it("is untrusted until the first check", () => {
    const { meta } = memoryMeta();
    const checker = sanity(terminal(REAL), meta);
    expect(checker.trusted()).toBe(false);
    expect(checker.reason()).toBe("not checked yet");
    expect(checker.check()).toEqual([]);
    expect(checker.trusted()).toBe(true);
    expect(checker.reason()).toBeUndefined();
  });

  it("distrusts a 1970 boot, trusts the NTP time of the same boot and keeps 1970 out of the reference", () => {
    const { meta, lastTrusted, writes } = memoryMeta();
    // The previous boot left a good reference.
    meta.setJson(LAST_TRUSTED_KEY, { wall: REAL - DAY, bootId: BOOT_B, uptimeSec: 5000 });
    const device = terminal(20 * SEC, 20);
    const checker = sanity(device, meta);

    expect(checker.check()).toEqual([
      {
        type: "clock.untrusted",
        severity: "high",
        source: "device",
        message: `wall clock untrusted: wall clock 1970-01-01T00:00:20.000Z is before the agent's build time 2026-01-01T00:00:00.000Z`,
        details: {
          now: 20 * SEC,
          reason:
            "wall clock 1970-01-01T00:00:20.000Z is before the agent's build time 2026-01-01T00:00:00.000Z",
          rule: "before-build",
          reference: BUILD,
          bootId: BOOT_A,
          uptimeSec: 20,
        },
      },
    ]);
    device.advance(30 * SEC);
    expect(checker.check()).toEqual([]);
    expect(writes(LAST_TRUSTED_KEY)).toBe(1);

    device.setWall(REAL);
    const events = checker.check();
    expect(events).toEqual([
      {
        type: "clock.trusted",
        severity: "info",
        source: "device",
        message: "wall clock trusted again",
        details: {
          now: REAL,
          previousReason: expect.stringContaining("before the agent's build time"),
          untrustedSince: 20 * SEC,
        },
      },
    ]);
    expect(checker.trusted()).toBe(true);
    expect(lastTrusted()).toEqual({ wall: REAL, bootId: BOOT_A, uptimeSec: 50 });

    device.advance(2 * MIN);
    expect(checker.check()).toEqual([]);
    expect(checker.trusted()).toBe(true);
  });

  it("distrusts a clock years ahead of the build time", () => {
    const { meta, lastTrusted } = memoryMeta();
    const checker = sanity(terminal(BUILD + 21 * 365 * DAY), meta);
    const [event] = checker.check();
    expect(event).toMatchObject({
      type: "clock.untrusted",
      details: { rule: "years-ahead", reference: BUILD + 20 * 365 * DAY },
    });
    expect(checker.reason()).toMatch(/more than 20 years after the agent's build time/);
    expect(lastTrusted()).toBeUndefined();

    const tight = sanity(terminal(BUILD + 400 * DAY), memoryMeta().meta, BOOT_A, { maxAheadMs: 365 * DAY });
    expect(types(tight.check())).toEqual(["clock.untrusted"]);
  });

  it("distrusts a clock that went back across a reboot, beyond the tolerance only", () => {
    const { meta } = memoryMeta();
    const before = terminal(REAL, 100);
    sanity(before, meta, BOOT_A).check();

    const behind = sanity(terminal(REAL - HOUR, 20), meta, BOOT_B);
    expect(behind.check()).toEqual([
      expect.objectContaining({
        type: "clock.untrusted",
        details: expect.objectContaining({ rule: "behind-last-trusted", reference: REAL, now: REAL - HOUR }),
      }),
    ]);
    expect(behind.reason()).toBe("wall clock is 1 h behind the last trusted time 2026-03-15T08:00:00.000Z");

    const { meta: meta2 } = memoryMeta();
    sanity(terminal(REAL, 100), meta2, BOOT_A).check();
    const slightly = sanity(terminal(REAL - 4 * MIN, 20), meta2, BOOT_B);
    expect(slightly.check()).toEqual([]);
    expect(slightly.trusted()).toBe(true);
  });

  describe("within one boot", () => {
    it("distrusts a clock behind the last trusted time plus uptime after a restart", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, 100);
      sanity(device, meta).check();

      device.advance(2 * HOUR);
      device.restartProcess();
      device.setWall(REAL + HOUR);
      const checker = sanity(device, meta);
      expect(checker.check()).toEqual([
        expect.objectContaining({
          type: "clock.untrusted",
          details: expect.objectContaining({ rule: "went-back", reference: REAL + 2 * HOUR }),
        }),
      ]);
      expect(checker.reason()).toBe("wall clock went back 1 h against the last trusted time plus uptime");
    });

    it("trusts a restart whose clock ran on with uptime, suspend included", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, 100);
      sanity(device, meta).check();
      device.advance(HOUR);
      device.suspend(3 * HOUR);
      device.restartProcess();
      const checker = sanity(device, meta);
      expect(checker.check()).toEqual([]);
      expect(checker.trusted()).toBe(true);
    });

    it("distrusts a step back within a run and trusts again once the clock agrees", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, 100);
      const checker = sanity(device, meta);
      checker.check();
      device.advance(MIN);
      device.setWall(REAL + MIN - 10 * MIN);
      // The reference persisted a minute ago catches it first; uptime would have too.
      expect(types(checker.check())).toEqual(["clock.untrusted"]);
      expect(checker.reason()).toMatch(/9 min behind the last trusted time/);
      device.advance(MIN);
      expect(checker.check()).toEqual([]);
      device.setWall(REAL + 2 * MIN);
      expect(types(checker.check())).toEqual(["clock.trusted"]);
    });

    it("absorbs NTP steps within the tolerance", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, 100);
      const checker = sanity(device, meta);
      checker.check();
      for (let i = 0; i < 10; i += 1) {
        device.advance(MIN);
        device.setWall(REAL + (i + 1) * MIN + (i % 2 === 0 ? 2 * MIN : -2 * MIN));
        expect(checker.check()).toEqual([]);
      }
    });

    it("trusts an NTP correction ahead of a wrong but plausible RTC once it has held, and moves the reference", () => {
      const { meta, lastTrusted } = memoryMeta();
      // A fresh terminal whose RTC reads a plausible date a month behind: nothing tells it apart yet.
      const wrong = REAL - 30 * DAY;
      const device = terminal(wrong, 100);
      const checker = sanity(device, meta);
      expect(checker.check()).toEqual([]);
      expect(lastTrusted()?.wall).toBe(wrong);

      device.advance(30 * SEC);
      device.setWall(REAL);
      expect(checker.check()).toEqual([
        expect.objectContaining({
          type: "clock.untrusted",
          details: expect.objectContaining({ rule: "jumped-ahead", reference: wrong + 30 * SEC }),
        }),
      ]);
      expect(checker.reason()).toMatch(/jumped ahead 30 days .* once it holds for 10 min/);

      device.advance(SETTLE_MS / 2);
      expect(checker.check()).toEqual([]);
      expect(checker.trusted()).toBe(false);
      expect(lastTrusted()?.wall).toBe(wrong);

      device.advance(SETTLE_MS / 2);
      expect(types(checker.check())).toEqual(["clock.trusted"]);
      expect(lastTrusted()?.wall).toBe(REAL + SETTLE_MS);

      // The next run of the same boot measures against the corrected reference, not the month-old one.
      device.advance(5 * MIN);
      device.restartProcess();
      const next = sanity(device, meta);
      expect(next.check()).toEqual([]);
      expect(next.trusted()).toBe(true);
    });

    it("restarts the settling when the clock jumps again", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL - 30 * DAY, 100);
      const checker = sanity(device, meta);
      checker.check();
      device.setWall(REAL);
      checker.check();
      device.advance(SETTLE_MS - MIN);
      device.setWall(REAL + 2 * DAY);
      expect(checker.check()).toEqual([]);
      device.advance(2 * MIN);
      expect(checker.trusted()).toBe(false);
      checker.check();
      expect(checker.trusted()).toBe(false);
      device.advance(SETTLE_MS);
      expect(types(checker.check())).toEqual(["clock.trusted"]);
    });
  });

  describe("without a boot id", () => {
    it("does not tie a restart to the previous reference, yet still refuses time going back", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, 100);
      sanity(device, meta, null).check();
      expect(meta.getJson<TrustedTime>(LAST_TRUSTED_KEY)).toEqual({ wall: REAL, uptimeSec: 100 });

      // Uptime says 1 h passed, the wall clock says 3 h: could be another boot, so no same-boot rule.
      device.advance(HOUR);
      device.setWall(REAL + 3 * HOUR);
      device.restartProcess();
      expect(sanity(device, meta, null).check()).toEqual([]);

      device.setWall(REAL - HOUR);
      device.restartProcess();
      const [event] = sanity(device, meta, null).check();
      expect(event?.details).toMatchObject({ rule: "behind-last-trusted" });
    });
  });

  describe("without uptime", () => {
    it("measures with the monotonic clock within a run and ignores the gap a suspend leaves", () => {
      const { meta } = memoryMeta();
      const device = terminal(REAL, null);
      const checker = sanity(device, meta);
      checker.check();
      device.suspend(2 * HOUR);
      expect(checker.check()).toEqual([]);
      expect(checker.trusted()).toBe(true);

      device.advance(MIN);
      device.setWall(REAL + 2 * HOUR - 20 * MIN);
      expect(checker.check()).toEqual([
        expect.objectContaining({
          details: expect.objectContaining({ rule: "went-back", uptimeSec: undefined }),
        }),
      ]);
    });
  });

  it("persists the trusted time at most once a minute and never while untrusted", () => {
    const { meta, writes, lastTrusted } = memoryMeta();
    const device = terminal(REAL, 100);
    const checker = sanity(device, meta);
    for (let i = 0; i <= 30; i += 1) {
      checker.check();
      device.advance(10 * SEC);
    }
    // Checks from 0 s to 300 s: written at 0, 60, 120, 180, 240 and 300 s.
    expect(writes(LAST_TRUSTED_KEY)).toBe(6);
    expect(lastTrusted()).toEqual({ wall: REAL + 5 * MIN, bootId: BOOT_A, uptimeSec: 400 });

    device.setWall(BUILD - DAY);
    for (let i = 0; i < 12; i += 1) {
      checker.check();
      device.advance(10 * SEC);
    }
    expect(writes(LAST_TRUSTED_KEY)).toBe(6);
  });

  it("reports a change of trust once, across restarts too", () => {
    const { meta, writes } = memoryMeta();
    const device = terminal(10 * SEC, 10);
    expect(types(sanity(device, meta).check())).toEqual(["clock.untrusted"]);
    expect(meta.getJson<ClockTrust>(TRUST_KEY)).toMatchObject({ trusted: false, since: 10 * SEC });

    device.advance(MIN);
    device.restartProcess();
    const again = sanity(device, meta);
    expect(again.check()).toEqual([]);
    expect(again.check()).toEqual([]);
    expect(again.trusted()).toBe(false);

    device.setWall(REAL);
    expect(types(again.check())).toEqual(["clock.trusted"]);
    expect(again.check()).toEqual([]);
    expect(writes(TRUST_KEY)).toBe(2);

    // A healthy start raises nothing: trust is the state assumed when nothing was reported.
    expect(sanity(terminal(REAL + DAY), memoryMeta().meta).check()).toEqual([]);
  });

  it("keeps its state in the SQLite meta store across a restart", () => {
    const dir = makeTmpDir("clock-sanity");
    const open = () => {
      const opened = openDatabase({
        dataDir: dir,
        log: silentLogger,
        now: () => REAL,
        walLimitBytes: 1024 * 1024,
      });
      onTestFinished(() => {
        if (opened.db.open) opened.db.close();
      });
      return opened.db;
    };
    const first = open();
    sanity(terminal(REAL, 100), createMetaStore(first), BOOT_A).check();
    first.close();

    const second = open();
    const checker = sanity(terminal(REAL - HOUR, 20), createMetaStore(second), BOOT_B);
    expect(checker.check()).toEqual([
      expect.objectContaining({
        type: "clock.untrusted",
        details: expect.objectContaining({ rule: "behind-last-trusted" }),
      }),
    ]);
  });

  it("ignores a stored reference of the wrong shape", () => {
    const { meta } = memoryMeta();
    meta.setJson(LAST_TRUSTED_KEY, { wall: "yesterday" });
    meta.setJson(TRUST_KEY, { trusted: "maybe" });
    const checker = sanity(terminal(REAL), meta);
    expect(checker.check()).toEqual([]);
    expect(checker.trusted()).toBe(true);
  });
});
