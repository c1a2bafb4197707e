#!/usr/bin/env node
// A PIN pad that logs over a serial line, for tests, the demo and by hand: socat makes a PTY (its
// slave side appears at `path` as a symlink, like a USB serial device) and we write log lines into
// the master side. The lines mix the styles the agent must classify (logcat, syslog <PRI>, [LEVEL],
// plain words), carry the card data the scrubber must mask (Luhn-valid *test* PANs, track data, EMV
// TLV dumps), come in bursts of identical lines (storm filter) and, with garbage, binary junk
// without a newline (framer resync), now and then longer than a line may be.
//
// Usage: node scripts/sim/pinpad.mjs --path /tmp/pinpad [--interval 200] [--seed 1] [--no-cards]
//        [--no-garbage] [--format text|jsonl]
import { spawn } from "node:child_process";
import { lstatSync, readlinkSync, unlinkSync } from "node:fs";
import { lstat, readlink, unlink } from "node:fs/promises";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { killOnExit } from "../lib/kill-on-exit.mjs";
import { prng } from "../lib/prng.mjs";

const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;
// Nobody reading the PTY: the kernel buffer fills, then socat blocks, then our pipe fills. Past this
// many bytes queued in Node we drop lines, as a real device writing into an unread UART does.
const MAX_QUEUED_BYTES = 64 * 1024;

// Published test card numbers (Visa, Mastercard incl. a 2-series BIN, Amex, Discover): Luhn-valid,
// never real accounts.
const TEST_PANS = [
  "4111111111111111",
  "5555555555554444",
  "2223003122003222",
  "378282246310005",
  "6011111111111117",
];
const TAGS = ["PinPad", "EmvKernel", "Keypad", "CardReader", "Crypto", "Display"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "4111111111111111" → "4111 1111 1111 1111" (or with dashes). */
function groupPan(pan, separator) {
  return pan.replace(/(\d{4})(?=\d)/g, `$1${separator}`);
}

/** EMV TLV hex dump bytes of a PAN: tag 5A, length, BCD digits (odd length padded with F). */
function tlvPan(pan) {
  const digits = pan.length % 2 === 0 ? pan : `${pan}F`;
  const bytes = digits.match(/../g) ?? [];
  return ["5A", pad(bytes.length.toString(16).toUpperCase()), ...bytes].join(" ");
}

/**
 * The seeded line source behind the simulator, exposed so tests can know what to expect.
 * @param {{ seed?: number, cardNumbers?: boolean, garbage?: boolean, format?: "text" | "jsonl", now?: () => number }} [options]
 */
export function createPinpadLineGenerator(options = {}) {
  const { seed = 1, cardNumbers = true, garbage = true, format = "text", now = () => Date.now() } = options;
  const random = prng(seed);
  const int = (n) => Math.floor(random() * n);
  const pick = (list) => list[int(list.length)];
  let pid = 1000 + int(9000);
  let txn = 1;

  /** @returns {{ level: "error" | "warn" | "info" | "debug", message: string }} */
  function event() {
    const r = random();
    const pan = pick(TEST_PANS);
    if (cardNumbers && r < 0.06)
      return { level: "debug", message: `card read PAN=${groupPan(pan, pick([" ", "-", ""]))}` };
    if (cardNumbers && r < 0.09) return { level: "debug", message: `track2 ;${pan}=25121011234567890?` };
    if (cardNumbers && r < 0.12)
      return { level: "debug", message: `EMV TLV ${tlvPan(pan)} 5F 24 03 25 12 31` };
    if (r < 0.2) return { level: "error", message: `card read failed: timeout after ${50 + int(400)} ms` };
    if (r < 0.25) return { level: "error", message: "tamper switch open" };
    if (r < 0.35) return { level: "warn", message: `battery low: ${5 + int(15)}%` };
    if (r < 0.4) return { level: "warn", message: `keypad debounce retry ${1 + int(3)}` };
    if (r < 0.6)
      return {
        level: "info",
        message: `transaction ${txn++} approved amount=${(int(20000) / 100).toFixed(2)}`,
      };
    if (r < 0.7) return { level: "info", message: "card inserted" };
    if (r < 0.8) return { level: "info", message: "card removed" };
    return { level: "debug", message: `APDU 00A4040007A000000003${pad(int(9999), 4)} SW=9000` };
  }

  function stamp(style) {
    const d = new Date(now());
    const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    const ms = pad(d.getUTCMilliseconds(), 3);
    const date = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    if (style === "iso") return d.toISOString();
    if (style === "logcat") return `${date} ${time}.${ms}`;
    return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, " ")} ${time}`;
  }

  /** One log line in one of the text styles the level parser knows. */
  function render({ level, message }) {
    const letter = { error: "E", warn: "W", info: "I", debug: "D" }[level];
    const word = { error: "ERROR", warn: "WARN", info: "INFO", debug: "DEBUG" }[level];
    const severity = { error: 3, warn: 4, info: 6, debug: 7 }[level];
    const tag = pick(TAGS);
    if (format === "jsonl") {
      return JSON.stringify({
        level: { error: 50, warn: 40, info: 30, debug: 20 }[level],
        time: now(),
        pid,
        tag,
        msg: message,
      });
    }
    switch (int(5)) {
      case 0:
        return `${stamp("logcat")}  ${pid}  ${pid + 7} ${letter} ${tag}: ${message}`;
      case 1:
        return `${letter}/${tag}(${String(pid).padStart(5, " ")}): ${message}`;
      case 2:
        // <PRI> with facility local0 (16): 16 * 8 + severity.
        return `<${128 + severity}>${stamp("syslog")} pinpad ${tag.toLowerCase()}[${pid}]: ${message}`;
      case 3:
        return `${stamp("iso")} [${word}] ${tag}: ${message}`;
      default:
        return `${word}: ${tag.toLowerCase()} ${message}`;
    }
  }

  /** Random bytes with every byte value but the newline, so they never end a line by themselves. */
  function junk(length) {
    const bytes = Buffer.alloc(length);
    for (let i = 0; i < length; i += 1) {
      const b = int(256);
      bytes[i] = b === 0x0a ? 0x00 : b;
    }
    return bytes;
  }

  return {
    /**
     * What to write for one interval: usually one line, sometimes a burst of identical lines,
     * sometimes junk. Lines come without their trailing newline.
     * @returns {Array<{ kind: "line", text: string } | { kind: "bytes", bytes: Buffer }>}
     */
    next() {
      const r = random();
      if (garbage && r < 0.01) return [{ kind: "bytes", bytes: junk(9_000 + int(4_000)) }];
      if (garbage && r < 0.05) return [{ kind: "bytes", bytes: junk(1 + int(64)) }];
      if (r < 0.08) {
        const text = render({ level: "error", message: `keypad scan timeout on row ${int(4)}` });
        return Array.from({ length: 5 + int(40) }, () => ({ kind: "line", text }));
      }
      if (r < 0.085) pid = 1000 + int(9000); // the firmware restarted
      return [{ kind: "line", text: render(event()) }];
    },
  };
}

/** Kill and wait; SIGKILL if SIGTERM is not enough. Resolves at once for a child already gone. */
async function killChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((res) => child.once("exit", res));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * Remove a symlink at `path` that points into /dev/pts (a socat link; never anything else), and
 * when `target` is given only if it points there, so we never take away another run's live link.
 * @param {string} path
 * @param {string} [target]
 */
async function removeStaleLink(path, target) {
  try {
    const st = await lstat(path);
    if (!st.isSymbolicLink()) return;
    const points = await readlink(path);
    if (points.startsWith("/dev/pts/") && (target === undefined || points === target)) await unlink(path);
  } catch {
    // nothing there
  }
}

/**
 * Start the simulator; resolves once the PTY link exists.
 * @param {import("./pinpad.d.mts").PinpadSimulatorOptions} options
 * @returns {Promise<import("./pinpad.d.mts").PinpadSimulator>}
 */
export async function startPinpadSimulator(options) {
  const { intervalMs = 200, cardNumbers = true, garbage = true, seed = 1, format = "text" } = options;
  const path = resolve(options.path);
  const generator = createPinpadLineGenerator({ seed, cardNumbers, garbage, format });
  const state = {
    child: /** @type {import("node:child_process").ChildProcess | undefined} */ (undefined),
    path,
    /** @type {string | undefined} the /dev/pts/N the link points to while this run's socat lives */
    pty: undefined,
  };
  let linesWritten = 0;
  let stderr = "";
  let stopped = false;

  async function spawnSocat() {
    // A link left by a run that was killed (SIGKILL skips socat's own cleanup) would block ours.
    await removeStaleLink(path);
    stderr = "";
    // `rawer`: no echo, no canonical mode, no CR/LF translation on the PTY, so bytes pass as written.
    // (socat 1.7.4 has no -d0; without -d it prints only errors, which we keep for the message below.)
    const child = spawn("socat", [`PTY,link=${path},rawer`, "STDIO"], { stdio: ["pipe", "ignore", "pipe"] });
    state.child = child;
    // SIGKILL leaves socat's link behind: remove it if it is still the one to our PTY.
    killOnExit(child, () => {
      if (lstatSync(path).isSymbolicLink() && readlinkSync(path) === state.pty) unlinkSync(path);
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text) => {
      stderr = (stderr + text).slice(-4096);
    });
    // EPIPE when socat goes away mid-write (unplug): the line is lost, as on a real cable.
    child.stdin?.on("error", () => {});
    child.on("error", (error) => {
      stderr += `${error.message}\n`;
    });
    const spawnError = new Promise((_, rej) => child.once("error", rej));
    // Handled here so an error after start-up is not an unhandled rejection; the race still sees it.
    spawnError.catch(() => {});
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`socat exited before ${path} appeared: ${stderr.trim() || `code ${child.exitCode}`}`);
      }
      const pty = await Promise.race([
        readlink(path).then(
          (target) => target,
          () => undefined,
        ),
        spawnError,
      ]);
      if (pty !== undefined) {
        state.pty = pty;
        return;
      }
      if (Date.now() > deadline) {
        await killChild(child);
        throw new Error(`socat did not create ${path} within ${READY_TIMEOUT_MS} ms: ${stderr.trim()}`);
      }
      await sleep(10);
    }
  }

  /** @param {Buffer | string} data @returns {boolean} */
  function write(data) {
    const stdin = state.child?.stdin;
    if (stopped || stdin === undefined || stdin === null || stdin.destroyed || state.child?.exitCode !== null)
      return false;
    if (stdin.writableLength > MAX_QUEUED_BYTES) return false;
    stdin.write(data);
    return true;
  }

  function writeLine(text) {
    const ok = write(`${text}\n`);
    if (ok) linesWritten += 1;
    return ok;
  }

  async function unplugNow() {
    const child = state.child;
    const pty = state.pty;
    state.child = undefined;
    state.pty = undefined;
    if (child !== undefined) await killChild(child);
    // socat removes its link on SIGTERM; after a SIGKILL we do.
    if (pty !== undefined) await removeStaleLink(path, pty);
  }

  await spawnSocat();
  const timer = setInterval(() => {
    for (const item of generator.next()) {
      if (item.kind === "line") writeLine(item.text);
      else write(item.bytes);
    }
  }, intervalMs);

  return {
    path,
    writeLine,
    writeBytes: (bytes) => write(Buffer.from(bytes)),
    get linesWritten() {
      return linesWritten;
    },
    get plugged() {
      return state.child !== undefined && state.child.exitCode === null && state.child.signalCode === null;
    },
    unplug: unplugNow,
    async replug() {
      if (stopped) throw new Error("pinpad simulator is stopped");
      await unplugNow();
      await spawnSocat();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await unplugNow();
    },
  };
}

function parseArgs(argv) {
  const out = { path: "", intervalMs: 200, seed: 1, cardNumbers: true, garbage: true, format: "text" };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      const v = argv[i + 1];
      i += 1;
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--path") out.path = value();
    else if (arg === "--interval") out.intervalMs = Number(value());
    else if (arg === "--seed") out.seed = Number(value());
    else if (arg === "--format") out.format = value();
    else if (arg === "--no-cards") out.cardNumbers = false;
    else if (arg === "--no-garbage") out.garbage = false;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (out.path === "") throw new Error("--path is required");
  if (!(out.intervalMs > 0)) throw new Error("--interval must be a positive number of ms");
  if (out.format !== "text" && out.format !== "jsonl") throw new Error("--format is text or jsonl");
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`pinpad: ${error instanceof Error ? error.message : String(error)}`);
    console.error(
      "usage: node scripts/sim/pinpad.mjs --path /tmp/pinpad [--interval 200] [--seed 1] [--no-cards] [--no-garbage] [--format text|jsonl]",
    );
    process.exitCode = 2;
    return;
  }
  const sim = await startPinpadSimulator(args);
  console.error(`pinpad: writing to ${sim.path} every ${args.intervalMs} ms (Ctrl-C to stop)`);
  const shutdown = () => {
    sim.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`pinpad: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
