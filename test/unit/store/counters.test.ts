import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCountersFile } from "../../../src/store/counters-file.js";
import { COUNTERS_FILE, openDatabase } from "../../../src/store/database.js";
import { createMetaStore } from "../../../src/store/meta.js";
import { createSessionIds } from "../../../src/store/session-counter.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

function openMeta(dir: string) {
  const opened = openDatabase({ dataDir: dir, log: silentLogger, now: () => 1, walLimitBytes: 1024 * 1024 });
  onTestFinished(() => {
    if (opened.db.open) opened.db.close();
  });
  return { db: opened.db, meta: createMetaStore(opened.db) };
}

describe("createCountersFile", () => {
  it("reads back exactly what it wrote when the file is replaced", () => {
    const path = join(makeTmpDir("counters"), COUNTERS_FILE);
    const counters = createCountersFile(path);
    counters.write({ sessionId: 41, seqReserve: 100_017 });
    expect(counters.read()).toEqual({ sessionId: 41, seqReserve: 100_017 });
    counters.write({ sessionId: 42, seqReserve: 200_017 });
    expect(createCountersFile(path).read()).toEqual({ sessionId: 42, seqReserve: 200_017 });
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ sessionId: 42, seqReserve: 200_017 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}.tmp`)).toBe(false);
  });

  it("reads zeros when the file does not exist", () => {
    const counters = createCountersFile(join(makeTmpDir("counters"), COUNTERS_FILE));
    expect(counters.read()).toEqual({ sessionId: 0, seqReserve: 0 });
  });

  it.each([
    ["torn JSON", '{"sessionId":4'],
    ["binary garbage", "\u0000\u00ff\u0013garbage"],
    ["JSON null", "null"],
    ["an array", "[1,2]"],
    ["empty", ""],
  ])("reads zeros without throwing when the file holds %s", (_label, content) => {
    const path = join(makeTmpDir("counters"), COUNTERS_FILE);
    writeFileSync(path, content);
    expect(createCountersFile(path).read()).toEqual({ sessionId: 0, seqReserve: 0 });
  });

  it("keeps a valid field and zeroes an invalid one when the fields have wrong types", () => {
    const path = join(makeTmpDir("counters"), COUNTERS_FILE);
    writeFileSync(path, JSON.stringify({ sessionId: "7", seqReserve: 12 }));
    expect(createCountersFile(path).read()).toEqual({ sessionId: 0, seqReserve: 12 });
    writeFileSync(path, JSON.stringify({ sessionId: 7, seqReserve: 1.5 }));
    expect(createCountersFile(path).read()).toEqual({ sessionId: 7, seqReserve: 0 });
  });
});

describe("createSessionIds", () => {
  it("grows by one on each call and reserves a block in both the file and the database", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    counters.write({ sessionId: 0, seqReserve: 555 });
    const { meta } = openMeta(dir);
    const next = createSessionIds(counters, meta, silentLogger);
    expect([next(), next(), next()]).toEqual([1, 2, 3]);
    expect(counters.read()).toEqual({ sessionId: 100, seqReserve: 555 });
    expect(meta.get("sessionId")).toBe("100");
  });

  it("starts above the reservation after a restart, never reusing an id", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const first = openMeta(dir);
    const firstRun = createSessionIds(counters, first.meta, silentLogger);
    firstRun();
    firstRun();
    first.db.close();

    const second = openMeta(dir);
    expect(createSessionIds(createCountersFile(join(dir, COUNTERS_FILE)), second.meta, silentLogger)()).toBe(
      101,
    );
  });

  it("reserves the next block only when the current one is used up", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const { meta } = openMeta(dir);
    const next = createSessionIds(counters, meta, silentLogger);
    for (let i = 0; i < 100; i++) next();
    expect(counters.read().sessionId).toBe(100);
    expect(next()).toBe(101);
    expect(counters.read().sessionId).toBe(200);
  });

  it("still grows when the counters file was deleted", () => {
    const dir = makeTmpDir("session");
    const path = join(dir, COUNTERS_FILE);
    const { meta } = openMeta(dir);
    createSessionIds(createCountersFile(path), meta, silentLogger)();
    rmSync(path);
    expect(createSessionIds(createCountersFile(path), meta, silentLogger)()).toBe(101);
  });

  it("still grows when the database row was deleted", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const { db, meta } = openMeta(dir);
    createSessionIds(counters, meta, silentLogger)();
    expect(db.prepare("DELETE FROM meta WHERE key = 'sessionId'").run().changes).toBe(1);
    expect(createSessionIds(counters, meta, silentLogger)()).toBe(101);
  });

  it("takes the larger of the two when they disagree", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const { meta } = openMeta(dir);
    counters.write({ sessionId: 10, seqReserve: 0 });
    meta.set("sessionId", "4");
    expect(createSessionIds(counters, meta, silentLogger)()).toBe(11);
    meta.set("sessionId", "2000");
    expect(createSessionIds(counters, meta, silentLogger)()).toBe(2001);
    meta.set("sessionId", "not a number");
    expect(createSessionIds(counters, meta, silentLogger)()).toBe(2101);
  });

  it("keeps handing out growing ids when the reservation cannot be written", () => {
    const dir = makeTmpDir("session");
    const { meta } = openMeta(dir);
    const failing = {
      read: () => ({ sessionId: 7, seqReserve: 0 }),
      write: () => {
        throw Object.assign(new Error("no space"), { code: "ENOSPC" });
      },
    };
    const next = createSessionIds(failing, meta, silentLogger);
    expect([next(), next()]).toEqual([8, 9]);
  });
});
