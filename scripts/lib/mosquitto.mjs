// A real Mosquitto broker for tests, the demo and benchmarks: its own config, port and
// persistence directory, never the system service.
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { delimiter, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./free-port.mjs";
import { killOnExit } from "./kill-on-exit.mjs";

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
// After a stop the port can linger (TIME_WAIT, or a racing process); retry binding this long.
const REBIND_WINDOW_MS = 5_000;

/**
 * Path of the mosquitto binary: /usr/sbin/mosquitto, else `mosquitto` on PATH.
 * @returns {string}
 */
export function findMosquitto() {
  const candidates = [
    "/usr/sbin/mosquitto",
    ...(process.env.PATH ?? "")
      .split(delimiter)
      .filter(Boolean)
      .map((d) => join(d, "mosquitto")),
  ];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    "mosquitto binary not found (looked in /usr/sbin and PATH); install it with `apt-get install mosquitto`",
  );
}

/**
 * The broker config. Every limit that could drop a QoS 1 message is spelled out
 * (mosquitto.conf(5), 2.0): see the comments in the generated file.
 * @param {{ port: number, dir: string, persistence: boolean, logPath: string, extraConfig: string }} o
 * @returns {string}
 */
function renderConfig(o) {
  const lines = [
    "# Written by scripts/lib/mosquitto.mjs; regenerated on every start.",
    `listener ${o.port} ${HOST}`,
    "allow_anonymous true",
    // Only matters when run as root (CI): otherwise mosquitto switches to the 'mosquitto' user,
    // which cannot write the persistence file or log in a root-owned temp dir.
    ...(process.getuid?.() === 0 ? ["user root"] : []),
    `persistence ${o.persistence ? "true" : "false"}`,
    `persistence_location ${o.dir.endsWith("/") ? o.dir : `${o.dir}/`}`,
    "persistence_file mosquitto.db",
    // Time-based: save at most 1 s of changes lost on SIGKILL. autosave_on_changes with a count
    // of 1 would rewrite the whole database on every queued message.
    "autosave_interval 1",
    "autosave_on_changes false",
    // 0 = no maximum for both (the default for max_queued_messages is 1000, after which messages
    // for an offline persistent session are silently dropped).
    "max_queued_messages 0",
    "max_queued_bytes 0",
    // A window, not a drop limit: messages beyond it wait in the (unlimited) queue. 20 is the default
    // and is what the broker advertises to MQTT 5 clients as Receive Maximum.
    "max_inflight_messages 20",
    "max_inflight_bytes 0",
    // message_size_limit and memory_limit stay unset: no maximum.
    `log_dest file ${o.logPath}`,
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
  ];
  if (o.extraConfig) lines.push("# extraConfig", o.extraConfig);
  return `${lines.join("\n")}\n`;
}

/** @param {number} port @returns {Promise<boolean>} */
function canConnect(port) {
  return new Promise((res) => {
    const socket = connect({ host: HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      res(true);
    });
    socket.once("error", () => {
      socket.destroy();
      res(false);
    });
  });
}

/**
 * Text appended to `path` since byte `from` (at most the last 64 KiB).
 * @param {string} path
 * @param {number} from
 * @returns {Promise<string>}
 */
async function readFrom(path, from) {
  let handle;
  try {
    handle = await open(path, "r");
    const { size } = await handle.stat();
    const start = Math.max(from, size - 65_536);
    const buf = Buffer.alloc(Math.max(0, size - start));
    await handle.read(buf, 0, buf.length, start);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    await handle?.close();
  }
}

/** @param {string} text @param {number} n */
function lastLines(text, n) {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

/**
 * @typedef {object} StartMosquittoOptions
 * @property {string} dir directory for config, log and persistence (created if missing)
 * @property {number} [port] fixed port; default: a free one
 * @property {boolean} [persistence] default true
 * @property {string | readonly string[]} [extraConfig] appended to the config (later lines win)
 */

/**
 * @typedef {object} Broker
 * @property {number} port
 * @property {string} url mqtt://127.0.0.1:PORT
 * @property {number} pid pid of the current (or last) broker process
 * @property {boolean} running
 * @property {string} dir
 * @property {string} configPath
 * @property {string} logPath
 * @property {() => Promise<void>} stop SIGTERM and wait for exit (mosquitto saves its database first)
 * @property {() => Promise<void>} kill SIGKILL and wait for exit (unsaved changes are lost)
 * @property {() => Promise<void>} restart stop if running, start again on the same port
 * @property {(lines?: number) => Promise<string>} logTail
 */

/**
 * Start a private Mosquitto broker; resolves once it accepts TCP connections.
 * @param {StartMosquittoOptions} options
 * @returns {Promise<Broker>}
 */
export async function startMosquitto(options) {
  const bin = findMosquitto();
  const dir = resolve(options.dir);
  const persistence = options.persistence ?? true;
  const extraConfig = Array.isArray(options.extraConfig)
    ? options.extraConfig.join("\n")
    : /** @type {string} */ (options.extraConfig ?? "");
  const fixedPort = options.port !== undefined;
  const configPath = join(dir, "mosquitto.conf");
  const logPath = join(dir, "mosquitto.log");
  await mkdir(dir, { recursive: true });

  let port = options.port ?? (await freePort(HOST));
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let child;
  let pid = 0;

  /**
   * One spawn: resolves "ok", or the log of a run that found the port taken, or throws.
   * @returns {Promise<"ok" | { inUse: string }>}
   */
  const spawnOnce = async () => {
    await writeFile(configPath, renderConfig({ port, dir, persistence, logPath, extraConfig }));
    const logStart = await stat(logPath).then(
      (s) => s.size,
      () => 0,
    );
    const proc = spawn(bin, ["-c", configPath], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (chunk) => {
      stderr = (stderr + chunk).slice(-8_192);
    });
    /** @type {{ code: number | null, signal: string | null } | undefined} */
    let exited;
    /** @type {Error | undefined} */
    let spawnError;
    proc.once("error", (err) => {
      spawnError = err;
    });
    proc.once("exit", (code, signal) => {
      exited = { code, signal };
    });
    killOnExit(proc);

    // Ready = our process is alive, says it is running, and the port accepts. The log check keeps
    // a foreign listener that grabbed the port first from passing for our broker; when extraConfig
    // silences the log, a connect that keeps working for 300 ms while our process lives will do.
    const gaveUp = () => exited !== undefined || spawnError !== undefined;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let listening = false;
    let firstOk = 0;
    while (!listening && !gaveUp() && Date.now() < deadline) {
      if (await canConnect(port)) {
        firstOk ||= Date.now();
        const said = /\brunning\b/.test(await readFrom(logPath, logStart));
        listening = !gaveUp() && (said || Date.now() - firstOk >= 300);
      } else {
        firstOk = 0;
      }
      if (!listening) await sleep(50);
    }
    if (listening) {
      child = proc;
      pid = proc.pid ?? 0;
      return "ok";
    }
    if (!exited && !spawnError) {
      proc.kill("SIGKILL");
      await new Promise((res) => proc.once("exit", res));
    }
    const log = `${await readFrom(logPath, logStart)}\n${stderr}`;
    if (/address already in use/i.test(log)) return { inUse: log };
    const how = spawnError
      ? `failed to spawn (${spawnError.message})`
      : exited
        ? `exited (code ${exited.code}, signal ${exited.signal})`
        : `did not accept connections within ${READY_TIMEOUT_MS} ms`;
    throw new Error(
      `mosquitto on port ${port} ${how}; config ${configPath}; log tail:\n${lastLines(log, 20)}`,
    );
  };

  /** @param {boolean} mayChangePort */
  const start = async (mayChangePort) => {
    const deadline = Date.now() + REBIND_WINDOW_MS;
    for (;;) {
      const outcome = await spawnOnce();
      if (outcome === "ok") return;
      if (Date.now() > deadline) {
        throw new Error(
          `mosquitto could not bind ${HOST}:${port} within ${REBIND_WINDOW_MS} ms; log tail:\n${lastLines(outcome.inUse, 10)}`,
        );
      }
      if (mayChangePort) port = await freePort(HOST);
      else await sleep(100);
    }
  };

  /**
   * @param {NodeJS.Signals} signal
   * @param {number} timeoutMs
   */
  const signalAndWait = async (signal, timeoutMs) => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((res) => proc.once("exit", res));
    proc.kill(signal);
    const timer = sleep(timeoutMs).then(() => "timeout");
    if ((await Promise.race([exited, timer])) === "timeout") {
      proc.kill("SIGKILL");
      await exited;
    }
  };

  await start(!fixedPort);

  /** @type {Broker} */
  const broker = {
    get port() {
      return port;
    },
    get url() {
      return `mqtt://${HOST}:${port}`;
    },
    get pid() {
      return pid;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    dir,
    configPath,
    logPath,
    stop: () => signalAndWait("SIGTERM", STOP_TIMEOUT_MS),
    kill: () => signalAndWait("SIGKILL", STOP_TIMEOUT_MS),
    restart: async () => {
      await signalAndWait("SIGTERM", STOP_TIMEOUT_MS);
      await start(false);
    },
    logTail: async (lines = 40) => lastLines(await readFrom(logPath, 0), lines),
  };
  return broker;
}
