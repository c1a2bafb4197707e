import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { createCardDataGuard } from "../../../src/shared/card-data-guard.js";
import { systemClock } from "../../../src/shared/clock.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { createCountersFile } from "../../../src/store/counters-file.js";
import { COUNTERS_FILE, openDatabase } from "../../../src/store/database.js";
import { createOutbox, type RecordInput } from "../../../src/store/outbox.js";
import { createPublisher } from "../../../src/transport/publisher.js";
import { createTopics } from "../../../src/transport/topics.js";
import { createFakeSession } from "../../fakes/fake-session.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const log = (line: string): RecordInput => ({
  stream: "logs",
  ts: 1_000,
  body: { source: "app", level: "info", line },
});

function setup(options: { maxInflight?: number; maxMessageBytes?: number; ackTimeoutMs?: number } = {}) {
  const dir = makeTmpDir("publisher");
  const opened = openDatabase({ dataDir: dir, log: silentLogger, now: () => 1, walLimitBytes: 1024 * 1024 });
  const outbox = createOutbox({
    db: opened.db,
    counters: createCountersFile(join(dir, COUNTERS_FILE)),
    maxBytes: 16 * 1024 * 1024,
    maxRecordBytes: 60 * 1024,
  });
  const fake = createFakeSession();
  const guard = createCardDataGuard({ now: () => 1, raise: () => {}, log: silentLogger });
  const publisher = createPublisher({
    outbox,
    session: fake.session,
    topics: createTopics("acme", "POS-1"),
    deviceId: "POS-1",
    maxMessageBytes: options.maxMessageBytes ?? 65_536,
    maxInflight: options.maxInflight ?? 64,
    ackTimeoutMs: options.ackTimeoutMs ?? 30_000,
    checkBody: (record) => guard.checkStored(record.stream, record.body),
    clock: systemClock,
    log: silentLogger,
  });
  publisher.start();
  onTestFinished(() => {
    publisher.stop();
    opened.db.close();
  });
  const seqsOf = (index: number) =>
    (
      JSON.parse(fake.sent[index]?.payload ?? "{}") as {
        records: Array<{ seq: number; historical?: boolean }>;
      }
    ).records;
  return { outbox, fake, publisher, seqsOf, guard };
}

/** Lets the publisher's setImmediate-scheduled pump and deletes run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe("publisher", () => {
  it("sends the backlog oldest first in one batch and deletes the rows only after the PUBACK", async () => {
    const { outbox, fake, seqsOf } = setup();
    outbox.append(Array.from({ length: 10 }, (_, i) => log(`l${i}`)));
    fake.up();
    await settle();
    expect(fake.sent).toHaveLength(1);
    expect(fake.sent[0]?.topic).toBe("pos/v1/acme/POS-1/logs");
    expect(seqsOf(0).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(outbox.stats().records).toBe(10);
    fake.sent[0]?.ack();
    await settle();
    expect(outbox.stats().records).toBe(0);
  });

  it("masks card data that reached the outbox unscrubbed before it goes on the wire, and counts it", async () => {
    const { outbox, fake, guard } = setup();
    outbox.append([
      log("pan 4111111111111111"),
      { stream: "telemetry", ts: 1, body: { metrics: { "disk.totalBytes": 4111111111111111 } } },
    ]);
    fake.up();
    await settle();
    const wire = fake.sent.map((message) => message.payload).join("\n");
    expect(wire).toContain('"line":"pan XXXXXXXXXXXXXXXX"');
    // Telemetry holds only the agent's own numbers; they are not card data.
    expect(wire).toContain('"disk.totalBytes":4111111111111111');
    expect(guard.metrics()["agent.scrub.atPublish"]).toBe(1);
  });

  it("marks exactly the records created before the connection historical", async () => {
    const { outbox, fake, seqsOf } = setup();
    outbox.append([log("old")]);
    fake.up();
    await settle();
    outbox.append([log("new")]);
    await settle();
    expect(seqsOf(0)).toEqual([expect.objectContaining({ seq: 1, historical: true })]);
    expect(seqsOf(1)[0]?.historical).toBeUndefined();
  });

  it("sends again after a reconnect what was never acknowledged", async () => {
    const { outbox, fake, seqsOf } = setup();
    outbox.append([log("a"), log("b")]);
    fake.up();
    await settle();
    fake.down();
    fake.up();
    await settle();
    expect(fake.sent).toHaveLength(2);
    expect(seqsOf(1).map((r) => r.seq)).toEqual([1, 2]);
    fake.sent[1]?.ack();
    await settle();
    expect(outbox.stats().records).toBe(0);
  });

  it("deletes the rows when their PUBACK arrives after the connection dropped", async () => {
    const { outbox, fake } = setup();
    outbox.append([log("a")]);
    fake.up();
    await settle();
    fake.down();
    fake.sent[0]?.ack();
    await settle();
    expect(outbox.stats().records).toBe(0);
  });

  it("drops and counts a batch the broker refuses for good, and goes on", async () => {
    const { outbox, fake } = setup();
    outbox.append([log("a"), log("b")]);
    fake.up();
    await settle();
    fake.sent[0]?.ack(Object.assign(new Error("Payload format invalid"), { code: 0x99 }));
    await settle();
    expect(outbox.stats().records).toBe(0);
    expect(outbox.stats().streams.logs.dropped).toBe(2);
    expect(fake.forced).toEqual([]);
  });

  it("keeps the rows and reconnects when the broker says not authorised", async () => {
    const { outbox, fake } = setup();
    outbox.append([log("a")]);
    fake.up();
    await settle();
    fake.sent[0]?.ack(Object.assign(new Error("Not authorized"), { code: 0x87 }));
    await settle();
    expect(outbox.stats()).toMatchObject({ records: 1, streams: { logs: { dropped: 0 } } });
    expect(fake.forced).toEqual([expect.stringMatching(/Not authorized/)]);
  });

  it("never has more than maxInflight messages awaiting their PUBACK", async () => {
    const { outbox, fake } = setup({ maxInflight: 2, maxMessageBytes: 2048 });
    outbox.append(Array.from({ length: 20 }, (_, i) => log(`${i} ${"x".repeat(900)}`)));
    fake.up();
    await settle();
    expect(fake.sent).toHaveLength(2);
    fake.sent[0]?.ack();
    await settle();
    expect(fake.sent).toHaveLength(3);
    for (const message of fake.sent) expect(Buffer.byteLength(message.payload)).toBeLessThanOrEqual(2048);
  });

  it("drops a record larger than the broker's maximum packet size instead of wedging on it", async () => {
    const { outbox, fake, seqsOf } = setup();
    outbox.append([log("x".repeat(3000)), log("small")]);
    fake.up({ maximumPacketSize: 2000 });
    await settle();
    expect(outbox.stats().streams.logs.dropped).toBe(1);
    expect(fake.sent).toHaveLength(1);
    expect(seqsOf(0).map((r) => r.seq)).toEqual([2]);
  });

  it("asks for a reconnect when a PUBACK is overdue", async () => {
    const { outbox, fake } = setup({ ackTimeoutMs: 50 });
    outbox.append([log("a")]);
    fake.up();
    await settle();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(fake.forced).toEqual([expect.stringMatching(/no PUBACK/)]);
  });
});
