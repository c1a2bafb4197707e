import { rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { createSerialOpener } from "../../src/peripherals/node-serialport.js";
import { createSerialLink, type LinkState, type LinkTarget } from "../../src/peripherals/serial-link.js";
import { createSysfsPortLister } from "../../src/peripherals/sysfs-ports.js";
import { createBackoff } from "../../src/shared/backoff.js";
import { silentLogger } from "../../src/shared/logger.js";
import { createFakeSysfs } from "../helpers/fake-sysfs.js";
import { startPty } from "../helpers/pty.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function startLink(target: LinkTarget, sysfs?: { sysRoot: string; devRoot: string }) {
  const states: LinkState[] = [];
  const chunks: Buffer[] = [];
  let attached = 0;
  let detached = 0;
  const link = createSerialLink({
    target,
    framing: { baudRate: 115200, dataBits: 8, stopBits: 1, parity: "none" },
    opener: createSerialOpener(),
    lister: createSysfsPortLister(sysfs ?? {}),
    backoff: createBackoff({ initialMs: 100, maxMs: 200, floorMs: 100, random: () => 0.5 }),
    now: Date.now,
    log: silentLogger,
    attached: () => {
      attached += 1;
    },
    data: (chunk) => chunks.push(chunk),
    detached: () => {
      detached += 1;
    },
    state: (next) => states.push(next),
  });
  link.start();
  onTestFinished(() => link.stop());
  return {
    link,
    states,
    text: () => Buffer.concat(chunks).toString(),
    counts: () => ({ attached, detached }),
    /** Status transitions; the error of an offline link may change between attempts without one. */
    statuses: () =>
      states.map((state) => state.status).filter((status, index, all) => status !== all[index - 1]),
  };
}

describe("serial link over a real PTY", () => {
  it("goes offline when the device is unplugged and online again, capturing, when it is replugged", async () => {
    const pty = await startPty(join(makeTmpDir("link"), "ttyPP"));
    onTestFinished(() => pty.stop());
    const started = startLink({ path: pty.path });
    await until(() => started.link.state.status === "online", "online");
    await pty.write("before\n");
    await until(() => started.text() === "before\n", "the first line");

    await pty.unplug();
    await until(() => started.link.state.status === "offline", "offline");
    expect(started.link.state.error).toBeDefined();
    await sleep(400); // several reopen attempts against a missing device
    expect(started.link.state.status).toBe("offline");

    await pty.replug();
    await until(() => started.link.state.status === "online", "online again");
    await pty.write("after\n");
    await until(() => started.text() === "before\nafter\n", "the line after replug");
    expect(started.statuses()).toEqual(["online", "offline", "online"]);
    expect(started.counts()).toEqual({ attached: 2, detached: 1 });
  });

  it("says which USB device is missing, and opens it when it appears", async () => {
    const root = makeTmpDir("link");
    const sysfs = createFakeSysfs(root);
    const started = startLink({ match: { vendorId: "0b00", productId: "0055" } }, sysfs);
    await until(() => started.link.state.status === "offline", "offline");
    expect(started.link.state.error).toBe("no USB 0b00:0055 plugged in");

    const pty = await startPty(join(root, "pty-a"));
    onTestFinished(() => pty.stop());
    sysfs.plug("ttyUSB0", { vendorId: "0b00", productId: "0055" }, pty.path);
    await until(() => started.link.state.status === "online", "online");
    expect(started.link.state.path).toBe(join(sysfs.devRoot, "ttyUSB0"));
  });

  it("finds a USB device that re-enumerated under a new path", async () => {
    const root = makeTmpDir("link");
    const sysfs = createFakeSysfs(root);
    const first = await startPty(join(root, "pty-a"));
    onTestFinished(() => first.stop());
    sysfs.plug("ttyUSB0", { vendorId: "0b00", productId: "0055" }, first.path);
    const started = startLink({ match: { vendorId: "0b00", productId: "0055" } }, sysfs);
    await until(() => started.link.state.status === "online", "online");

    await first.unplug();
    sysfs.unplug("ttyUSB0");
    await until(() => started.link.state.status === "offline", "offline");

    const second = await startPty(join(root, "pty-b"));
    onTestFinished(() => second.stop());
    sysfs.plug("ttyUSB1", { vendorId: "0b00", productId: "0055" }, second.path);
    await until(() => started.link.state.status === "online", "online at the new path");
    expect(started.link.state.path).toBe(join(sysfs.devRoot, "ttyUSB1"));
    await second.write("moved\n");
    await until(() => started.text() === "moved\n", "capture at the new path");
  });

  it("goes offline when the device node disappears even though the port itself reports nothing", async () => {
    const root = makeTmpDir("link");
    const pty = await startPty(join(root, "pty"));
    onTestFinished(() => pty.stop());
    // The agent opens a node that links to the PTY; removing only the node leaves the PTY alive, so
    // node-serialport sees no hangup at all: only the watch on the node can notice.
    const node = join(root, "ttyNODE");
    symlinkSync(pty.path, node);
    const started = startLink({ path: node });
    await until(() => started.link.state.status === "online", "online");
    rmSync(node);
    await until(() => started.link.state.status === "offline", "offline after the node vanished");
    expect(started.link.state.error).toContain("the device node disappeared");
  });

  it("closes the port and stops trying when stopped", async () => {
    const pty = await startPty(join(makeTmpDir("link"), "ttyPP"));
    onTestFinished(() => pty.stop());
    const started = startLink({ path: pty.path });
    await until(() => started.link.state.status === "online", "online");
    await started.link.stop();
    expect(started.counts()).toEqual({ attached: 1, detached: 1 });
    const states = started.states.length;
    await sleep(300);
    expect(started.states.length).toBe(states);
  });
});
