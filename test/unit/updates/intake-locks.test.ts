import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_LOCK_TTL_SEC } from "../../../src/intake/schema.js";
import { AgentError } from "../../../src/shared/errors.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { createIntakeLocks, MAX_INTAKE_LOCKS } from "../../../src/updates/intake-locks.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const T0 = 1_767_225_600_000;

function setup(dir = join(makeTmpDir("intake-locks"), "locks")) {
  const clock = { now: T0 };
  const create = () => createIntakeLocks({ dir, now: () => clock.now, log: silentLogger });
  return { dir, clock, create, locks: create() };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof AgentError ? error.code : "not an AgentError";
  }
  return undefined;
}

describe("intake locks", () => {
  it("creates its directory and holds a taken lock until it expires", () => {
    const { dir, clock, locks } = setup();
    expect(existsSync(dir)).toBe(true);
    expect(locks.take("payment", 30)).toEqual({ name: "payment", expiresAt: T0 + 30_000 });
    expect(locks.held()).toEqual([{ name: "payment", expiresAt: T0 + 30_000 }]);
    expect(locks.held(T0 + 29_999)).toHaveLength(1);
    clock.now = T0 + 30_000;
    expect(locks.held()).toEqual([]);
    // The expired lock's file goes with it.
    expect(readdirSync(dir)).toEqual([]);
  });

  it("extends a held lock when taken again, and never shortens it", () => {
    const { clock, locks } = setup();
    locks.take("payment", 60);
    clock.now = T0 + 50_000;
    expect(locks.take("payment", 60)).toEqual({ name: "payment", expiresAt: T0 + 110_000 });
    expect(locks.take("payment", 1)).toEqual({ name: "payment", expiresAt: T0 + 110_000 });
    expect(locks.held()).toEqual([{ name: "payment", expiresAt: T0 + 110_000 }]);
  });

  it("releases a held lock and says whether one was held", () => {
    const { dir, clock, locks } = setup();
    locks.take("payment", 30);
    locks.take("refund", 30);
    expect(locks.release("payment")).toBe(true);
    expect(locks.release("payment")).toBe(false);
    expect(locks.release("never-taken")).toBe(false);
    expect(locks.held().map((lock) => lock.name)).toEqual(["refund"]);
    expect(readdirSync(dir)).toEqual(["refund.json"]);
    clock.now = T0 + 31_000;
    expect(locks.release("refund")).toBe(false);
  });

  it("lists live locks by name", () => {
    const { locks } = setup();
    locks.take("zeta", 10);
    locks.take("alpha", 20);
    expect(locks.held().map((lock) => lock.name)).toEqual(["alpha", "zeta"]);
  });

  it("keeps held locks when created again from the same dir (an agent restart)", () => {
    const { dir, clock, create, locks } = setup();
    locks.take("payment", 300);
    locks.take("short", 5);
    expect(JSON.parse(readFileSync(join(dir, "payment.json"), "utf8"))).toEqual({
      name: "payment",
      expiresAt: T0 + 300_000,
    });
    clock.now = T0 + 10_000;
    const again = create();
    expect(again.held()).toEqual([{ name: "payment", expiresAt: T0 + 300_000 }]);
    // The one that expired while the agent was down is gone from the disk too.
    expect(readdirSync(dir)).toEqual(["payment.json"]);
    expect(again.release("payment")).toBe(true);
    expect(create().held()).toEqual([]);
  });

  it("ignores garbage in the dir: removes its own unreadable files, leaves others alone", () => {
    const { dir, create } = setup();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "torn.json"), '{"name":"tor');
    writeFileSync(join(dir, "wrong-name.json"), JSON.stringify({ name: "other", expiresAt: T0 + 60_000 }));
    writeFileSync(join(dir, "bad-time.json"), JSON.stringify({ name: "bad-time", expiresAt: "soon" }));
    writeFileSync(join(dir, "extra.json"), JSON.stringify({ name: "extra", expiresAt: T0 + 1, pid: 7 }));
    writeFileSync(join(dir, "payment.json.tmp"), "half a write");
    writeFileSync(join(dir, "README"), "not ours");
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "good.json"), JSON.stringify({ name: "good", expiresAt: T0 + 60_000 }));
    const locks = create();
    expect(locks.held()).toEqual([{ name: "good", expiresAt: T0 + 60_000 }]);
    expect(readdirSync(dir).sort()).toEqual(["README", "good.json", "sub"]);
  });

  it("never holds a lock longer than the maximum TTL from now, whatever its file says", () => {
    const { dir, create } = setup();
    mkdirSync(dir, { recursive: true });
    // Written by an agent whose clock was a year ahead.
    const year = 365 * 24 * 3600_000;
    writeFileSync(join(dir, "stuck.json"), JSON.stringify({ name: "stuck", expiresAt: T0 + year }));
    expect(create().held()).toEqual([{ name: "stuck", expiresAt: T0 + MAX_LOCK_TTL_SEC * 1000 }]);
  });

  it("refuses names that are not a plain file name and TTLs outside 1-3600 s", () => {
    const { dir, locks } = setup();
    for (const name of ["", "../x", "a/b", "a:b", "x".repeat(65), "white space"]) {
      expect(codeOf(() => locks.take(name, 10))).toBe("BAD_REQUEST");
      expect(codeOf(() => locks.release(name))).toBe("BAD_REQUEST");
    }
    for (const ttl of [0, -1, 1.5, MAX_LOCK_TTL_SEC + 1, Number.NaN]) {
      expect(codeOf(() => locks.take("payment", ttl))).toBe("BAD_REQUEST");
    }
    expect(locks.take("a.b_c-D9", MAX_LOCK_TTL_SEC).expiresAt).toBe(T0 + MAX_LOCK_TTL_SEC * 1000);
    expect(readdirSync(dir)).toEqual(["a.b_c-D9.json"]);
  });

  it("refuses a new name past the maximum number of live locks, but extends held ones", () => {
    const { clock, locks } = setup();
    for (let i = 0; i < MAX_INTAKE_LOCKS; i += 1) locks.take(`lock-${i}`, 10);
    expect(codeOf(() => locks.take("one-more", 10))).toBe("BUSY");
    expect(codeOf(() => locks.take("lock-0", 20))).toBeUndefined();
    clock.now = T0 + 10_000;
    expect(codeOf(() => locks.take("one-more", 10))).toBeUndefined();
  });

  it("still holds a lock for this run when its file cannot be written", () => {
    const { dir, clock, create, locks } = setup();
    // A directory where the lock's temp file would go: the write fails as a full disk would.
    mkdirSync(join(dir, "payment.json.tmp"));
    expect(locks.take("payment", 30)).toEqual({ name: "payment", expiresAt: T0 + 30_000 });
    expect(locks.held()).toHaveLength(1);
    clock.now = T0 + 1;
    expect(create().held()).toEqual([]);
  });
});
