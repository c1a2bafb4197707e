#!/usr/bin/env node
// An ESC/POS receipt printer on a PTY, for tests, the demo and manual play. socat owns the PTY and
// links it at `path`; the printer logic runs here and talks to socat over its stdin/stdout, so
// unplugging is killing socat: the link and the device vanish as they do when a USB cable is pulled.
// The status bytes are built from REFERENCE §3 here, independently of src/, so the tests compare
// two readings of the tables rather than one with itself.
//
// CLI: node scripts/sim/escpos-printer.mjs --path /tmp/printer [--no-asb] [--delay MS] [--xonxoff]
import { spawn } from "node:child_process";
import { lstatSync, unlinkSync } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { killOnExit } from "../lib/kill-on-exit.mjs";

const DLE = 0x10;
const EOT = 0x04;
const ENQ = 0x05;
const GS = 0x1d;
const ASB_CMD = 0x61; // 'a'
const XON = 0x11;
const XOFF = 0x13;
const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 2_000;

/** @typedef {import("./escpos-printer.d.mts").PrinterState} PrinterState */

/** A ready printer: online, cover closed, paper in, no error. @returns {PrinterState} */
export function initialPrinterState() {
  return {
    online: true,
    coverOpen: false,
    paper: "ok",
    cutterError: false,
    mechanicalError: false,
    unrecoverableError: false,
    autoRecoverableError: false,
    drawerHigh: false,
    feedButton: false,
    mute: false,
  };
}

const PAPER = new Set(["ok", "near_end", "out"]);

/** @param {boolean} flag @param {number} mask */
const on = (flag, mask) => (flag ? mask : 0);

/** @param {PrinterState} s */
function anyError(s) {
  return s.cutterError || s.mechanicalError || s.unrecoverableError || s.autoRecoverableError;
}

/** Like an Epson: the cover, the paper end and any error take the printer offline. @param {PrinterState} s */
function isOffline(s) {
  return !s.online || s.coverOpen || s.paper === "out" || anyError(s);
}

/**
 * The one-byte reply to `DLE EOT n`, fixed bits 0x12 included.
 * @param {PrinterState} s @param {1 | 2 | 3 | 4} n
 */
export function dleEotByte(s, n) {
  switch (n) {
    case 1:
      return (
        0x12 |
        on(s.drawerHigh, 0x04) |
        on(isOffline(s), 0x08) |
        // Recoverable errors wait for DLE ENQ.
        on(s.cutterError || s.mechanicalError, 0x20) |
        on(s.feedButton, 0x40)
      );
    case 2:
      return (
        0x12 |
        on(s.coverOpen, 0x04) |
        on(s.feedButton, 0x08) |
        on(s.paper === "out", 0x20) |
        on(anyError(s), 0x40)
      );
    case 3:
      return (
        0x12 |
        on(s.mechanicalError, 0x04) |
        on(s.cutterError, 0x08) |
        on(s.unrecoverableError, 0x20) |
        on(s.autoRecoverableError, 0x40)
      );
    case 4:
      // With no paper the near-end sensor sees none either.
      return 0x12 | on(s.paper !== "ok", 0x0c) | on(s.paper === "out", 0x60);
  }
}

/**
 * The 4-byte Automatic Status Back frame; byte 4 is all reserved bits on a roll printer.
 * @param {PrinterState} s @returns {[number, number, number, number]}
 */
export function asbFrame(s) {
  return [
    0x10 | on(s.drawerHigh, 0x04) | on(isOffline(s), 0x08) | on(s.coverOpen, 0x20) | on(s.feedButton, 0x40),
    on(s.mechanicalError, 0x04) |
      on(s.cutterError, 0x08) |
      on(s.unrecoverableError, 0x20) |
      on(s.autoRecoverableError, 0x40),
    on(s.paper !== "ok", 0x03) | on(s.paper === "out", 0x0c),
    0x00,
  ];
}

/**
 * Which `GS a n` bits a change between two frames falls under: 1 drawer, 2 online/offline
 * (cover, feed button), 4 error, 8 roll paper.
 * @param {number[]} a @param {number[]} b
 */
function changedCategories(a, b) {
  const first = (a[0] ?? 0) ^ (b[0] ?? 0);
  return (
    on((first & 0x04) !== 0, 0x01) |
    on((first & ~0x04) !== 0, 0x02) |
    on(a[1] !== b[1], 0x04) |
    on(a[2] !== b[2], 0x08)
  );
}

/** @param {string} path */
function removeStaleLink(path) {
  try {
    // Only a symlink: never delete a real file someone pointed us at by mistake.
    if (lstatSync(path).isSymbolicLink()) unlinkSync(path);
  } catch {
    // not there
  }
}

/** @param {string} path */
function exists(path) {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * @param {import("./escpos-printer.d.mts").PrinterSimulatorOptions} options
 * @returns {Promise<import("./escpos-printer.d.mts").PrinterSimulator>}
 */
export async function startPrinterSimulator({
  path,
  asb = true,
  replyDelayMs = 0,
  xonxoff = false,
  socat = "socat",
  onEvent = () => {},
}) {
  if (!path) throw new Error("startPrinterSimulator: path is required");

  let state = initialPrinterState();
  let asbMask = 0;
  let received = 0;
  /** Bytes of a command being recognised: DLE, DLE EOT/ENQ, GS or GS a. */
  let pending = [];
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let child;
  let stderr = "";

  /** @param {number[]} bytes */
  function send(bytes) {
    if (state.mute) return;
    let out = bytes;
    if (xonxoff) {
      // XOFF before, XON after every byte: flow control inside a frame as well as between replies.
      out = [XOFF, ...bytes.flatMap((b) => [b, XON])];
    }
    const target = child;
    const write = () => {
      // A reply still on its delay when the cable is pulled is lost, as on the wire.
      if (target === undefined || target !== child || !target.stdin?.writable) return;
      target.stdin.write(Buffer.from(out));
    };
    if (replyDelayMs > 0) setTimeout(write, replyDelayMs);
    else write();
  }

  function sendAsb() {
    if (state.mute || child === undefined) return;
    const frame = asbFrame(state);
    onEvent({ type: "asb", bytes: frame });
    send(frame);
  }

  /** @param {number} b */
  function feed(b) {
    if (pending.length === 0) {
      if (b === DLE || b === GS) pending = [b];
      // Anything else is print data or a command we do not model: skipped byte by byte.
      return;
    }
    if (pending.length === 1) {
      const head = pending[0];
      if ((head === DLE && (b === EOT || b === ENQ)) || (head === GS && b === ASB_CMD)) {
        pending.push(b);
        return;
      }
      pending = [];
      feed(b);
      return;
    }
    const [head, cmd] = pending;
    pending = [];
    if (head === GS) {
      setAsb(b);
    } else if (cmd === EOT && b >= 1 && b <= 4) {
      if (state.mute) return;
      received += 1;
      const reply = dleEotByte(state, /** @type {1 | 2 | 3 | 4} */ (b));
      onEvent({ type: "dle-eot", n: b, byte: reply });
      send([reply]);
    } else if (cmd === ENQ && (b === 1 || b === 2)) {
      if (state.mute) return;
      onEvent({ type: "dle-enq", n: b });
      // Recoverable errors clear on request; auto-recoverable ones clear themselves, unrecoverable never.
      setState({ cutterError: false, mechanicalError: false });
    } else {
      // An n outside the command's range: the byte may start the next command.
      feed(b);
    }
  }

  /** @param {number} n */
  function setAsb(n) {
    if (!asb) return;
    asbMask = n;
    onEvent({ type: "gs-a", n });
    if (asbMask !== 0) sendAsb();
  }

  /** @param {Partial<PrinterState>} partial */
  function setState(partial) {
    const next = { ...state };
    for (const [key, value] of Object.entries(partial)) {
      if (!(key in next)) throw new Error(`unknown printer state field: ${key}`);
      if (key === "paper" ? !PAPER.has(/** @type {string} */ (value)) : typeof value !== "boolean") {
        throw new Error(`bad value for ${key}: ${String(value)}`);
      }
      Object.assign(next, { [key]: value });
    }
    const before = asbFrame(state);
    const wasMute = state.mute;
    state = next;
    if (asbMask === 0 || state.mute) return;
    // A printer coming back from the dead reports itself; otherwise only changes it was asked about.
    if ((wasMute && !state.mute) || (changedCategories(before, asbFrame(state)) & asbMask) !== 0) sendAsb();
  }

  async function plug() {
    removeStaleLink(path);
    stderr = "";
    // rawer: cfmakeraw on the PTY, no echo, no CR/NL mapping, no IXON: every byte passes unchanged.
    // STDIO is a pair of pipes here, binary-safe as they are. No -d: errors only (1.7 has no -d0).
    const proc = spawn(socat, [`PTY,link=${path},rawer`, "STDIO"], { stdio: ["pipe", "pipe", "pipe"] });
    // Its link may remain after a SIGKILL; the next start removes it (removeStaleLink).
    killOnExit(proc);
    child = proc;
    pending = [];
    /** @type {Error | undefined} */
    let failed;
    proc.once("error", (err) => {
      failed = err;
    });
    proc.once("exit", () => {
      if (child === proc) child = undefined;
    });
    proc.stdin.on("error", () => {
      // EPIPE after socat died: the write is lost, as on the wire.
    });
    // No setEncoding: chunks stay Buffers, so no byte is reinterpreted as text.
    proc.stdout.on("data", (/** @type {Buffer} */ chunk) => {
      if (child !== proc) return;
      onEvent({ type: "rx", bytes: chunk });
      for (const b of chunk) feed(b);
    });
    proc.stderr.on("data", (/** @type {Buffer} */ chunk) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-4_000);
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!exists(path)) {
      if (failed || proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        await stopChild(proc);
        const why = failed ? failed.message : `socat did not create ${path}`;
        throw new Error(`printer simulator: ${why}${stderr ? `: ${stderr.trim()}` : ""}`);
      }
      await sleep(10);
    }
  }

  /** @param {import("node:child_process").ChildProcess} proc */
  async function stopChild(proc) {
    if (child === proc) child = undefined;
    // No pid: spawning failed (socat not installed), there is nothing to stop and no 'exit' will come.
    if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((res) => proc.once("exit", res));
      // SIGTERM lets socat remove its link; SIGKILL only if it hangs.
      proc.kill("SIGTERM");
      // Cancelled once socat exits: a pending timer would hold a CLI process open for its full length.
      const cancel = new AbortController();
      const timer = sleep(STOP_TIMEOUT_MS, "timeout", { signal: cancel.signal }).catch(() => "exited");
      const outcome = await Promise.race([exited, timer]);
      cancel.abort();
      if (outcome === "timeout") {
        proc.kill("SIGKILL");
        await exited;
      }
    }
    removeStaleLink(path);
  }

  async function unplug() {
    if (child) await stopChild(child);
  }

  async function replug() {
    if (child) return;
    await plug();
  }

  await plug();

  return {
    path,
    get state() {
      return { ...state };
    },
    setState,
    unplug,
    replug,
    stop: unplug,
    get received() {
      return received;
    },
    get asbEnabled() {
      return asbMask !== 0;
    },
    get plugged() {
      return child !== undefined;
    },
  };
}

const HELP = `commands: paper ok|near_end|out, cover open|closed, cutter error|ok, error mechanical|hot|unrecoverable|none,
  offline, online, drawer high|low, feed on|off, mute, unmute, unplug, replug, status, help, quit`;

/** @param {import("./escpos-printer.d.mts").PrinterSimulator} sim @param {string} line */
async function runCommand(sim, line) {
  const [word = "", arg = ""] = line.trim().split(/\s+/);
  switch (`${word} ${arg}`.trim()) {
    case "paper ok":
    case "paper near_end":
    case "paper out":
      return sim.setState({ paper: /** @type {"ok" | "near_end" | "out"} */ (arg) });
    case "cover open":
    case "cover closed":
      return sim.setState({ coverOpen: arg === "open" });
    case "cutter error":
    case "cutter ok":
      return sim.setState({ cutterError: arg === "error" });
    case "error mechanical":
      return sim.setState({ mechanicalError: true });
    case "error hot":
      return sim.setState({ autoRecoverableError: true });
    case "error unrecoverable":
      return sim.setState({ unrecoverableError: true });
    case "error none":
      return sim.setState({
        cutterError: false,
        mechanicalError: false,
        autoRecoverableError: false,
        unrecoverableError: false,
      });
    case "offline":
    case "online":
      return sim.setState({ online: word === "online" });
    case "drawer high":
    case "drawer low":
      return sim.setState({ drawerHigh: arg === "high" });
    case "feed on":
    case "feed off":
      return sim.setState({ feedButton: arg === "on" });
    case "mute":
    case "unmute":
      return sim.setState({ mute: word === "mute" });
    case "unplug":
      return sim.unplug();
    case "replug":
      return sim.replug();
    case "status":
    case "":
      return;
    case "help":
      console.log(HELP);
      return;
    default:
      console.log(`unknown command: ${line.trim()} (try help)`);
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      path: { type: "string", default: "/tmp/escpos-printer" },
      "no-asb": { type: "boolean", default: false },
      delay: { type: "string", default: "0" },
      xonxoff: { type: "boolean", default: false },
    },
  });
  const hex = (/** @type {number[]} */ bytes) => bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const sim = await startPrinterSimulator({
    path: values.path,
    asb: !values["no-asb"],
    replyDelayMs: Number(values.delay),
    xonxoff: values.xonxoff,
    onEvent: (e) => {
      if (e.type === "dle-eot") console.log(`<- DLE EOT ${e.n} -> ${hex([e.byte])}`);
      else if (e.type === "asb") console.log(`-> ASB ${hex(e.bytes)}`);
      else if (e.type !== "rx") console.log(`<- ${e.type === "gs-a" ? "GS a" : "DLE ENQ"} ${e.n}`);
    },
  });
  console.log(`printer on ${sim.path}; ${HELP}`);
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === "quit") break;
    try {
      await runCommand(sim, line);
    } catch (err) {
      console.log(String(err));
    }
    console.log(
      JSON.stringify({ ...sim.state, plugged: sim.plugged, asb: sim.asbEnabled, answered: sim.received }),
    );
  }
  rl.close();
  await sim.stop();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
