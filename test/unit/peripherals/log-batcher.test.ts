import { describe, expect, it } from "vitest";
import { createLogBatcher, type LogRecord } from "../../../src/peripherals/log-batcher.js";
import { AgentError } from "../../../src/shared/errors.js";
import { silentLogger } from "../../../src/shared/logger.js";

/** An append that refuses, all or none, a batch holding a record over `limit` characters. */
function outboxLike(limit: number) {
  const stored: LogRecord[] = [];
  return {
    stored,
    append(records: readonly LogRecord[]) {
      const index = records.findIndex((record) => String(record.body.line).length > limit);
      if (index >= 0)
        throw new AgentError("TOO_LARGE", `record [${index}] is too large`, { details: { index } });
      stored.push(...records);
    },
  };
}

const record = (line: string): LogRecord => ({ ts: 1, body: { source: "pinpad", level: "info", line } });

describe("log batcher", () => {
  it("commits a group once it is full, and what waits on flush", () => {
    const outbox = outboxLike(100);
    const batcher = createLogBatcher({
      append: outbox.append,
      maxRecords: 3,
      maxDelayMs: 60_000,
      log: silentLogger,
    });
    for (const line of ["a", "b", "c", "d"]) batcher.add(record(line));
    expect(outbox.stored.map((r) => r.body.line)).toEqual(["a", "b", "c"]);
    batcher.flush();
    expect(outbox.stored.map((r) => r.body.line)).toEqual(["a", "b", "c", "d"]);
  });

  it("drops only the line too large for a message and commits the rest of its group", () => {
    const outbox = outboxLike(5);
    const batcher = createLogBatcher({
      append: outbox.append,
      maxRecords: 10,
      maxDelayMs: 60_000,
      log: silentLogger,
    });
    for (const line of ["a", "far too long", "b", "also too long", "c"]) batcher.add(record(line));
    batcher.flush();
    expect(outbox.stored.map((r) => r.body.line)).toEqual(["a", "b", "c"]);
    expect(batcher.failed).toBe(2);
  });

  it("does not count a quota refusal as its own loss (the outbox counts it as dropped)", () => {
    const batcher = createLogBatcher({
      append: () => {
        throw new AgentError("DISK_FULL", "quota");
      },
      maxRecords: 10,
      maxDelayMs: 60_000,
      log: silentLogger,
    });
    batcher.add(record("a"));
    batcher.flush();
    expect(batcher.failed).toBe(0);
  });
});
