// The PIN pad simulator over a real PTY (socat), read through the real serialport bindings and the
// agent's own framer and level parser: what the lines driver will see on a terminal.
import { existsSync } from "node:fs";
import { symlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SerialPort } from "serialport";
import { describe, expect, it } from "vitest";
import { createPinpadLineGenerator, startPinpadSimulator } from "../../scripts/sim/pinpad.mjs";
import { createLineFramer, type LineFramer } from "../../src/peripherals/protocols/line-framer.js";
import { parseLogLine } from "../../src/peripherals/protocols/log-level.js";
import { suiteResources } from "../helpers/suite-resources.js";

const { dir, cleanups } = suiteResources("pinpad-sim");

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A hang shows up as a named failure, not as the test's timeout. */
async function within<T>(what: string, promise: Promise<T>, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Reader {
  port: SerialPort;
  lines: string[];
  framer: LineFramer;
  closed: Promise<Error | null>;
}

async function openReader(path: string): Promise<Reader> {
  const port = new SerialPort({ path, baudRate: 115_200, autoOpen: false });
  const framer = createLineFramer();
  const lines: string[] = [];
  port.on("data", (chunk: Buffer) => lines.push(...framer.push(chunk)));
  // A disconnect also arrives as 'error' on some versions; the 'close' event is what we check.
  port.on("error", () => {});
  const closed = new Promise<Error | null>((resolve) =>
    port.once("close", (err: Error | null) => resolve(err ?? null)),
  );
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  cleanups.push(async () => {
    if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  });
  return { port, lines, framer, closed };
}

describe("pinpad simulator", () => {
  it("delivers log lines of every level through the PTY, vanishes on unplug and works again after replug", async () => {
    const sim = await startPinpadSimulator({ path: join(dir, "pinpad"), intervalMs: 5, seed: 7 });
    cleanups.push(() => sim.stop());
    expect(existsSync(sim.path)).toBe(true);

    const first = await openReader(sim.path);
    await waitFor("200 lines", () => first.lines.length >= 200);
    const levels = new Set(first.lines.map((line) => parseLogLine(line).level));
    expect([...levels].sort()).toEqual(["debug", "error", "info", "warn"]);
    // Card data for the scrubber to find, and at least one burst of identical lines.
    expect(
      first.lines.some((line) =>
        /\b4111[ -]?1111[ -]?1111[ -]?1111\b|;\d{12,19}=\d{4}|\b5A 0[78] /.test(line),
      ),
    ).toBe(true);
    expect(first.lines.some((line, i) => i > 0 && line === first.lines[i - 1])).toBe(true);

    expect(sim.writeLine("MARKER one")).toBe(true);
    await waitFor("marker one", () => first.lines.includes("MARKER one"));

    await within("the unplug", sim.unplug());
    expect(existsSync(sim.path)).toBe(false);
    expect(sim.plugged).toBe(false);
    // Whether node-serialport notices the hangup by itself is its business (under load it sometimes
    // does not); the agent's link also watches the device node (serial-link.test.ts). Here: the
    // simulator's side is gone, and writing to it fails.
    expect(sim.writeLine("after unplug")).toBe(false);
    if (first.port.isOpen) await new Promise<void>((resolve) => first.port.close(() => resolve()));
    expect(sim.writeLine("lost while unplugged")).toBe(false);

    await sim.replug();
    expect(existsSync(sim.path)).toBe(true);
    const second = await openReader(sim.path);
    const before = sim.linesWritten;
    await waitFor("lines after replug", () => second.lines.length >= 20);
    expect(sim.linesWritten).toBeGreaterThan(before);
    expect(sim.writeLine("MARKER two")).toBe(true);
    await waitFor("marker two", () => second.lines.includes("MARKER two"));

    await within("the simulator to stop", sim.stop());
    expect(existsSync(sim.path)).toBe(false);
    if (second.port.isOpen) await new Promise<void>((resolve) => second.port.close(() => resolve()));
  });

  it("passes raw bytes unmodified, CR and NUL and 0xFF included", async () => {
    const sim = await startPinpadSimulator({ path: join(dir, "raw"), intervalMs: 60_000, garbage: false });
    cleanups.push(() => sim.stop());
    const reader = await openReader(sim.path);
    const received: Buffer[] = [];
    reader.port.on("data", (chunk: Buffer) => received.push(chunk));
    const payload = Buffer.from([
      0x00, 0x0d, 0x0a, 0xff, 0x11, 0x13, 0x03, 0x04, 0x7f, 0x80, 0x0d, 0x0d, 0x0a,
    ]);
    expect(sim.writeBytes(payload)).toBe(true);
    await waitFor("the payload", () => Buffer.concat(received).length >= payload.length);
    expect(Buffer.concat(received)).toEqual(payload);
  });

  it("replaces a link left behind by a simulator killed without cleanup", async () => {
    const path = join(dir, "stale");
    // What socat leaves when it dies by SIGKILL: a link to a PTY that no longer exists.
    await symlink("/dev/pts/99999", path);
    const sim = await startPinpadSimulator({ path, intervalMs: 60_000 });
    cleanups.push(() => sim.stop());
    const reader = await openReader(path);
    sim.writeLine("from the new one");
    await waitFor("the new simulator's line", () => reader.lines.includes("from the new one"));
  });
});

describe("pinpad line generator", () => {
  const take = (seed: number, ticks: number) => {
    const generator = createPinpadLineGenerator({ seed, now: () => Date.UTC(2025, 10, 26, 5, 17, 14) });
    return Array.from({ length: ticks }, () =>
      generator.next().map((c) => (c.kind === "line" ? c.text : c.bytes.toString("hex"))),
    );
  };

  it("writes the same sequence when given the same seed", () => {
    expect(take(42, 300)).toEqual(take(42, 300));
    expect(take(42, 300)).not.toEqual(take(43, 300));
  });

  it("leaves out card data and junk when cardNumbers and garbage are off", () => {
    const generator = createPinpadLineGenerator({ seed: 1, cardNumbers: false, garbage: false });
    const chunks = Array.from({ length: 2_000 }, () => generator.next()).flat();
    expect(chunks.every((c) => c.kind === "line")).toBe(true);
    const text = chunks.map((c) => (c.kind === "line" ? c.text : "")).join("\n");
    expect(text).not.toMatch(/PAN=|track2|5A 0[78] /);
  });

  it("writes junk without newlines, some of it longer than a line may be, when garbage is on", () => {
    const generator = createPinpadLineGenerator({ seed: 1 });
    const junk = Array.from({ length: 2_000 }, () => generator.next())
      .flat()
      .flatMap((c) => (c.kind === "bytes" ? [c.bytes] : []));
    expect(junk.length).toBeGreaterThan(10);
    expect(junk.every((b) => !b.includes(0x0a))).toBe(true);
    expect(junk.some((b) => b.length > 8 * 1024)).toBe(true);
  });

  it("writes pino-style JSON objects when format is jsonl", () => {
    const generator = createPinpadLineGenerator({ seed: 5, format: "jsonl", garbage: false });
    for (const chunk of Array.from({ length: 50 }, () => generator.next()).flat()) {
      expect(chunk.kind).toBe("line");
      if (chunk.kind === "line")
        expect(JSON.parse(chunk.text)).toMatchObject({ level: expect.any(Number), msg: expect.any(String) });
    }
  });
});
