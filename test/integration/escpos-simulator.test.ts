import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SerialPort } from "serialport";
import { afterEach, describe, expect, it } from "vitest";
import {
  asbFrame,
  dleEotByte,
  initialPrinterState,
  type PrinterSimulator,
  type PrinterSimulatorOptions,
  type PrinterState,
  startPrinterSimulator,
} from "../../scripts/sim/escpos-printer.mjs";
import { createReplySplitter, type EscPosReply } from "../../src/peripherals/protocols/escpos-replies.js";
import {
  DISABLE_ASB,
  type DleEotN,
  decodeErrorCause,
  decodeOfflineCause,
  decodePrinterStatus,
  decodeRollPaper,
  dleEotRequest,
  ENABLE_ASB,
  type NormalisedStatus,
  statusFromAsb,
  statusFromDleEot,
} from "../../src/peripherals/protocols/escpos-status.js";
import { suiteResources } from "../helpers/suite-resources.js";

const REPLY_TIMEOUT_MS = 2_000;
const QUIET_MS = 300;
const OK: NormalisedStatus = { online: true, paper: "ok", cover: "closed", cutter: "ok", error: "none" };

/** The agent's side of the PTY: a serialport that feeds everything it reads to the reply splitter. */
interface AgentSide {
  port: SerialPort;
  raw: number[];
  replies: EscPosReply[];
  errors: Error[];
  /** Arguments of each 'close' event: serialport passes a DisconnectedError when the device went away. */
  closes: Array<Error | null | undefined>;
  write(bytes: Uint8Array): Promise<void>;
  /** Wait until `count` replies beyond those already taken arrived; take and return them. */
  take(count: number): Promise<EscPosReply[]>;
}

const { dir, cleanups: suiteCleanups } = suiteResources("escpos-sim");
suiteCleanups.push(() => rm(dir, { recursive: true, force: true }));
let cleanups: Array<() => Promise<unknown>> = [];
let seq = 0;

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  cleanups = [];
});

async function until(predicate: () => boolean, what: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function printer(options: Partial<PrinterSimulatorOptions> = {}): Promise<PrinterSimulator> {
  seq += 1;
  const sim = await startPrinterSimulator({ path: join(dir, `printer-${seq}`), ...options });
  cleanups.push(() => sim.stop());
  return sim;
}

async function openAgentSide(path: string, { read = true } = {}): Promise<AgentSide> {
  const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
  const splitter = createReplySplitter();
  const side: AgentSide = {
    port,
    raw: [],
    replies: [],
    errors: [],
    closes: [],
    write: (bytes) =>
      new Promise((resolve, reject) => {
        port.write(Buffer.from(bytes), (err) => (err ? reject(err) : resolve()));
      }),
    async take(count) {
      await until(() => side.replies.length >= count, `${count} replies (have ${side.replies.length})`);
      return side.replies.splice(0, count);
    },
  };
  port.on("error", (err) => side.errors.push(err));
  port.on("close", (err: Error | null | undefined) => side.closes.push(err));
  if (read) {
    port.on("data", (chunk: Buffer) => {
      side.raw.push(...chunk);
      side.replies.push(...splitter.push(chunk));
    });
  }
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  cleanups.push(async () => {
    if (port.isOpen) await new Promise((resolve) => port.close(resolve));
  });
  return side;
}

/** One DLE EOT round as a driver does it: each request only after the previous reply. */
async function pollRound(side: AgentSide): Promise<Record<DleEotN, number>> {
  const bytes: number[] = [];
  for (const n of [1, 2, 3, 4] as const) {
    await side.write(dleEotRequest(n));
    const [reply] = await side.take(1);
    if (reply?.kind !== "dle-eot") throw new Error(`expected a DLE EOT reply, got ${JSON.stringify(reply)}`);
    bytes.push(reply.byte);
  }
  const [b1 = 0, b2 = 0, b3 = 0, b4 = 0] = bytes;
  return { 1: b1, 2: b2, 3: b3, 4: b4 };
}

function asbOf(reply: EscPosReply | undefined): [number, number, number, number] {
  if (reply?.kind !== "asb") throw new Error(`expected an ASB frame, got ${JSON.stringify(reply)}`);
  return reply.bytes;
}

const STATES: Array<[name: string, change: Partial<PrinterState>, expected: NormalisedStatus]> = [
  ["ready", {}, OK],
  ["offline switch", { online: false }, { ...OK, online: false }],
  ["cover open", { coverOpen: true }, { ...OK, online: false, cover: "open" }],
  ["paper near end", { paper: "near_end" }, { ...OK, paper: "near_end" }],
  ["paper out", { paper: "out" }, { ...OK, online: false, paper: "out" }],
  ["cutter error", { cutterError: true }, { ...OK, online: false, cutter: "error" }],
  ["mechanical error", { mechanicalError: true }, { ...OK, online: false, error: "recoverable" }],
  ["head hot", { autoRecoverableError: true }, { ...OK, online: false, error: "recoverable" }],
  ["unrecoverable", { unrecoverableError: true }, { ...OK, online: false, error: "unrecoverable" }],
  ["drawer high and feed button", { drawerHigh: true, feedButton: true }, OK],
];

describe("ESC/POS printer simulator", () => {
  it("answers each DLE EOT n with one byte that decodes to its state, for every state", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path);
    for (const [name, change, expected] of STATES) {
      sim.setState({ ...initialPrinterState(), ...change });
      const replies = await pollRound(side);
      const state = sim.state;
      expect(replies, name).toEqual({
        1: dleEotByte(state, 1),
        2: dleEotByte(state, 2),
        3: dleEotByte(state, 3),
        4: dleEotByte(state, 4),
      });
      expect(statusFromDleEot(replies), name).toEqual(expected);
      expect(decodePrinterStatus(replies[1]), name).toMatchObject({
        drawerHigh: state.drawerHigh,
        feedButton: state.feedButton,
        waitingRecovery: state.cutterError || state.mechanicalError,
      });
      expect(decodeOfflineCause(replies[2]), name).toMatchObject({
        coverOpen: state.coverOpen,
        feedingByButton: state.feedButton,
      });
      expect(decodeErrorCause(replies[3]), name).toEqual({
        mechanical: state.mechanicalError,
        autocutter: state.cutterError,
        unrecoverable: state.unrecoverableError,
        autoRecoverable: state.autoRecoverableError,
      });
      expect(decodeRollPaper(replies[4]), name).toEqual({
        nearEnd: state.paper !== "ok",
        paperEnd: state.paper === "out",
      });
    }
    expect(sim.received).toBe(STATES.length * 4);
    expect(side.replies).toEqual([]);
  });

  it("sends ASB at once on GS a and again on every change, each decoding to the state", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path);
    expect(sim.asbEnabled).toBe(false);
    await side.write(ENABLE_ASB);
    expect(statusFromAsb(asbOf((await side.take(1))[0]))).toEqual(OK);
    expect(sim.asbEnabled).toBe(true);

    for (const [name, change, expected] of STATES.slice(1)) {
      sim.setState({ ...initialPrinterState(), ...change });
      const bytes = asbOf((await side.take(1))[0]);
      expect(bytes, name).toEqual(asbFrame(sim.state));
      expect(statusFromAsb(bytes), name).toEqual(expected);
    }
    expect(sim.received).toBe(0);

    await side.write(DISABLE_ASB);
    await until(() => !sim.asbEnabled, "ASB off");
    sim.setState({ paper: "out" });
    await sleep(QUIET_MS);
    expect(side.replies).toEqual([]);
  });

  it("sends ASB only for the categories GS a n asked for", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path);
    await side.write(Uint8Array.of(0x1d, 0x61, 0x08)); // roll paper only
    await side.take(1);
    sim.setState({ coverOpen: true });
    sim.setState({ drawerHigh: true });
    await sleep(QUIET_MS);
    expect(side.replies).toEqual([]);
    sim.setState({ paper: "near_end" });
    // The frame always carries everything, the cover too.
    expect(statusFromAsb(asbOf((await side.take(1))[0]))).toEqual({
      ...OK,
      online: false,
      cover: "open",
      paper: "near_end",
    });
  });

  it("ignores GS a when built without ASB", async () => {
    const sim = await printer({ asb: false });
    const side = await openAgentSide(sim.path);
    await side.write(ENABLE_ASB);
    await side.write(dleEotRequest(1));
    expect(await side.take(1)).toEqual([{ kind: "dle-eot", byte: 0x12 }]);
    expect(sim.asbEnabled).toBe(false);
  });

  it("skips print data and other commands without losing a request", async () => {
    const seen: number[] = [];
    const sim = await printer({
      onEvent: (e) => {
        if (e.type === "rx") seen.push(...e.bytes);
      },
    });
    const side = await openAgentSide(sim.path);
    const noise = [
      [0x1b, 0x40], // ESC @
      [...Buffer.from("Total 12.50\r\n")],
      [0x1d, 0x21, 0x11], // GS ! n
      [0x10, 0x10, 0x04, 0x01], // a stray DLE right before a real request
      [0x1d, 0x56, 0x41, 0x10], // GS V A n (partial cut)
      [0x10, 0x04, 0x09, 0x10, 0x04, 0x02], // n out of range, then a real request
      [0x1d, 0x1d, 0x61, 0x00], // GS GS a 0
      Array.from({ length: 256 }, (_, b) => b), // every byte value as print data
      [0x10, 0x04, 0x04],
    ];
    const bytes = Uint8Array.from(noise.flat());
    await side.write(bytes);
    const replies = await side.take(3);
    expect(replies.map((r) => r.kind)).toEqual(["dle-eot", "dle-eot", "dle-eot"]);
    await sleep(QUIET_MS);
    expect(side.replies).toEqual([]);
    expect(sim.received).toBe(3);
    // Binary-safe towards the printer: no CR/NL mapping, no flow-control or signal character eaten.
    expect(Uint8Array.from(seen)).toEqual(bytes);
  });

  it("clears recoverable errors on DLE ENQ and keeps the others", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path);
    sim.setState({
      cutterError: true,
      mechanicalError: true,
      unrecoverableError: true,
      autoRecoverableError: true,
    });
    await side.write(Uint8Array.of(0x10, 0x05, 0x02));
    await until(() => !sim.state.cutterError, "DLE ENQ");
    expect(sim.state).toMatchObject({
      cutterError: false,
      mechanicalError: false,
      unrecoverableError: true,
      autoRecoverableError: true,
    });
    expect(statusFromDleEot(await pollRound(side))).toEqual({ ...OK, online: false, error: "unrecoverable" });
  });

  it("interleaves XON and XOFF in what it sends, inside ASB frames too", async () => {
    const sim = await printer({ xonxoff: true });
    const side = await openAgentSide(sim.path);
    await side.write(ENABLE_ASB);
    expect(statusFromAsb(asbOf((await side.take(1))[0]))).toEqual(OK);
    await side.write(dleEotRequest(4));
    expect(await side.take(1)).toEqual([{ kind: "dle-eot", byte: 0x12 }]);
    expect(side.raw).toEqual([0x13, 0x10, 0x11, 0x00, 0x11, 0x00, 0x11, 0x00, 0x11, 0x13, 0x12, 0x11]);
  });

  it("answers after replyDelayMs, and not at all while muted", async () => {
    const sim = await printer({ replyDelayMs: 150 });
    const side = await openAgentSide(sim.path);
    const started = Date.now();
    await side.write(dleEotRequest(1));
    await side.take(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);

    sim.setState({ mute: true });
    await side.write(dleEotRequest(1));
    await sleep(QUIET_MS + 150);
    expect(side.replies).toEqual([]);
    expect(sim.received).toBe(1);
    sim.setState({ mute: false });
    await side.write(dleEotRequest(1));
    expect(await side.take(1)).toEqual([{ kind: "dle-eot", byte: 0x12 }]);
  });

  it("rejects an unknown state field or a bad value", async () => {
    const sim = await printer();
    expect(() => sim.setState({ papr: "out" } as unknown as Partial<PrinterState>)).toThrow(/unknown/);
    expect(() => sim.setState({ paper: "gone" } as unknown as Partial<PrinterState>)).toThrow(/bad value/);
    expect(() => sim.setState({ coverOpen: 1 } as unknown as Partial<PrinterState>)).toThrow(/bad value/);
  });

  it("on unplug removes the path and closes a reading port with a DisconnectedError, no 'error'", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path);
    await side.write(ENABLE_ASB);
    await side.take(1);

    await sim.unplug();
    expect(existsSync(sim.path)).toBe(false);
    await until(() => side.closes.length > 0, "close event");
    await sleep(QUIET_MS);
    expect(side.closes).toHaveLength(1);
    expect(side.closes[0]?.constructor.name).toBe("DisconnectedError");
    expect(side.closes[0]).toMatchObject({ disconnected: true });
    expect(side.errors).toEqual([]);
    expect(side.port.isOpen).toBe(false);

    // Opening while unplugged fails: the path is gone.
    await expect(openAgentSide(sim.path)).rejects.toThrow(/No such file or directory/);

    // State set while unplugged is what the printer reports once back; ASB stays on (the printer kept power).
    sim.setState({ paper: "near_end" });
    await sim.replug();
    expect(existsSync(sim.path)).toBe(true);
    const again = await openAgentSide(sim.path);
    expect(statusFromDleEot(await pollRound(again))).toEqual({ ...OK, paper: "near_end" });
    expect(sim.asbEnabled).toBe(true);
    sim.setState({ paper: "ok" });
    expect(statusFromAsb(asbOf((await again.take(1))[0]))).toEqual(OK);
  });

  it("on unplug leaves a port nobody reads open until a write fails with EIO", async () => {
    const sim = await printer();
    const side = await openAgentSide(sim.path, { read: false });
    await sim.unplug();
    await sleep(QUIET_MS);
    expect(side.closes).toEqual([]);
    expect(side.port.isOpen).toBe(true);

    await expect(side.write(dleEotRequest(1))).rejects.toMatchObject({ code: "EIO" });
    await until(() => side.closes.length >= 2, "close events");
    expect(side.errors).toMatchObject([{ code: "EIO" }]);
    // Node's stream closes first (autoDestroy after the error), then serialport's own close.
    expect(side.closes[0]).toBeUndefined();
    expect(side.closes[1]?.constructor.name).toBe("DisconnectedError");
    expect(side.closes[1]).toMatchObject({ disconnected: true, message: "EIO: i/o error, write" });
  });

  it("runs as a CLI driven by commands on stdin", async () => {
    const path = join(dir, "cli-printer");
    const script = new URL("../../scripts/sim/escpos-printer.mjs", import.meta.url).pathname;
    const cli = spawn(process.execPath, [script, "--path", path], { stdio: ["pipe", "pipe", "pipe"] });
    cleanups.push(async () => {
      if (cli.exitCode === null) cli.kill("SIGKILL");
    });
    let out = "";
    cli.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    await until(() => out.includes(`printer on ${path}`), "CLI start", 10_000);

    cli.stdin.write("paper out\ncover open\n");
    await until(
      () => (out.match(/"paper":"out"/g) ?? []).length > 0 && out.includes('"coverOpen":true'),
      "state",
    );
    const side = await openAgentSide(path);
    expect(statusFromDleEot(await pollRound(side))).toEqual({
      ...OK,
      online: false,
      paper: "out",
      cover: "open",
    });
    expect(out).toContain("<- DLE EOT 4 -> 7e");

    const exited = new Promise((resolve) => cli.once("exit", resolve));
    cli.stdin.write("quit\n");
    expect(await exited).toBe(0);
    expect(existsSync(path)).toBe(false);
  });
});
