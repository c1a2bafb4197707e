#!/usr/bin/env node
// The agent doing its real job on this machine: a broker (Mosquitto if installed, else the embedded
// aedes), a TCP link that we cut, the agent as a real process, a fleet-side consumer printing what
// arrives, a burst of records through the local intake API, a simulated ESC/POS printer and PIN pad
// on real PTYs (socat) whose paper runs out, whose card numbers get masked and which get unplugged,
// and a summary at the end.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import mqtt from "mqtt";
import { prepareUpdates } from "./lib/demo-updates.mjs";
import { freePort } from "./lib/free-port.mjs";
import { startMosquitto } from "./lib/mosquitto.mjs";
import { startTcpProxy } from "./lib/tcp-proxy.mjs";
import { startPrinterSimulator } from "./sim/escpos-printer.mjs";
import { startPinpadSimulator } from "./sim/pinpad.mjs";

const ROOT = resolve(import.meta.dirname, "..");
const WORK = join(ROOT, ".demo");
const DEVICE = "POS-DEMO-1";
const TENANT = "acme";
const TOPIC_ROOT = `pos/v1/${TENANT}/${DEVICE}`;
const started = Date.now();
const say = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${text}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startBroker() {
  const hasMosquitto =
    spawnSync("sh", ["-c", "command -v mosquitto || test -x /usr/sbin/mosquitto"]).status === 0;
  // DEMO_BROKER=aedes forces the embedded broker (what a machine without Mosquitto gets).
  if (hasMosquitto && process.env.DEMO_BROKER !== "aedes") {
    const broker = await startMosquitto({ dir: join(WORK, "broker") });
    return {
      name: `Mosquitto on ${broker.url}`,
      port: broker.port,
      url: broker.url,
      stop: () => broker.stop(),
    };
  }
  const { Aedes } = await import("aedes");
  const aedes = await Aedes.createBroker();
  const port = await freePort();
  const server = createServer(aedes.handle);
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    name: `embedded aedes (MQTT 3.1.1) on mqtt://127.0.0.1:${port}`,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    stop: () => new Promise((r) => server.close(() => aedes.close(r))),
  };
}

/**
 * Runs bin/pos-ops and resolves with the lines it printed (stdout and stderr); a failing run is part
 * of the show. Asynchronous: this process also runs the TCP link the agent talks through.
 */
function runOps(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, "bin/pos-ops"), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    child.stdout.on("data", (chunk) => {
      text += chunk;
    });
    child.stderr.on("data", (chunk) => {
      text += chunk;
    });
    child.once("exit", () => resolve(text.split("\n").filter(Boolean)));
  });
}

async function post(port, path, items) {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(items),
  });
  return { status: response.status, body: await response.json() };
}

async function main() {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const broker = await startBroker();
  say(`broker: ${broker.name}`);
  const link = await startTcpProxy({ targetPort: broker.port });
  say(`link: agent -> 127.0.0.1:${link.port} -> broker (we cut this one)`);

  // The fleet side: a persistent session, so the broker keeps what arrives while it looks away.
  const consumer = mqtt.connect(broker.url, { clientId: "demo-fleet", clean: false, protocolVersion: 4 });
  const seen = new Map();
  let duplicates = 0;
  let messages = 0;
  let lastState;
  const peripheralEvents = [];
  const cardNumbersAtFleet = [];
  let maskedLines = 0;
  consumer.on("message", (topic, payload) => {
    const body = JSON.parse(payload.toString());
    const leaf = topic.slice(TOPIC_ROOT.length + 1);
    if (leaf === "state") {
      lastState = body;
      say(`fleet <- state: ${body.online ? "ONLINE" : "OFFLINE"} (${body.state}, session ${body.sessionId})`);
      return;
    }
    if (leaf.startsWith("cmd/") || leaf.startsWith("diag/")) return; // pos-ops prints those
    if (leaf === "update/state") {
      const progress = body.progress === undefined ? "" : ` ${body.progress} %`;
      const why = body.reason ?? body.code;
      say(
        `fleet <- update/state: ${body.component} ${body.fromVersion ?? "(none)"} -> ${body.toVersion}: ${body.state.toUpperCase()}${progress}${why ? ` [${why}]` : ""}${body.message && body.state !== "downloading" ? ` ${body.message}` : ""}`,
      );
      return;
    }
    if (leaf.startsWith("periph/")) {
      const status = body.status
        ? `, paper ${body.status.paper}, cover ${body.status.cover}, ${body.status.online ? "online" : "offline"}`
        : "";
      say(`fleet <- ${leaf} (retained): link ${body.link}${status}`);
      return;
    }
    for (const record of body.records) {
      // A card number at the fleet would be a failure of the agent: look for the simulators' ones.
      if (/4111[ -]?1111[ -]?1111[ -]?1111|5555[ -]?5555[ -]?5555[ -]?4444/.test(JSON.stringify(record))) {
        cardNumbersAtFleet.push(record.seq);
      }
      if (
        leaf === "events" &&
        (record.type.startsWith("peripheral.") || record.type === "card_data.redacted")
      ) {
        peripheralEvents.push(record);
        say(`fleet <- event ${record.type} (${record.severity}): ${record.message}`);
      } else if (
        leaf === "events" &&
        /^(agent\.(started|restart|crash_loop)|device\.|alert\.|clock\.)/.test(record.type)
      ) {
        say(`fleet <- event ${record.type} (${record.severity}): ${record.message}`);
      }
      if (leaf === "logs" && record.source === "pinpad" && record.line.includes("XXXX")) {
        maskedLines += 1;
        if (maskedLines <= 3 || record.line.includes("card read XXXX")) {
          say(`fleet <- pinpad log, masked: "${record.line}"`);
        }
      }
    }
    messages += 1;
    let historical = 0;
    for (const record of body.records) {
      if (seen.has(record.seq)) duplicates += 1;
      else seen.set(record.seq, record);
      if (record.historical) historical += 1;
    }
    const first = body.records[0];
    const sample =
      leaf === "telemetry"
        ? `host cpu ${first.metrics["cpu.loadPct"] ?? "-"} %, mem ${first.metrics["mem.usedPct"]} %, disk.data ${first.metrics["disk.data.usedPct"]} %; agent rss ${(first.metrics["agent.process.rssBytes"] / 1048576).toFixed(0)} MiB, outbox ${first.metrics["agent.outbox.records"]} records`
        : leaf === "events"
          ? `${first.type} (${first.severity}) ${first.message ?? ""}`
          : `"${first.line}"`;
    if (leaf !== "logs" || messages % 10 === 1 || historical > 0) {
      say(
        `fleet <- ${leaf}: ${body.records.length} records, seq ${first.seq}..${body.records.at(-1).seq}${historical ? `, ${historical} historical` : ""}; first: ${sample}`,
      );
    }
  });
  await new Promise((r) => consumer.once("connect", r));
  await consumer.subscribeAsync(`${TOPIC_ROOT}/#`, { qos: 1 });

  const hasSocat = spawnSync("sh", ["-c", "command -v socat"]).status === 0;
  let printer;
  let pinpad;
  if (hasSocat) {
    printer = await startPrinterSimulator({ path: join(WORK, "ttyPrinter") });
    pinpad = await startPinpadSimulator({ path: join(WORK, "ttyPinpad"), intervalMs: 700, seed: 7 });
    say(`peripherals: ESC/POS printer on ${printer.path}, PIN pad on ${pinpad.path} (real PTYs by socat)`);
  } else {
    say(
      "peripherals: socat is not installed (apt-get install -y socat); the printer and PIN pad part is skipped",
    );
  }

  // The operators' PKI, made with the operators' own tool: a root the terminal trusts, and a key to sign with.
  const pki = join(WORK, "pki");
  await runOps(["pki", "init", "--out", join(pki, "ca"), "--cn", "Demo Operators"]);
  await runOps([
    "pki",
    "issue",
    "--ca",
    join(pki, "ca"),
    "--role",
    "operator",
    "--cn",
    "demo-operator",
    "--out",
    join(pki, "keys"),
  ]);
  say("pos-ops: operator root CA and an operator certificate issued (pos-ops pki init / issue)");
  const updates = await prepareUpdates({ work: WORK, runOps, say });

  const intakePort = await freePort();
  const config = {
    deviceId: DEVICE,
    tenant: TENANT,
    model: "DEMO",
    dataDir: join(WORK, "agent-data"),
    mqtt: { urls: [`mqtt://127.0.0.1:${link.port}`], willDelaySec: 2, reconnect: { minSec: 1, maxSec: 2 } },
    intake: { host: "127.0.0.1", port: intakePort },
    telemetry: { intervalSec: 5 },
    peripherals: hasSocat
      ? [
          { name: "printer", path: printer.path, baudRate: 115200, driver: "escpos", pollIntervalMs: 1000 },
          { name: "pinpad", path: pinpad.path, baudRate: 115200, driver: "lines" },
        ]
      : [],
    trust: { operatorRoots: [join(pki, "ca", "ca.cert.pem")], releaseRoots: [updates.releaseRoot] },
    components: { "pos-app": updates.component },
    log: { level: "warn" },
  };
  const configPath = join(WORK, "config.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  say(`agent: bin/pos-agent run --config ${configPath}`);
  const agent = spawn(process.execPath, [join(ROOT, "bin/pos-agent"), "run", "--config", configPath], {
    stdio: ["ignore", "inherit", "pipe"],
  });
  agent.stderr.on("data", (chunk) => {
    for (const line of chunk.toString().split("\n").filter(Boolean)) {
      try {
        const entry = JSON.parse(line);
        say(
          `agent log (${entry.level >= 50 ? "error" : "warn"}): ${entry.msg}${entry.reason ? ` - ${entry.reason}` : ""}`,
        );
      } catch {
        say(`agent: ${line}`);
      }
    }
  });
  // If the demo itself fails, the agent must not live on holding the ports.
  process.once("exit", () => agent.kill("SIGKILL"));
  const agentExit = new Promise((r) => agent.once("exit", (code) => r(code)));
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`http://127.0.0.1:${intakePort}/v1/health`).then(
      () => true,
      () => false,
    );
    if (ok) break;
    await sleep(100);
  }

  let acknowledged = 0;
  const expected = new Set();
  async function burst(label, count) {
    for (let done = 0; done < count; done += 500) {
      const items = Array.from({ length: Math.min(500, count - done) }, (_, i) => ({
        source: "pos-app",
        level: i % 50 === 0 ? "error" : "info",
        line: `${label} line ${done + i}`,
      }));
      const answer = await post(intakePort, "/v1/logs", items);
      if (answer.status !== 200)
        throw new Error(`intake answered ${answer.status}: ${JSON.stringify(answer.body)}`);
      acknowledged += items.length;
      for (let seq = answer.body.firstSeq; seq <= answer.body.lastSeq; seq++) expected.add(seq);
    }
  }

  await sleep(1000);
  say("app -> intake: a burst of 5 000 log lines and an event");
  await burst("burst", 5000);
  const event = await post(intakePort, "/v1/events", [
    { type: "pos-app.receipt_reprint", severity: "info", source: "pos-app", message: "receipt reprinted" },
  ]);
  for (let seq = event.body.firstSeq; seq <= event.body.lastSeq; seq++) expected.add(seq);
  acknowledged += 1;
  await sleep(1500);

  say("link: CUT (the terminal loses its network)");
  await link.down();
  await burst("offline", 2000);
  say("app -> intake: 2 000 more lines while offline; they wait in the SQLite outbox");
  const health = await fetch(`http://127.0.0.1:${intakePort}/v1/health`).then((r) => r.json());
  say(
    `agent health: connected=${health.connected}, outbox ${health.outbox.records} records, ${health.outbox.bytes} bytes`,
  );
  await sleep(3500);
  say("link: RESTORED");
  await link.up();

  const deadline = Date.now() + 30_000;
  while ([...expected].some((seq) => !seen.has(seq)) && Date.now() < deadline) await sleep(100);
  await sleep(500);

  if (hasSocat) {
    say("printer: the paper runs out");
    printer.setState({ paper: "out" });
    await sleep(2500);
    say("printer: paper reloaded");
    printer.setState({ paper: "ok" });
    await sleep(2500);
    say('pinpad: a component logs a card number ("E/EMV: card read 4111 1111 1111 1111 ok")');
    pinpad.writeLine("E/EMV: card read 4111 1111 1111 1111 ok");
    await sleep(2000);
    say("pinpad: UNPLUGGED");
    await pinpad.unplug();
    await sleep(3000);
    say("pinpad: plugged back in");
    await pinpad.replug();
    await sleep(3500);
  }

  // Remote technical support (MQTT 5 request/response: Mosquitto; the embedded aedes speaks 3.1.1 only).
  let signedRestart = false;
  if (broker.name.startsWith("Mosquitto")) {
    const ops = ["--broker", broker.url, "--tenant", TENANT, "--target", DEVICE, "--wait", "15"];
    say("pos-ops diag: the diagnostics suite on the terminal, from the operator's desk");
    for (const line of await runOps(["diag", ...ops])) say(`  ${line}`);
    say("pos-ops cmd logs.query: the terminal's recent error lines, card numbers already masked");
    const query = JSON.stringify({ level: "error", limit: 5 });
    for (const line of await runOps(["cmd", ...ops, "logs.query", "--args", query])) say(`  ${line}`);
    // Signed releases: built and signed with pos-ops, served by the local update server, applied by
    // a signed update.apply naming the manifest's URL; the states arrive on ROOT/update/state.
    const sign = [
      "--sign",
      `${join(pki, "keys", "demo-operator.key.pem")},${join(pki, "keys", "demo-operator.cert.pem")}`,
    ];
    for (const [version, healthy] of [
      ["1.0.0", true],
      ["1.1.0", true],
      ["1.2.0", false],
    ]) {
      say(
        `pos-ops release build + sign: pos-app ${version}${healthy ? "" : " (broken: its health check will fail)"}`,
      );
      const manifestUrl = await updates.publish(version, healthy);
      say(`pos-ops cmd update.apply {"manifestUrl": "${manifestUrl}"}, signed by the operator`);
      const args = JSON.stringify({ manifestUrl });
      for (const line of await runOps([
        "cmd",
        ...ops,
        "update.apply",
        "--args",
        args,
        ...sign,
        "--wait",
        "60",
      ])) {
        if (!line.startsWith(" ") && !line.startsWith("{") && !line.startsWith("}")) say(`  ${line}`);
      }
    }
    await updates.close();
    say("pos-ops cmd agent.restart, unsigned: refused");
    for (const line of await runOps(["cmd", ...ops, "agent.restart"])) say(`  ${line}`);
    say("pos-ops cmd agent.restart, signed by the operator: answered, then the agent stops cleanly");
    const key = join(pki, "keys", "demo-operator.key.pem");
    const cert = join(pki, "keys", "demo-operator.cert.pem");
    for (const line of await runOps(["cmd", ...ops, "agent.restart", "--sign", `${key},${cert}`])) {
      say(`  ${line}`);
    }
    signedRestart = true;
  }
  if (!signedRestart) {
    say("agent: SIGTERM (clean stop)");
    agent.kill("SIGTERM");
  }
  const code = await agentExit;
  await sleep(300);
  const missing = [...expected].filter((seq) => !seen.has(seq)).length;
  console.log("\n=== summary ===");
  console.log(`records acknowledged by intake : ${acknowledged}`);
  console.log(`distinct records at the fleet   : ${seen.size} (includes the agent's own telemetry)`);
  console.log(`acknowledged but missing        : ${missing}`);
  console.log(`duplicates removed by seq       : ${duplicates}`);
  console.log(`historical (sent after the cut) : ${[...seen.values()].filter((r) => r.historical).length}`);
  console.log(`messages (batches) received     : ${messages}`);
  console.log(
    `final retained state            : ${lastState ? `${lastState.state}, session ${lastState.sessionId}` : "none"}`,
  );
  console.log(`agent exit code                 : ${code}`);
  if (hasSocat) {
    const types = [...new Set(peripheralEvents.map((event) => event.type))];
    console.log(`peripheral events at the fleet  : ${peripheralEvents.length} (${types.join(", ")})`);
    console.log(`pinpad lines with masked digits : ${maskedLines}`);
    console.log(`card numbers at the fleet       : ${cardNumbersAtFleet.length}`);
    const live = (() => {
      try {
        return readlinkSync(join(config.dataDir, "components", "pos-app", "current"));
      } catch {
        return "(none)";
      }
    })();
    if (signedRestart) {
      console.log(
        `pos-app live release           : ${live} (1.2.0 was rolled back by its failed health check)`,
      );
    }
  }
  console.log(`inspect: ./bin/pos-agent status --config ${configPath}`);

  await new Promise((r) => consumer.end(false, {}, r));
  await printer?.stop();
  await pinpad?.stop();
  await link.close();
  await broker.stop();
  process.exitCode = missing === 0 && code === 0 && cardNumbersAtFleet.length === 0 ? 0 : 1;
}

// Ctrl-C: exit through process.exit so the broker helper's exit hook stops the broker (the agent,
// in the same process group, gets the SIGINT itself and stops cleanly).
process.once("SIGINT", () => process.exit(130));

main().catch((error) => {
  console.error(`demo failed: ${error.message}`);
  process.exit(1);
});
