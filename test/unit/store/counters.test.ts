import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCountersFile } from "../../../src/store/counters-file.js";
import { COUNTERS_FILE, openDatabase } from "../../../src/store/database.js";
import { createMetaStore } from "../../../src/store/meta.js";
import { nextSessionId } from "../../../src/store/session-counter.js";
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

describe("nextSessionId", () => {
  it("grows by one on each call and persists in both the file and the database", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    counters.write({ sessionId: 0, seqReserve: 555 });
    const { meta } = openMeta(dir);
    expect([
      nextSessionId(counters, meta),
      nextSessionId(counters, meta),
      nextSessionId(counters, meta),
    ]).toEqual([1, 2, 3]);
    expect(counters.read()).toEqual({ sessionId: 3, seqReserve: 555 });
    expect(meta.get("sessionId")).toBe("3");
  });

  it("continues from the stored value when the database is closed and reopened", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const first = openMeta(dir);
    nextSessionId(counters, first.meta);
    nextSessionId(counters, first.meta);
    first.db.close();

    const second = openMeta(dir);
    expect(nextSessionId(createCountersFile(join(dir, COUNTERS_FILE)), second.meta)).toBe(3);
  });

  it("still grows when the counters file was deleted", () => {
    const dir = makeTmpDir("session");
    const path = join(dir, COUNTERS_FILE);
    const counters = createCountersFile(path);
    const { meta } = openMeta(dir);
    for (let i = 0; i < 5; i++) nextSessionId(counters, meta);
    rmSync(path);
    expect(nextSessionId(counters, meta)).toBe(6);
    expect(counters.read().sessionId).toBe(6);
  });

  it("still grows when the database row was deleted", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const { db, meta } = openMeta(dir);
    for (let i = 0; i < 5; i++) nextSessionId(counters, meta);
    expect(db.prepare("DELETE FROM meta WHERE key = 'sessionId'").run().changes).toBe(1);
    expect(nextSessionId(counters, meta)).toBe(6);
    expect(meta.get("sessionId")).toBe("6");
  });

  it("takes the larger of the two when they disagree", () => {
    const dir = makeTmpDir("session");
    const counters = createCountersFile(join(dir, COUNTERS_FILE));
    const { meta } = openMeta(dir);
    counters.write({ sessionId: 10, seqReserve: 0 });
    meta.set("sessionId", "4");
    expect(nextSessionId(counters, meta)).toBe(11);
    meta.set("sessionId", "20");
    expect(nextSessionId(counters, meta)).toBe(21);
    meta.set("sessionId", "not a number");
    expect(nextSessionId(counters, meta)).toBe(22);
  });
});
