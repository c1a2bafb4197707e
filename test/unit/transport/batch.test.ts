import { describe, expect, it } from "vitest";
import type { StoredRecord, Stream } from "../../../src/store/outbox.js";
import { type Batch, buildBatches, recordJson } from "../../../src/transport/batch.js";
import { prng } from "../../helpers/prng.js";

const HEADER = { deviceId: "POS-0001", sessionId: 42 };
const STREAMS: readonly Stream[] = ["telemetry", "events", "logs"];
const WORDS = [
  "paper",
  "end",
  "é",
  "€",
  "😀",
  '"quoted"',
  "back\\slash",
  "tab\t",
  "line\nbreak",
  "x".repeat(40),
];

/** What a message holding only `record` costs; the outbox keeps every record below maxMessageBytes. */
function aloneBytes(record: StoredRecord): number {
  return Buffer.byteLength(
    buildBatches([record], HEADER, Number.MAX_SAFE_INTEGER, record.seq)[0]?.payload ?? "",
  );
}

/**
 * Records in seq order with gaps, interleaved streams, multi-byte and escaped text and some empty
 * bodies; each one small enough to travel alone in a `maxBytes` message, as the outbox guarantees.
 */
function generate(seed: number, count: number, maxBytes: number): StoredRecord[] {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const records: StoredRecord[] = [];
  let seq = 1 + Math.floor(random() * 1000);
  for (let i = 0; i < count; i++) {
    seq += 1 + (random() < 0.2 ? Math.floor(random() * 5) : 0);
    const stream = pick(STREAMS);
    const ts = 1_767_225_600_000 + seq * 10;
    const empty = random() < 0.1;
    const words: string[] = [];
    const wordCount = Math.floor(random() * (maxBytes / 8));
    for (let w = 0; w < wordCount; w++) words.push(pick(WORDS));
    const metric = Math.round(random() * 1000) / 10;
    const repeat = 1 + Math.floor(random() * 3);
    const build = (): StoredRecord => {
      const line = words.join(" ");
      const body = empty
        ? {}
        : stream === "telemetry"
          ? { metrics: { "cpu.loadPct": metric }, note: line }
          : stream === "events"
            ? { type: "peripheral.printer.paper_end", severity: "high", message: line, details: { n: i } }
            : { source: "pinpad", level: "info", line, repeat };
      return { seq, stream, ts, body: JSON.stringify(body) };
    };
    let record = build();
    while (aloneBytes(record) > maxBytes && words.length > 0) {
      words.length = Math.floor(words.length * 0.9);
      record = build();
    }
    if (aloneBytes(record) > maxBytes)
      throw new Error(`maxBytes ${maxBytes} cannot hold even an empty record`);
    records.push(record);
  }
  return records;
}

interface Payload {
  v: number;
  deviceId: string;
  sessionId: number;
  records: Array<{ seq: number; ts: number; historical?: true } & Record<string, unknown>>;
}

function expectedRecord(record: StoredRecord, historicalUpTo: number) {
  return {
    seq: record.seq,
    ts: record.ts,
    ...(record.seq <= historicalUpTo ? { historical: true } : {}),
    ...(JSON.parse(record.body) as Record<string, unknown>),
  };
}

function checkBatches(
  records: StoredRecord[],
  batches: Batch[],
  maxBytes: number,
  historicalUpTo: number,
): void {
  const seen: number[] = [];
  for (const batch of batches) {
    expect(Buffer.byteLength(batch.payload)).toBeLessThanOrEqual(maxBytes);
    const payload = JSON.parse(batch.payload) as Payload;
    expect(Object.keys(payload)).toEqual(["v", "deviceId", "sessionId", "records"]);
    expect(payload).toMatchObject({ v: 1, deviceId: HEADER.deviceId, sessionId: HEADER.sessionId });

    // Exactly the batch's stream's records inside [fromSeq, toSeq], in seq order, each as stored.
    const covered = records.filter(
      (record) => record.stream === batch.stream && record.seq >= batch.fromSeq && record.seq <= batch.toSeq,
    );
    expect(payload.records).toEqual(covered.map((record) => expectedRecord(record, historicalUpTo)));
    expect(batch.count).toBe(covered.length);
    expect(payload.records[0]?.seq).toBe(batch.fromSeq);
    expect(payload.records[payload.records.length - 1]?.seq).toBe(batch.toSeq);
    seen.push(...payload.records.map((record) => record.seq));
  }
  expect([...seen].sort((a, b) => a - b)).toEqual(records.map((record) => record.seq));
  expect(batches.map((batch) => batch.fromSeq)).toEqual(
    [...batches.map((batch) => batch.fromSeq)].sort((a, b) => a - b),
  );

  // A stream is split only when the next record really did not fit.
  for (const stream of STREAMS) {
    const ofStream = batches.filter((batch) => batch.stream === stream);
    for (let i = 1; i < ofStream.length; i++) {
      const previous = ofStream[i - 1] as Batch;
      const next = records.find((record) => record.seq === (ofStream[i] as Batch).fromSeq) as StoredRecord;
      const nextSize = Buffer.byteLength(recordJson(next, next.seq <= historicalUpTo));
      expect(Buffer.byteLength(previous.payload) + 1 + nextSize).toBeGreaterThan(maxBytes);
    }
  }
}

describe("recordJson", () => {
  it("puts seq and ts first and keeps the stored fields when the body has fields", () => {
    const record: StoredRecord = {
      seq: 1017,
      stream: "logs",
      ts: 1_767_225_600_000,
      body: '{"line":"a","repeat":3}',
    };
    expect(recordJson(record, false)).toBe('{"seq":1017,"ts":1767225600000,"line":"a","repeat":3}');
    expect(recordJson(record, true)).toBe(
      '{"seq":1017,"ts":1767225600000,"historical":true,"line":"a","repeat":3}',
    );
  });

  it("writes only seq and ts when the body is {}", () => {
    const record: StoredRecord = { seq: 5, stream: "telemetry", ts: 9, body: "{}" };
    expect(recordJson(record, false)).toBe('{"seq":5,"ts":9}');
    expect(recordJson(record, true)).toBe('{"seq":5,"ts":9,"historical":true}');
    expect(JSON.parse(recordJson(record, true))).toEqual({ seq: 5, ts: 9, historical: true });
  });
});

describe("buildBatches", () => {
  it.each([
    { seed: 1, count: 400, maxBytes: 300, historical: "none" },
    { seed: 2, count: 600, maxBytes: 1_000, historical: "first third" },
    { seed: 3, count: 800, maxBytes: 4_096, historical: "first third" },
    { seed: 4, count: 300, maxBytes: 16_384, historical: "all" },
    { seed: 5, count: 50, maxBytes: 240, historical: "first third" },
  ] as const)(
    "keeps payloads within maxBytes and sends every record once when seed $seed splits $count records at $maxBytes bytes ($historical historical)",
    ({ seed, count, maxBytes, historical }) => {
      const records = generate(seed, count, maxBytes);
      const historicalUpTo =
        historical === "none"
          ? 0
          : historical === "all"
            ? (records[records.length - 1]?.seq ?? 0)
            : (records[Math.floor(records.length / 3)]?.seq ?? 0);
      const batches = buildBatches(records, HEADER, maxBytes, historicalUpTo);
      checkBatches(records, batches, maxBytes, historicalUpTo);
      expect(batches.length).toBeGreaterThan(3);
    },
  );

  it("marks historical exactly on seqs up to historicalUpTo when the page spans the boundary", () => {
    const records: StoredRecord[] = [10, 11, 12, 13].map((seq) => ({
      seq,
      stream: "logs",
      ts: seq,
      body: "{}",
    }));
    const [batch] = buildBatches(records, HEADER, 10_000, 11);
    expect(JSON.parse(batch?.payload ?? "")).toEqual({
      v: 1,
      deviceId: "POS-0001",
      sessionId: 42,
      records: [
        { seq: 10, ts: 10, historical: true },
        { seq: 11, ts: 11, historical: true },
        { seq: 12, ts: 12 },
        { seq: 13, ts: 13 },
      ],
    });
  });

  it("gives each stream its own batches when streams are interleaved", () => {
    const records: StoredRecord[] = [
      { seq: 1, stream: "telemetry", ts: 1, body: '{"metrics":{"a":1}}' },
      { seq: 2, stream: "logs", ts: 2, body: '{"line":"x"}' },
      { seq: 3, stream: "telemetry", ts: 3, body: '{"metrics":{"a":2}}' },
      { seq: 5, stream: "events", ts: 5, body: '{"type":"t","severity":"info"}' },
      { seq: 6, stream: "logs", ts: 6, body: '{"line":"y"}' },
    ];
    const batches = buildBatches(records, HEADER, 10_000, 0);
    expect(batches.map(({ stream, fromSeq, toSeq, count }) => ({ stream, fromSeq, toSeq, count }))).toEqual([
      { stream: "telemetry", fromSeq: 1, toSeq: 3, count: 2 },
      { stream: "logs", fromSeq: 2, toSeq: 6, count: 2 },
      { stream: "events", fromSeq: 5, toSeq: 5, count: 1 },
    ]);
    expect(batches[1]?.payload).toBe(
      '{"v":1,"deviceId":"POS-0001","sessionId":42,"records":[{"seq":2,"ts":2,"line":"x"},{"seq":6,"ts":6,"line":"y"}]}',
    );
  });

  it("fills a message to exactly maxBytes and starts a new one when the next record is one byte over", () => {
    const records: StoredRecord[] = [1, 2, 3].map((seq) => ({ seq, stream: "logs", ts: 0, body: "{}" }));
    const one = '{"v":1,"deviceId":"POS-0001","sessionId":42,"records":[{"seq":1,"ts":0},{"seq":2,"ts":0}]}';
    const exact = buildBatches(records, HEADER, Buffer.byteLength(one), 0);
    expect(exact.map((batch) => batch.payload)).toEqual([
      one,
      '{"v":1,"deviceId":"POS-0001","sessionId":42,"records":[{"seq":3,"ts":0}]}',
    ]);
    const tighter = buildBatches(records, HEADER, Buffer.byteLength(one) - 1, 0);
    expect(tighter.map((batch) => batch.count)).toEqual([1, 1, 1]);
  });

  it("escapes the device id when it holds quotes and multi-byte characters", () => {
    const header = { deviceId: 'POS-"é"-😀', sessionId: 1 };
    const [batch] = buildBatches([{ seq: 1, stream: "logs", ts: 0, body: "{}" }], header, 1_000, 0);
    expect(JSON.parse(batch?.payload ?? "")).toEqual({
      v: 1,
      deviceId: 'POS-"é"-😀',
      sessionId: 1,
      records: [{ seq: 1, ts: 0 }],
    });
  });

  it("returns no batches when the page is empty", () => {
    expect(buildBatches([], HEADER, 1_000, 0)).toEqual([]);
  });
});
