import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkPreconditions,
  type PreconditionInput,
  type PreconditionResult,
  RETRY_AFTER_MS,
} from "../../../src/updates/preconditions.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const NOW = 1_767_225_600_000;
const MIB = 1024 * 1024;
const MINUTE = 60_000;

/** Every precondition met: no locks, no window, a full battery, plenty of disk. */
function input(overrides: Partial<PreconditionInput> = {}): PreconditionInput {
  return {
    lockFiles: [],
    intakeLocks: { held: () => [] },
    now: NOW,
    battery: async () => ({ pct: 90, charging: false }),
    minBatteryPct: 30,
    freeBytes: async () => 100 * MIB,
    workDir: "/data/pos-agent/staging",
    neededBytes: 10 * MIB,
    ...overrides,
  };
}

const at = (clock: string) => () => {
  const [hours, minutes] = clock.split(":").map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
};

function deferral(result: PreconditionResult) {
  if (result.ok) throw new Error("expected a deferral, got ok");
  return result;
}

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

describe("checkPreconditions", () => {
  it("answers ok when every precondition is met", async () => {
    expect(await checkPreconditions(input())).toEqual({ ok: true });
  });

  describe("one reason each", () => {
    const cases: Array<{
      name: string;
      overrides: () => Partial<PreconditionInput>;
      reason: string;
      retryAfterMs: number;
      message: RegExp;
    }> = [
      {
        name: "lock_held when a lock file exists (any content)",
        overrides: () => {
          const dir = makeTmpDir("pre-lock");
          const path = join(dir, "txn.lock");
          writeFileSync(path, "");
          return { lockFiles: [join(dir, "absent.lock"), path] };
        },
        reason: "lock_held",
        retryAfterMs: RETRY_AFTER_MS.lock_held,
        message: /lock file .*txn\.lock exists/,
      },
      {
        name: "lock_held when a lock file is a dangling symlink",
        overrides: () => {
          const dir = makeTmpDir("pre-link");
          const path = join(dir, "txn.lock");
          symlinkSync(join(dir, "nowhere"), path);
          return { lockFiles: [path] };
        },
        reason: "lock_held",
        retryAfterMs: RETRY_AFTER_MS.lock_held,
        message: /txn\.lock exists/,
      },
      {
        name: "lock_held when a lock file cannot be checked (EACCES)",
        overrides: () => ({
          lockFiles: ["/run/pos-app/txn.lock"],
          statPath: async () => {
            throw errno("EACCES", "permission denied, lstat '/run/pos-app/txn.lock'");
          },
        }),
        reason: "lock_held",
        retryAfterMs: RETRY_AFTER_MS.lock_held,
        message: /\/run\/pos-app\/txn\.lock cannot be checked, so counts as held: EACCES/,
      },
      {
        name: "lock_held when an app holds an intake lock",
        overrides: () => ({
          intakeLocks: {
            held: (now: number) => [
              { name: "payment", expiresAt: now + 30_000 },
              { name: "refund", expiresAt: now + 60_000 },
            ],
          },
        }),
        reason: "lock_held",
        retryAfterMs: RETRY_AFTER_MS.lock_held,
        message: /intake lock "payment" is held until 2026-01-01T00:00:30\.000Z \(and 1 more\)/,
      },
      {
        name: "outside_window outside a same-day window",
        overrides: () => ({ window: { start: "01:00", end: "05:00" }, localMinutes: at("12:00") }),
        reason: "outside_window",
        retryAfterMs: 13 * 60 * MINUTE,
        message: /outside the maintenance window 01:00-05:00 \(local time now 12:00\)/,
      },
      {
        name: "battery_low below the minimum",
        overrides: () => ({ battery: async () => ({ pct: 12, charging: false }) }),
        reason: "battery_low",
        retryAfterMs: RETRY_AFTER_MS.battery_low,
        message: /battery at 12%; updates need at least 30%/,
      },
      {
        name: "battery_low below the minimum even while charging",
        overrides: () => ({ battery: async () => ({ pct: 29, charging: true }) }),
        reason: "battery_low",
        retryAfterMs: RETRY_AFTER_MS.battery_low,
        message: /battery at 29% and charging; updates need at least 30%/,
      },
      {
        name: "battery_low when the battery reader throws",
        overrides: () => ({
          battery: async () => {
            throw new Error("fuel gauge gone");
          },
        }),
        reason: "battery_low",
        retryAfterMs: RETRY_AFTER_MS.battery_low,
        message: /battery level cannot be read: fuel gauge gone/,
      },
      {
        name: "disk_low when free bytes are below what is needed",
        overrides: () => ({ freeBytes: async () => 12 * MIB, neededBytes: 40 * MIB }),
        reason: "disk_low",
        retryAfterMs: RETRY_AFTER_MS.disk_low,
        message:
          /12\.0 MiB free in \/data\/pos-agent\/staging, 40\.0 MiB needed \(12582912 < 41943040 bytes\)/,
      },
      {
        name: "disk_low when free space cannot be read",
        overrides: () => ({
          freeBytes: async () => {
            throw errno("EIO", "i/o error, statfs");
          },
        }),
        reason: "disk_low",
        retryAfterMs: RETRY_AFTER_MS.disk_low,
        message: /free space in \/data\/pos-agent\/staging cannot be read: EIO/,
      },
    ];

    for (const row of cases) {
      it(`defers with ${row.name}`, async () => {
        const result = deferral(await checkPreconditions(input(row.overrides())));
        expect(result.reason).toBe(row.reason);
        expect(result.retryAfterMs).toBe(row.retryAfterMs);
        expect(result.message).toMatch(row.message);
      });
    }
  });

  it("names the first unmet one in the order lock, window, battery, disk", async () => {
    const dir = makeTmpDir("pre-order");
    const lock = join(dir, "txn.lock");
    writeFileSync(lock, "pid 42");
    const all: Partial<PreconditionInput> = {
      lockFiles: [lock],
      window: { start: "01:00", end: "05:00" },
      localMinutes: at("12:00"),
      battery: async () => ({ pct: 5 }),
      freeBytes: async () => 0,
    };
    const reasons: string[] = [];
    const steps: Array<Partial<PreconditionInput>> = [
      {},
      { lockFiles: [] },
      { window: undefined },
      { battery: async () => undefined },
      { freeBytes: async () => 100 * MIB },
    ];
    let current = { ...all };
    for (const step of steps) {
      current = { ...current, ...step };
      const result = await checkPreconditions(input(current));
      reasons.push(result.ok ? "ok" : result.reason);
    }
    expect(reasons).toEqual(["lock_held", "outside_window", "battery_low", "disk_low", "ok"]);
  });

  it("passes a terminal without a battery", async () => {
    expect(await checkPreconditions(input({ battery: async () => undefined }))).toEqual({ ok: true });
  });

  it("passes a battery exactly at the minimum", async () => {
    expect(await checkPreconditions(input({ battery: async () => ({ pct: 30 }) }))).toEqual({ ok: true });
  });

  it("passes when free bytes equal what is needed, and asks about the work dir", async () => {
    const asked: string[] = [];
    const result = await checkPreconditions(
      input({
        freeBytes: async (dir) => {
          asked.push(dir);
          return 10 * MIB;
        },
      }),
    );
    expect(result).toEqual({ ok: true });
    expect(asked).toEqual(["/data/pos-agent/staging"]);
  });

  it("reads the intake locks at the given time, a Date or ms", async () => {
    const seen: number[] = [];
    const intakeLocks = {
      held: (now: number) => {
        seen.push(now);
        return [];
      },
    };
    await checkPreconditions(input({ intakeLocks, now: NOW }));
    await checkPreconditions(input({ intakeLocks, now: new Date(NOW + 1) }));
    expect(seen).toEqual([NOW, NOW + 1]);
  });

  describe("a window spanning midnight (22:00-04:00)", () => {
    const window = { start: "22:00", end: "04:00" };
    const rows: Array<{ clock: string; inside: boolean; retryAfterMs?: number }> = [
      { clock: "21:59", inside: false, retryAfterMs: MINUTE },
      { clock: "22:00", inside: true },
      { clock: "23:59", inside: true },
      { clock: "00:00", inside: true },
      { clock: "03:59", inside: true },
      { clock: "04:00", inside: false, retryAfterMs: 18 * 60 * MINUTE },
      { clock: "12:30", inside: false, retryAfterMs: (9 * 60 + 30) * MINUTE },
    ];
    for (const row of rows) {
      it(`${row.inside ? "passes" : "defers until 22:00"} at ${row.clock}`, async () => {
        const result = await checkPreconditions(input({ window, localMinutes: at(row.clock) }));
        if (row.inside) {
          expect(result).toEqual({ ok: true });
          return;
        }
        const deferred = deferral(result);
        expect(deferred.reason).toBe("outside_window");
        expect(deferred.retryAfterMs).toBe(row.retryAfterMs);
        expect(deferred.message).toContain(`22:00-04:00 (local time now ${row.clock})`);
      });
    }
  });

  it("waits until the window opens to the second when the local time has seconds", async () => {
    const result = deferral(
      await checkPreconditions(
        input({ window: { start: "01:00", end: "05:00" }, localMinutes: () => 30 + 15 / 60 }),
      ),
    );
    expect(result.retryAfterMs).toBe(29 * MINUTE + 45_000);
    expect(result.message).toContain("local time now 00:30");
  });

  it("reads local time from the process time zone by default", async () => {
    const local = new Date(2026, 0, 1, 0, 59, 30).getTime();
    const result = deferral(
      await checkPreconditions(input({ window: { start: "01:00", end: "05:00" }, now: local })),
    );
    expect(result.retryAfterMs).toBe(30_000);
    expect(result.message).toContain("local time now 00:59");
  });

  it("passes when a lock file's directory does not exist either (the POS app is not running)", async () => {
    const dir = makeTmpDir("pre-dir");
    mkdirSync(join(dir, "run"));
    const lockFiles = [join(dir, "run", "txn.lock"), join(dir, "run", "pos-app", "txn.lock")];
    expect(await checkPreconditions(input({ lockFiles }))).toEqual({ ok: true });
  });
});
