// Captured lines per second from a real PTY: node-serialport's ReadlineParser alone (the baseline)
// against the agent's whole capture path (bounded framing, level detection, storm filter, card-data
// scrubbing, group commit to the SQLite outbox with synchronous=FULL), on the same PTY in the same run.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { ReadlineParser, SerialPort } from "serialport";

const DIST = resolve(import.meta.dirname, "../../dist");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A lost line must end the bench with a message, not hang it. */
async function until(done, describe, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await sleep(2);
  }
}

/** Logcat-like lines of about 100 bytes, all distinct; one in 200 carries a card number. */
export function corpus(count) {
  const levels = ["I", "D", "W", "E"];
  const lines = [];
  for (let i = 0; i < count; i++) {
    const level = levels[i % 4];
    const card = i % 200 === 7 ? " pan 4111 1111 1111 1111" : "";
    lines.push(
      `11-26 05:17:14.${String(i % 1000).padStart(3, "0")}  812  845 ${level} Pinpad: txn ${i} state=${i % 7} rc=0x${(i % 251).toString(16)}${card}\n`,
    );
  }
  return Buffer.from(lines.join(""));
}

async function startPtyWriter(path) {
  const child = spawn("socat", [`PTY,link=${path},rawer`, "STDIO"], { stdio: ["pipe", "ignore", "inherit"] });
  for (let waited = 0; !existsSync(path); waited += 10) {
    if (waited > 5000) throw new Error(`socat did not create ${path}`);
    await sleep(10);
  }
  return {
    /** Writes everything, honouring backpressure (the PTY blocks when the reader falls behind). */
    async send(data) {
      for (let offset = 0; offset < data.length; offset += 65536) {
        if (!child.stdin.write(data.subarray(offset, offset + 65536))) {
          await new Promise((r) => child.stdin.once("drain", r));
        }
      }
    },
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once("exit", r);
        child.kill("SIGTERM");
      }),
  };
}

async function rawRate(path, data, count) {
  const writer = await startPtyWriter(path);
  try {
    const port = new SerialPort({ path, baudRate: 115200 });
    await new Promise((r, j) => port.once("open", r).once("error", j));
    const parser = port.pipe(new ReadlineParser({ delimiter: "\n" }));
    let seen = 0;
    parser.on("data", () => {
      seen += 1;
    });
    const t0 = performance.now();
    await writer.send(data);
    await until(
      () => seen >= count,
      () => `ReadlineParser saw ${seen} of ${count} lines`,
    );
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => port.close(r));
    return count / seconds;
  } finally {
    await writer.stop();
  }
}

export async function pipelineRate(path, data, count, dir) {
  const { openDatabase, COUNTERS_FILE, walLimitFor } = await import(`${DIST}/store/database.js`);
  const { createOutbox } = await import(`${DIST}/store/outbox.js`);
  const { createCountersFile } = await import(`${DIST}/store/counters-file.js`);
  const { createCardDataGuard } = await import(`${DIST}/shared/card-data-guard.js`);
  const { createPeripherals } = await import(`${DIST}/peripherals/peripherals.js`);
  const { createSerialOpener } = await import(`${DIST}/peripherals/node-serialport.js`);
  const { createSysfsPortLister } = await import(`${DIST}/peripherals/sysfs-ports.js`);
  const { createBackoff } = await import(`${DIST}/shared/backoff.js`);
  const { silentLogger } = await import(`${DIST}/shared/logger.js`);
  mkdirSync(dir, { recursive: true });
  const maxBytes = 1024 * 1024 * 1024;
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: Date.now,
    walLimitBytes: walLimitFor(maxBytes),
  });
  const outbox = createOutbox({
    db: opened.db,
    counters: createCountersFile(join(dir, COUNTERS_FILE)),
    maxBytes,
    maxRecordBytes: 65536 - 512,
  });
  const guard = createCardDataGuard({ now: Date.now, raise: () => {}, log: silentLogger });
  let online;
  const isOnline = new Promise((r) => {
    online = r;
  });
  const peripherals = createPeripherals({
    peripherals: [
      {
        name: "pinpad",
        path,
        baudRate: 115200,
        dataBits: 8,
        stopBits: 1,
        parity: "none",
        driver: "lines",
        pollIntervalMs: 5000,
        encoding: "utf8",
      },
    ],
    opener: createSerialOpener(),
    lister: createSysfsPortLister(),
    guard,
    appendLogs: (records) => outbox.append(records.map((r) => ({ stream: "logs", ts: r.ts, body: r.body }))),
    recordEvent: () => {},
    stateChanged: (state) => {
      if (state.link === "online") online();
    },
    newBackoff: () => createBackoff({ initialMs: 100, maxMs: 100, floorMs: 100, random: Math.random }),
    now: Date.now,
    log: silentLogger,
    // Every line is distinct and wanted here: the storm cap is a policy, not part of the capacity measured.
    storm: { ratePerSec: 1e9, burst: 1e9 },
  });
  const writer = await startPtyWriter(path);
  try {
    peripherals.start();
    await isOnline;
    const t0 = performance.now();
    await writer.send(data);
    await until(
      () => outbox.stats().records >= count,
      () => `the agent committed ${outbox.stats().records} of ${count} lines`,
    );
    const seconds = (performance.now() - t0) / 1000;
    return { rate: count / seconds, redactions: guard.metrics()["agent.scrub.redactions"] };
  } finally {
    await peripherals.stop();
    await writer.stop();
    opened.db.close();
  }
}

/** Needs `npm run build` and socat. */
export async function benchSerialCapture({ lines = 200_000, dir }) {
  mkdirSync(dir, { recursive: true });
  const data = corpus(lines);
  const raw = await rawRate(join(dir, "tty-raw"), data, lines);
  const pipeline = await pipelineRate(join(dir, "tty-agent"), data, lines, join(dir, "agent"));
  return { lines, bytes: data.length, raw, pipeline: pipeline.rate, redactions: pipeline.redactions };
}
