import { describe, expect, it, onTestFinished } from "vitest";
import type { CommandResponse } from "../../../src/shared/command-response.js";
import { AgentError } from "../../../src/shared/errors.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCommandJournal } from "../../../src/store/command-journal.js";
import { openDatabase } from "../../../src/store/database.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const NOW = 1_767_225_600_000;

function open(dir: string) {
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: () => NOW,
    walLimitBytes: 1024 * 1024,
  });
  onTestFinished(() => {
    if (opened.db.open) opened.db.close();
  });
  return { db: opened.db, journal: createCommandJournal(opened.db) };
}

function succeeded(id: string, ts = NOW): CommandResponse {
  return { v: 1, id, deviceId: "POS-0001", status: "succeeded", ts, result: { pong: true } };
}

describe("command journal", () => {
  it("records a new id as running, and reports it running when begun again", () => {
    const { journal } = open(makeTmpDir("journal"));
    expect(journal.begin("c-1", "ping", NOW)).toEqual({ kind: "new" });
    expect(journal.begin("c-1", "ping", NOW + 1)).toEqual({ kind: "running" });
    expect(journal.interrupted()).toEqual([{ id: "c-1", cmd: "ping", receivedAt: NOW }]);
  });

  it("returns the stored terminal response for a finished id, also after reopening the database", () => {
    const dir = makeTmpDir("journal");
    const first = open(dir);
    first.journal.begin("c-1", "ping", NOW);
    first.journal.finish("c-1", succeeded("c-1"), NOW + 5);
    expect(first.journal.begin("c-1", "ping", NOW + 10)).toEqual({
      kind: "done",
      response: succeeded("c-1"),
    });
    first.db.close();

    const second = open(dir);
    expect(second.journal.begin("c-1", "other", NOW + 20)).toEqual({
      kind: "done",
      response: succeeded("c-1"),
    });
    expect(second.journal.interrupted()).toEqual([]);
  });

  it("lists commands left running by a crash, oldest first, until they are finished", () => {
    const dir = makeTmpDir("journal");
    const first = open(dir);
    first.journal.begin("c-2", "update.apply", NOW + 2);
    first.journal.begin("c-1", "diagnostics.run", NOW + 1);
    first.journal.begin("c-3", "ping", NOW + 3);
    first.journal.finish("c-3", succeeded("c-3"), NOW + 4);
    first.db.close();

    const second = open(dir);
    expect(second.journal.interrupted()).toEqual([
      { id: "c-1", cmd: "diagnostics.run", receivedAt: NOW + 1 },
      { id: "c-2", cmd: "update.apply", receivedAt: NOW + 2 },
    ]);
    second.journal.finish("c-1", { ...succeeded("c-1"), status: "failed", code: "INTERNAL" }, NOW + 9);
    expect(second.journal.interrupted().map((row) => row.id)).toEqual(["c-2"]);
  });

  it("refuses to finish an id that was never begun", () => {
    const { journal } = open(makeTmpDir("journal"));
    expect(() => journal.finish("nope", succeeded("nope"), NOW)).toThrow(AgentError);
  });

  it("prunes only finished commands received before the cut-off", () => {
    const { journal } = open(makeTmpDir("journal"));
    journal.begin("old-done", "ping", NOW - 100);
    journal.finish("old-done", succeeded("old-done"), NOW - 99);
    journal.begin("old-running", "ping", NOW - 100);
    journal.begin("new-done", "ping", NOW);
    journal.finish("new-done", succeeded("new-done"), NOW);

    expect(journal.prune(NOW - 50)).toBe(1);
    expect(journal.begin("old-done", "ping", NOW + 1)).toEqual({ kind: "new" });
    expect(journal.begin("old-running", "ping", NOW + 1)).toEqual({ kind: "running" });
    expect(journal.begin("new-done", "ping", NOW + 1).kind).toBe("done");
  });

  it("throws INTERNAL instead of answering with a stored response that is not a valid command response", () => {
    const { db, journal } = open(makeTmpDir("journal"));
    journal.begin("c-json", "ping", NOW);
    db.prepare("UPDATE command_journal SET state = 'done', response = '{not json' WHERE id = ?").run(
      "c-json",
    );
    journal.begin("c-shape", "ping", NOW);
    db.prepare("UPDATE command_journal SET state = 'done', response = ? WHERE id = ?").run(
      JSON.stringify({ v: 1, id: "c-shape", deviceId: "POS-0001", status: "rejected", ts: NOW }),
      "c-shape",
    );
    journal.begin("c-null", "ping", NOW);
    db.prepare("UPDATE command_journal SET state = 'done' WHERE id = ?").run("c-null");

    for (const id of ["c-json", "c-shape", "c-null"]) {
      let caught: unknown;
      try {
        journal.begin(id, "ping", NOW);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(AgentError);
      expect((caught as AgentError).code).toBe("INTERNAL");
      expect((caught as AgentError).message).toContain(id);
    }
  });

  it("keeps its table indexed by receive time, for pruning", () => {
    const { db } = open(makeTmpDir("journal"));
    const plan = db
      .prepare("EXPLAIN QUERY PLAN DELETE FROM command_journal WHERE state = 'done' AND received_at < ?")
      .all(NOW) as Array<{ detail: string }>;
    expect(plan.map((row) => row.detail).join(" ")).toContain("command_journal_received_at");
  });
});
