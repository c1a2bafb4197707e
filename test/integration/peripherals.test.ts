import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startTcpProxy } from "../../scripts/lib/tcp-proxy.mjs";
import { startPrinterSimulator } from "../../scripts/sim/escpos-printer.mjs";
import { CARD_LINES, findCardNumbers, SECRETS } from "../fixtures/card-lines.js";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { type ReceivedRecord, startConsumer } from "../helpers/consumer.js";
import { startPty } from "../helpers/pty.js";
import { suiteResources } from "../helpers/suite-resources.js";

describe("peripherals through the agent process", () => {
  const { dir, cleanups } = suiteResources("pos-periph");

  async function setup(name: string, options: { linkDown?: boolean } = {}) {
    const root = join(dir, name);
    const broker = await startMosquitto({ dir: join(root, "broker") });
    cleanups.push(() => broker.kill());
    const link = await startTcpProxy({ targetPort: broker.port });
    cleanups.push(() => link.close());
    if (options.linkDown) await link.down();
    const printer = await startPrinterSimulator({ path: join(root, "ttyPrinter") });
    cleanups.push(() => printer.stop());
    const pinpad = await startPty(join(root, "ttyPinpad"));
    cleanups.push(() => pinpad.stop());
    const config = await writeAgentConfig({
      dir: root,
      brokerUrl: `mqtt://127.0.0.1:${link.port}`,
      extra: {
        peripherals: [
          { name: "printer", path: printer.path, baudRate: 115200, driver: "escpos", pollIntervalMs: 300 },
          { name: "pinpad", path: pinpad.path, baudRate: 115200, driver: "lines" },
        ],
      },
    });
    const consumer = await startConsumer({
      url: broker.url,
      clientId: `${name}-fleet`,
      topics: [`${config.root}/#`],
    });
    cleanups.push(() => consumer.close());
    const agent = await startAgent(config);
    cleanups.push(() => agent.kill("SIGKILL"));
    const records = () => [...consumer.records.values()];
    const events = (type: string) => records().filter((record) => record.type === type);
    const retained = (peripheral: string) =>
      consumer.messages
        .filter((message) => message.topic === `${config.root}/periph/${peripheral}/state`)
        .at(-1)?.payload as (Record<string, unknown> & { status?: Record<string, unknown> }) | undefined;
    return { root, broker, link, printer, pinpad, config, consumer, agent, records, events, retained };
  }

  it("reports printer status changes as normalised state and events, recoveries and a dead printer included", async () => {
    const t = await setup("printer");
    const { consumer } = t;
    await consumer.waitFor(
      () => t.retained("printer")?.status?.paper === "ok",
      15_000,
      "the printer's first state",
    );
    expect(t.retained("printer")).toMatchObject({
      name: "printer",
      driver: "escpos",
      link: "online",
      status: { online: true, paper: "ok", cover: "closed", cutter: "ok", error: "none" },
    });
    // Events go through the outbox, the retained state straight out: either may arrive first.
    await consumer.waitFor(
      () => t.events("peripheral.link.online").some((event) => event.source === "printer"),
      10_000,
      "the printer's link.online event",
    );

    t.printer.setState({ paper: "near_end" });
    await consumer.waitFor(
      () => t.events("peripheral.printer.paper_near_end").length === 1,
      10_000,
      "near end",
    );
    expect(t.events("peripheral.printer.paper_near_end")[0]).toMatchObject({
      severity: "low",
      source: "printer",
    });

    t.printer.setState({ paper: "out" });
    await consumer.waitFor(() => t.events("peripheral.printer.paper_end").length === 1, 10_000, "paper end");
    expect(t.events("peripheral.printer.paper_end")[0]).toMatchObject({ severity: "high" });
    await consumer.waitFor(
      () => t.retained("printer")?.status?.paper === "out",
      10_000,
      "retained paper out",
    );

    t.printer.setState({ coverOpen: true, cutterError: true });
    await consumer.waitFor(
      () =>
        t.events("peripheral.printer.cover_open").length === 1 &&
        t.events("peripheral.printer.cutter_error").length === 1,
      10_000,
      "cover open and cutter error",
    );
    t.printer.setState({ unrecoverableError: true });
    await consumer.waitFor(
      () => t.events("peripheral.printer.error").length === 1,
      10_000,
      "unrecoverable error",
    );
    expect(t.events("peripheral.printer.error")[0]).toMatchObject({ severity: "high" });

    t.printer.setState({ paper: "ok", coverOpen: false, cutterError: false, unrecoverableError: false });
    for (const type of ["paper_ok", "cover_closed", "cutter_ok", "error_cleared"]) {
      await consumer.waitFor(() => t.events(`peripheral.printer.${type}`).length === 1, 10_000, type);
      expect(t.events(`peripheral.printer.${type}`)[0]?.severity).toBe("info");
    }
    await consumer.waitFor(
      () =>
        JSON.stringify(t.retained("printer")?.status) ===
        JSON.stringify({ online: true, paper: "ok", cover: "closed", cutter: "ok", error: "none" }),
      10_000,
      "retained recovered state",
    );

    // A printer that stops answering is offline; when it answers again it is back.
    t.printer.setState({ mute: true });
    await consumer.waitFor(
      () => t.events("peripheral.printer.offline").length >= 1,
      10_000,
      "printer offline",
    );
    t.printer.setState({ mute: false });
    await consumer.waitFor(
      () => t.retained("printer")?.status?.online === true,
      10_000,
      "printer online again",
    );
    expect(t.events("peripheral.printer.online").length).toBeGreaterThanOrEqual(1);
  });

  it("masks every card number in the database and on the wire, and says which source logs them", async () => {
    const t = await setup("scrub", { linkDown: true });
    await t.agent.waitForLog((line) => line.peripheral === "pinpad" && line.msg === "peripheral online");
    for (const line of CARD_LINES) await t.pinpad.write(`${line}\r\n`);
    await t.pinpad.write("I/Pinpad: benign 2026-11-26T05:17:14Z serial SN-12345678 amount 1,234.56\r\n");

    // Offline: the lines wait in SQLite. Nothing there may hold card data.
    const db = new Database(join(t.config.dataDir, "agent.db"), { readonly: true, fileMustExist: true });
    const bodies = () =>
      (db.prepare("SELECT body FROM outbox_logs").all() as Array<{ body: string }>).map((row) => row.body);
    const deadline = Date.now() + 10_000;
    while (bodies().length < CARD_LINES.length + 1 && Date.now() < deadline) await sleep(50);
    const stored = bodies();
    const storedEvents = (db.prepare("SELECT body FROM outbox_events").all() as Array<{ body: string }>).map(
      (row) => row.body,
    );
    db.close();
    expect(stored).toHaveLength(CARD_LINES.length + 1);
    for (const body of [...stored, ...storedEvents]) {
      const line = (JSON.parse(body) as { line?: string; message?: string }).line ?? body;
      expect(findCardNumbers(line), line).toEqual([]);
      for (const secret of SECRETS) expect(body).not.toContain(secret);
    }
    expect(stored.at(-1)).toContain("serial SN-12345678 amount 1,234.56");

    await t.link.up();
    const logs = () =>
      t.records().filter((record) => record.source === "pinpad" && typeof record.line === "string");
    await t.consumer.waitFor(
      () => logs().length === CARD_LINES.length + 1,
      15_000,
      "every pinpad line at the fleet",
    );
    const wire = t.consumer.messages.map((message) => JSON.stringify(message.payload)).join("\n");
    for (const secret of SECRETS) expect(wire).not.toContain(secret);
    for (const record of logs()) expect(findCardNumbers(record.line as string)).toEqual([]);

    const redacted = t.events("card_data.redacted");
    expect(redacted).toHaveLength(1);
    expect(redacted[0]).toMatchObject({ severity: "high", source: "pinpad" });
    expect(
      (redacted[0] as ReceivedRecord & { details: { redactions: number } }).details.redactions,
    ).toBeGreaterThan(0);
  });

  it("reports an unplugged PIN pad offline, then online when replugged, and captures again", async () => {
    const t = await setup("hotplug");
    const lines = () =>
      t.records().filter((record) => record.source === "pinpad" && typeof record.line === "string");
    await t.consumer.waitFor(() => t.retained("pinpad")?.link === "online", 15_000, "pinpad online");
    await t.pinpad.write("I/Pinpad: before unplug\n");
    await t.consumer.waitFor(() => lines().length === 1, 10_000, "the first line");

    await t.pinpad.unplug();
    await t.consumer.waitFor(() => t.retained("pinpad")?.link === "offline", 10_000, "pinpad offline");
    const offline = t.events("peripheral.link.offline").filter((event) => event.source === "pinpad");
    expect(offline).toHaveLength(1);
    expect(offline[0]?.severity).toBe("medium");

    await t.pinpad.replug();
    await t.consumer.waitFor(
      () => t.events("peripheral.link.online").filter((event) => event.source === "pinpad").length === 2,
      10_000,
      "pinpad online again",
    );
    await t.pinpad.write("E/Pinpad: after replug\n");
    await t.consumer.waitFor(() => lines().length === 2, 10_000, "the line after replug");
    expect(lines().map((record) => [record.level, record.line])).toEqual([
      ["info", "I/Pinpad: before unplug"],
      ["error", "E/Pinpad: after replug"],
    ]);
    expect(t.agent.child.exitCode).toBeNull();
  });
});
