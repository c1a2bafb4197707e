import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { createSerialOpener } from "../../src/peripherals/node-serialport.js";
import {
  createPeripherals,
  type PeripheralConfig,
  type PeripheralState,
} from "../../src/peripherals/peripherals.js";
import { createSysfsPortLister } from "../../src/peripherals/sysfs-ports.js";
import { createBackoff } from "../../src/shared/backoff.js";
import { createCardDataGuard } from "../../src/shared/card-data-guard.js";
import type { AgentEvent } from "../../src/shared/events.js";
import { silentLogger } from "../../src/shared/logger.js";
import { startPty } from "../helpers/pty.js";
import { openTestOutbox } from "../helpers/test-outbox.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const ALL = Number.MAX_SAFE_INTEGER;

/** One peripheral on a real PTY, captured into a real SQLite outbox, in this process. */
async function capture(peripheral: Partial<PeripheralConfig> & Pick<PeripheralConfig, "driver">) {
  const dir = makeTmpDir("capture");
  const pty = await startPty(join(dir, "tty"));
  onTestFinished(() => pty.stop());
  const { outbox, close } = openTestOutbox("capture-db");
  const events: AgentEvent[] = [];
  const states: PeripheralState[] = [];
  const guard = createCardDataGuard({
    now: Date.now,
    raise: (event) => events.push(event),
    log: silentLogger,
  });
  const peripherals = createPeripherals({
    peripherals: [
      {
        name: "dev",
        path: pty.path,
        baudRate: 115200,
        dataBits: 8,
        stopBits: 1,
        parity: "none",
        pollIntervalMs: 5000,
        encoding: "utf8",
        ...peripheral,
      },
    ],
    opener: createSerialOpener(),
    lister: createSysfsPortLister(),
    guard,
    appendLogs: (records) => outbox.append(records.map((r) => ({ stream: "logs", ts: r.ts, body: r.body }))),
    recordEvent: (event) => events.push(event),
    stateChanged: (state) => states.push(state),
    newBackoff: () => createBackoff({ initialMs: 100, maxMs: 200, floorMs: 100, random: () => 0.5 }),
    now: Date.now,
    log: silentLogger,
    batch: { maxRecords: 500, maxDelayMs: 10 },
  });
  peripherals.start();
  onTestFinished(async () => {
    await peripherals.stop();
    close();
  });
  const deadline = Date.now() + 5000;
  while (states.at(-1)?.link !== "online") {
    if (Date.now() > deadline) throw new Error("the port did not come online");
    await sleep(10);
  }
  const logs = () =>
    outbox
      .readAfter(0, ALL, ALL)
      .map((row) => JSON.parse(row.body) as Record<string, unknown> & { line: string });
  async function waitForLogs(count: number, what: string): Promise<void> {
    const until = Date.now() + 10_000;
    while (logs().length < count) {
      if (Date.now() > until)
        throw new Error(`timed out waiting for ${what}; have ${JSON.stringify(logs())}`);
      await sleep(10);
    }
  }
  async function waitFor(check: (lines: string[]) => boolean, what: string): Promise<void> {
    const until = Date.now() + 10_000;
    while (!check(logs().map((record) => record.line))) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await sleep(10);
    }
  }
  return { pty, outbox, events, logs, waitForLogs, waitFor, peripherals };
}

describe("capture from a real PTY", () => {
  it("survives garbage, wrong-baud noise and 1 MiB without a delimiter, and captures the next line", async () => {
    const t = await capture({ driver: "lines" });
    await t.pty.write("I/Pinpad: first\n");
    await t.pty.write(Buffer.alloc(1024 * 1024, 0x41)); // 1 MiB, no delimiter
    await t.pty.write("\nI/Pinpad: after the flood\n");
    // Wrong baud rate: random bytes, newlines among them.
    const noise = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 131 + 17) % 256));
    await t.pty.write(noise);
    await t.pty.write("\nE/Pinpad: after the noise\n");
    await t.waitFor((lines) => lines.includes("E/Pinpad: after the noise"), "the line after the noise");
    const lines = t.logs().map((record) => record.line);
    expect(lines[0]).toBe("I/Pinpad: first");
    expect(lines[1]).toBe("I/Pinpad: after the flood");
    expect(lines.at(-1)).toBe("E/Pinpad: after the noise");
    for (const line of lines) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(8 * 1024);
    const metrics = t.peripherals.metrics();
    expect(metrics["peripheral.dev.overflows"]).toBeGreaterThanOrEqual(1);
    expect(metrics["peripheral.dev.online"]).toBe(1);
  });

  it("collapses a storm of one line into the first occurrence and one record with repeat", async () => {
    const t = await capture({ driver: "lines" });
    await t.pty.write("W/Printer: head hot\n".repeat(1000));
    await t.pty.write("E/Printer: something new\n");
    await t.waitForLogs(2, "the first occurrence and the new line");
    await t.peripherals.stop(); // ends the window: the collapsed repeats are written
    expect(t.logs().map((record) => [record.line, record.repeat])).toEqual([
      ["W/Printer: head hot", undefined],
      ["E/Printer: something new", undefined],
      ["W/Printer: head hot", 999],
    ]);
  });

  it("takes level, message and fields from JSON lines, and keeps a line that is not JSON", async () => {
    const t = await capture({ driver: "jsonl" });
    await t.pty.write(
      '{"level":"error","msg":"card reader timeout","code":17,"pan":"4111 1111 1111 1111"}\n',
    );
    await t.pty.write("plain text from the same daemon\n");
    // A card number where a time belongs is not a time: it stays a field, and is masked there.
    await t.pty.write('{"msg":"ok","ts":4111111111111111}\n');
    await t.waitForLogs(3, "the three lines");
    const [json, plain, badTime] = t.logs();
    expect(badTime).toMatchObject({ line: "ok", fields: { ts: "XXXXXXXXXXXXXXXX" } });
    expect(badTime).not.toHaveProperty("deviceTs");
    expect(JSON.stringify(t.logs())).not.toContain("4111111111111111");
    expect(json).toMatchObject({
      source: "dev",
      level: "error",
      line: "card reader timeout",
      fields: { code: 17, pan: "XXXX XXXX XXXX XXXX" },
    });
    expect(plain).toMatchObject({ level: "info", line: "plain text from the same daemon" });
    expect(t.events.map((event) => event.type)).toContain("card_data.redacted");
  });

  it("uses configured level patterns and a configured delimiter", async () => {
    const t = await capture({
      driver: "lines",
      delimiter: "\\r\\n",
      levels: [
        { level: "error", regex: "^FAIL" },
        { level: "debug", regex: "^TRACE" },
      ],
    });
    await t.pty.write("FAIL reader 2\r\nTRACE apdu sent\r\nok\r\n");
    await t.waitForLogs(3, "three lines");
    expect(t.logs().map((record) => [record.level, record.line])).toEqual([
      ["error", "FAIL reader 2"],
      ["debug", "TRACE apdu sent"],
      ["info", "ok"],
    ]);
  });
});
