import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { createIntakeServer } from "../../src/intake/server.js";
import { createCardDataGuard } from "../../src/shared/card-data-guard.js";
import type { AgentEvent } from "../../src/shared/events.js";
import { silentLogger } from "../../src/shared/logger.js";
import { createCountersFile } from "../../src/store/counters-file.js";
import { COUNTERS_FILE, openDatabase } from "../../src/store/database.js";
import { createOutbox, rowCost } from "../../src/store/outbox.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const NOW = 1_767_225_600_000;
const ALL = Number.MAX_SAFE_INTEGER;

interface IntakeOptions {
  maxRecordBytes?: number;
}

/** A real intake server on an ephemeral loopback port over a real outbox in a temp dir. */
async function startIntake(options: IntakeOptions = {}) {
  const dir = makeTmpDir("intake");
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: () => NOW,
    walLimitBytes: 1024 * 1024,
  });
  const outbox = createOutbox({
    db: opened.db,
    counters: createCountersFile(join(dir, COUNTERS_FILE)),
    maxBytes: 64 * 1024 * 1024,
    maxRecordBytes: options.maxRecordBytes ?? 256 * 1024,
  });
  let connected = false;
  const raised: AgentEvent[] = [];
  const guard = createCardDataGuard({
    now: () => NOW,
    raise: (event) => raised.push(event),
    log: silentLogger,
  });
  const server = createIntakeServer({
    host: "127.0.0.1",
    port: 0,
    outbox,
    health: () => ({ connected, outbox: outbox.stats() }),
    now: () => NOW,
    log: silentLogger,
    guard,
  });
  const address = await server.start();
  onTestFinished(async () => {
    await server.stop();
    opened.db.close();
  });
  expect(address.host).toBe("127.0.0.1");
  expect(address.port).toBeGreaterThan(0);
  const base = `http://127.0.0.1:${address.port}`;

  async function request(method: string, path: string, body?: string | ReadableStream<Uint8Array>) {
    const init: RequestInit & { duplex?: "half" } = {
      method,
      headers: { "content-type": "application/json" },
    };
    if (body !== undefined) init.body = body;
    if (body instanceof ReadableStream) init.duplex = "half";
    const response = await fetch(base + path, init);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  return {
    outbox,
    raised,
    setConnected: (value: boolean) => {
      connected = value;
    },
    request,
    post: (path: string, items: unknown) => request("POST", path, JSON.stringify(items)),
    /** What a refused request must leave untouched. */
    snapshot: () => {
      const stats = outbox.stats();
      return {
        records: stats.records,
        bytes: stats.bytes,
        lastSeq: stats.lastSeq,
        rows: outbox.readAfter(0, ALL, ALL),
      };
    },
  };
}

const log = (line: string, extra: Record<string, unknown> = {}) => ({
  source: "pinpad",
  level: "info",
  line,
  ...extra,
});
const event = (type: string, extra: Record<string, unknown> = {}) => ({ type, severity: "high", ...extra });

describe("intake POST", () => {
  it("answers 200 with the seqs and stores the logs when the batch is valid", async () => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/logs", [
      log("card read ok", { ts: 1_700_000_000_000 }),
      { source: "pos-app", level: "error", line: "timeout" },
    ]);
    expect(answer).toEqual({ status: 200, body: { accepted: 2, firstSeq: 1, lastSeq: 2 } });
    expect(intake.outbox.readAfter(0, 100, ALL)).toEqual([
      {
        seq: 1,
        stream: "logs",
        ts: 1_700_000_000_000,
        body: '{"source":"pinpad","level":"info","line":"card read ok"}',
      },
      { seq: 2, stream: "logs", ts: NOW, body: '{"source":"pos-app","level":"error","line":"timeout"}' },
    ]);
  });

  it("answers 200 with the seqs and stores the events when the batch is valid", async () => {
    const intake = await startIntake();
    await intake.post("/v1/logs", [log("before")]);
    const answer = await intake.post("/v1/events", [
      event("payment.declined", {
        source: "pos-app",
        message: "card declined",
        details: { code: 51 },
        ts: 1_700_000_000_005,
      }),
      { type: "app.started", severity: "info" },
    ]);
    expect(answer).toEqual({ status: 200, body: { accepted: 2, firstSeq: 2, lastSeq: 3 } });
    const rows = intake.outbox.readAfter(1, 100, ALL);
    expect(rows.map(({ seq, stream, ts }) => ({ seq, stream, ts }))).toEqual([
      { seq: 2, stream: "events", ts: 1_700_000_000_005 },
      { seq: 3, stream: "events", ts: NOW },
    ]);
    expect(rows.map((row) => JSON.parse(row.body))).toEqual([
      {
        type: "payment.declined",
        severity: "high",
        source: "pos-app",
        message: "card declined",
        details: { code: 51 },
      },
      { type: "app.started", severity: "info" },
    ]);
  });

  it("stores lines and events with card numbers masked, and raises one high event per source", async () => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/logs", [
      log("pan 4111 1111 1111 1111 read"),
      log("track ;4761739001010010=25121010000012300000?"),
    ]);
    expect(answer.status).toBe(200);
    expect(
      (
        await intake.post("/v1/events", [
          {
            type: "payment.declined",
            severity: "high",
            source: "pos-app",
            message: "card 5555555555554444",
            details: { pan: 4111111111111111 },
          },
        ])
      ).status,
    ).toBe(200);
    const stored = intake.outbox
      .readAfter(0, 10, ALL)
      .map((record) => record.body)
      .join("\n");
    for (const digits of ["4111", "4761739001010010", "5555555555554444"])
      expect(stored).not.toContain(digits);
    expect(stored).toContain("pan XXXX XXXX XXXX XXXX read");
    expect(intake.raised.map((event) => [event.type, event.severity, event.source])).toEqual([
      ["card_data.redacted", "high", "pinpad"],
      ["card_data.redacted", "high", "pos-app"],
    ]);
    expect(JSON.stringify(intake.raised)).not.toMatch(/\d{12}/);
  });

  it("refuses a ts that is no time (a card number put there is not stored)", async () => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/logs", [{ ...log("ok"), ts: 4111111111111111 }]);
    expect(answer.status).toBe(400);
    expect(answer.body.errors).toEqual([
      "[0].ts: must be a time in ms since 1970, between the years 2000 and 2090",
    ]);
    expect(intake.snapshot().records).toBe(0);
  });

  it("masks a card number used as the source name", async () => {
    const intake = await startIntake();
    expect((await intake.post("/v1/logs", [{ ...log("hello"), source: "4111111111111111" }])).status).toBe(
      200,
    );
    const [row] = intake.outbox.readAfter(0, 10, ALL);
    expect(JSON.parse(row?.body ?? "{}")).toMatchObject({ source: "XXXXXXXXXXXXXXXX", line: "hello" });
    expect(JSON.stringify(intake.raised)).not.toContain("4111");
  });

  it("answers 200 with accepted 0 when the array is empty", async () => {
    const intake = await startIntake();
    expect(await intake.post("/v1/logs", [])).toEqual({
      status: 200,
      body: { accepted: 0, firstSeq: 0, lastSeq: 0 },
    });
    expect(intake.snapshot().records).toBe(0);
  });
});

describe("intake refusals", () => {
  it("answers 400 BAD_REQUEST and stores nothing when the body is not JSON", async () => {
    const intake = await startIntake();
    await intake.post("/v1/logs", [log("kept")]);
    const before = intake.snapshot();
    const answer = await intake.request("POST", "/v1/logs", '[{"source":"pinpad",');
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe("BAD_REQUEST");
    expect(answer.body.errors).toEqual([expect.stringMatching(/^\(body\): not valid JSON: /)]);
    expect(intake.snapshot()).toEqual(before);
  });

  it("lists an error for every bad item and stores nothing when items have wrong types", async () => {
    const intake = await startIntake();
    await intake.post("/v1/logs", [log("kept")]);
    const before = intake.snapshot();
    const answer = await intake.post("/v1/logs", [
      log("fine"),
      log("bad level", { level: "loud" }),
      log("fine too"),
      { source: 5, level: "info", line: 7 },
      log("bad ts", { ts: -1 }),
      "not an object",
    ]);
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe("BAD_REQUEST");
    const errors = answer.body.errors as string[];
    expect(errors.map((error) => error.slice(0, error.indexOf(":")))).toEqual([
      "[1].level",
      "[3].source",
      "[3].line",
      "[4].ts",
      "[5]",
    ]);
    for (const error of errors) expect(error).toMatch(/^\[\d\][.a-z]*: \S/);
    expect(intake.snapshot()).toEqual(before);
  });

  it("lists an error for every bad event and stores nothing when events have wrong types", async () => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/events", [
      event("ok.one"),
      { type: "bad type!", severity: "high" },
      { type: "x", severity: "urgent", details: [1] },
    ]);
    expect(answer.status).toBe(400);
    expect((answer.body.errors as string[]).map((error) => error.slice(0, error.indexOf(":")))).toEqual([
      "[1].type",
      "[2].severity",
      "[2].details",
    ]);
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it("refuses an unknown field and names it when an item has a typo", async () => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/logs", [log("ok"), log("typo", { colour: "red", lvl: "x" })]);
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe("BAD_REQUEST");
    expect(answer.body.errors).toEqual([expect.stringMatching(/^\[1\]\.colour, \.lvl: /)]);
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it.each([
    ["an object", { source: "pinpad", level: "info", line: "x" }],
    ["a string", "hello"],
    ["null", null],
  ])("answers 400 and stores nothing when the body is %s instead of an array", async (_label, body) => {
    const intake = await startIntake();
    const answer = await intake.post("/v1/logs", body);
    expect(answer).toEqual({
      status: 400,
      body: { code: "BAD_REQUEST", errors: ["(body): must be a JSON array of items"] },
    });
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it("answers 413 and stores nothing when the body is over 1 MiB", async () => {
    const intake = await startIntake();
    await intake.post("/v1/logs", [log("kept")]);
    const before = intake.snapshot();
    const items = Array.from({ length: 220 }, (_, i) => log(`${i} ${"x".repeat(10_000)}`));
    const body = JSON.stringify(items);
    expect(Buffer.byteLength(body)).toBeGreaterThan(2 * 1024 * 1024);
    const answer = await intake.request("POST", "/v1/logs", body);
    expect(answer).toEqual({
      status: 413,
      body: { code: "TOO_LARGE", errors: ["(body): larger than 1048576 bytes"] },
    });
    expect(intake.snapshot()).toEqual(before);
  });

  it("answers 413 and stores nothing when a body over 1 MiB comes chunked without a length", async () => {
    const intake = await startIntake();
    const chunk = new TextEncoder().encode(`${JSON.stringify(log("x".repeat(16_000)))},`);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode("["));
        if (sent >= 2 * 1024 * 1024) {
          controller.enqueue(new TextEncoder().encode(`${JSON.stringify(log("end"))}]`));
          controller.close();
          return;
        }
        controller.enqueue(chunk);
        sent += chunk.length;
      },
    });
    const answer = await intake.request("POST", "/v1/logs", stream);
    expect(answer).toEqual({
      status: 413,
      body: { code: "TOO_LARGE", errors: ["(body): larger than 1048576 bytes"] },
    });
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it("answers 413 and stores nothing when the array has more than 10 000 items", async () => {
    const intake = await startIntake();
    const items = Array.from({ length: 10_001 }, () => ({ source: "a", level: "info", line: "" }));
    const answer = await intake.post("/v1/logs", items);
    expect(answer).toEqual({
      status: 413,
      body: { code: "TOO_LARGE", errors: ["(body): 10001 items; at most 10000 per request"] },
    });
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });

  it("accepts exactly 10 000 items in one request", async () => {
    const intake = await startIntake();
    const items = Array.from({ length: 10_000 }, (_, i) => ({ source: "a", level: "info", line: String(i) }));
    expect(await intake.post("/v1/logs", items)).toEqual({
      status: 200,
      body: { accepted: 10_000, firstSeq: 1, lastSeq: 10_000 },
    });
    expect(intake.snapshot().records).toBe(10_000);
  });

  it("answers 400 naming the item and stores none of the batch when one item is too large for a message", async () => {
    const maxRecordBytes = 2_048;
    const intake = await startIntake({ maxRecordBytes });
    const answer = await intake.post("/v1/logs", [log("small"), log("x".repeat(maxRecordBytes))]);
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe("BAD_REQUEST");
    expect(answer.body.errors).toEqual([
      expect.stringMatching(/^\[1\]: is \d+ bytes of JSON; at most 2048$/),
    ]);
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });
});

describe("intake health and routing", () => {
  it("reports connected from the supplied function and the outbox totals when asked for health", async () => {
    const intake = await startIntake();
    expect(await intake.request("GET", "/v1/health")).toEqual({
      status: 200,
      body: { connected: false, outbox: { records: 0, bytes: 0, oldestTs: null } },
    });

    await intake.post("/v1/logs", [
      log("a", { ts: 1_700_000_001_000 }),
      log("bb", { ts: 1_700_000_002_000 }),
    ]);
    intake.setConnected(true);
    const bytes =
      rowCost(Buffer.byteLength('{"source":"pinpad","level":"info","line":"a"}')) +
      rowCost(Buffer.byteLength('{"source":"pinpad","level":"info","line":"bb"}'));
    expect(await intake.request("GET", "/v1/health")).toEqual({
      status: 200,
      body: { connected: true, outbox: { records: 2, bytes, oldestTs: 1_700_000_001_000 } },
    });
  });

  it("answers 404 when the path is unknown", async () => {
    const intake = await startIntake();
    const answer = await intake.request("GET", "/v1/nope");
    expect(answer.status).toBe(404);
    expect(answer.body).toEqual({ code: "BAD_REQUEST", errors: ["no such endpoint: GET /v1/nope"] });
  });

  it.each([
    ["GET", "/v1/logs"],
    ["PUT", "/v1/events"],
    ["POST", "/v1/health"],
  ])("answers 405 and stores nothing when %s is used on %s", async (method, path) => {
    const intake = await startIntake();
    const answer = await intake.request(
      method,
      path,
      method === "GET" ? undefined : JSON.stringify([log("x")]),
    );
    expect(answer.status).toBe(405);
    expect(answer.body.code).toBe("BAD_REQUEST");
    expect(answer.body.errors).toEqual([`use ${path === "/v1/health" ? "GET" : "POST"} here, not ${method}`]);
    expect(intake.snapshot()).toMatchObject({ records: 0, lastSeq: 0 });
  });
});
