import { describe, expect, it } from "vitest";
import type { CommandContext } from "../../../src/commands/command.js";
import { createLogsQueryHandler, LogsQueryArgs } from "../../../src/commands/logs-query.js";
import { createLogArchive } from "../../../src/store/log-archive.js";
import { openTestOutbox } from "../../helpers/test-outbox.js";

const context = (): CommandContext => ({
  commandId: "c-1",
  progress: () => {},
  signal: new AbortController().signal,
  signers: [],
});

interface Row {
  seq: number;
  ts: number;
  line: string;
  level: string;
  source: string;
}

function setup(maxMessageBytes: number) {
  const { db, outbox } = openTestOutbox("logs-query");
  const archive = createLogArchive(db);
  const handler = createLogsQueryHandler({ archive, maxMessageBytes, monotonic: () => performance.now() });
  const query = async (args: Record<string, unknown>) =>
    (await handler.run(LogsQueryArgs.parse(args), context())) as { records: Row[]; nextCursor?: string };
  return { outbox, query };
}

describe("logs.query", () => {
  it("pages through every matching line once, each answer within the message size", async () => {
    const maxMessageBytes = 4096;
    const { outbox, query } = setup(maxMessageBytes);
    for (let batch = 0; batch < 10; batch++) {
      outbox.append([
        ...Array.from({ length: 300 }, (_, i) => ({
          stream: "logs" as const,
          ts: 1_767_225_600_000 + batch * 1000 + i,
          body: {
            source: i % 3 === 0 ? "pinpad" : "printer",
            level: i % 2 ? "info" : "error",
            line: `${batch}-${i} ${"y".repeat(i % 50)}`,
          },
        })),
        { stream: "telemetry" as const, ts: 0, body: { metrics: {} } },
      ]);
    }
    const seen: Row[] = [];
    let cursor: string | undefined;
    let answers = 0;
    do {
      const answer = await query({
        source: "pinpad",
        level: "error",
        limit: 1000,
        ...(cursor ? { cursor } : {}),
      });
      const message = JSON.stringify({
        v: 1,
        id: "x".repeat(128),
        deviceId: "d".repeat(64),
        status: "succeeded",
        ts: Date.now(),
        result: answer,
      });
      expect(Buffer.byteLength(message)).toBeLessThanOrEqual(maxMessageBytes);
      seen.push(...answer.records);
      cursor = answer.nextCursor;
      answers += 1;
    } while (cursor !== undefined && answers < 1000);
    const expected = 10 * 50; // i % 3 === 0 and i even → i % 6 === 0: 50 of 300 per batch
    expect(seen).toHaveLength(expected);
    expect(new Set(seen.map((row) => row.seq)).size).toBe(expected);
    expect(seen.every((row) => row.source === "pinpad" && row.level === "error")).toBe(true);
    expect(seen.map((row) => row.seq)).toEqual([...seen.map((row) => row.seq)].sort((a, b) => a - b));
    expect(answers).toBeGreaterThan(1);
  });

  it("answers at most limit lines with a cursor to continue, and no cursor at the end", async () => {
    const { outbox, query } = setup(65_536);
    outbox.append(
      Array.from({ length: 25 }, (_, i) => ({
        stream: "logs" as const,
        ts: i,
        body: { source: "a", level: "info", line: `l${i}` },
      })),
    );
    const first = await query({ limit: 10 });
    expect(first.records.map((row) => row.line)).toEqual(Array.from({ length: 10 }, (_, i) => `l${i}`));
    expect(first.nextCursor).toBeDefined();
    const second = await query({ limit: 10, cursor: first.nextCursor });
    expect(second.records[0]?.line).toBe("l10");
    const third = await query({ limit: 10, cursor: second.nextCursor });
    expect(third.records.map((row) => row.line)).toEqual(["l20", "l21", "l22", "l23", "l24"]);
    expect(third.nextCursor).toBeUndefined();
  });

  it("answers an empty archive with no records and no cursor", async () => {
    const { query } = setup(65_536);
    expect(await query({})).toEqual({ records: [] });
  });

  it("refuses malformed arguments with the field named", () => {
    expect(LogsQueryArgs.safeParse({ level: "fatal" }).success).toBe(false);
    expect(LogsQueryArgs.safeParse({ cursor: "abc" }).success).toBe(false);
    expect(LogsQueryArgs.safeParse({ since: 10, until: 5 }).error?.issues[0]?.path).toEqual(["until"]);
    expect(LogsQueryArgs.safeParse({ limit: 5000 }).success).toBe(false);
    expect(LogsQueryArgs.parse({ since: "2026-11-26T00:00:00Z" }).since).toBe(
      Date.parse("2026-11-26T00:00:00Z"),
    );
  });
});
