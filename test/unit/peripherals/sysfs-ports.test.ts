import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findPort } from "../../../src/peripherals/serial-port.js";
import { createSysfsPortLister } from "../../../src/peripherals/sysfs-ports.js";
import { createFakeSysfs } from "../../helpers/fake-sysfs.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

describe("sysfs port lister", () => {
  it("lists ttys with a device behind them, with the USB identity of the adapter that owns them", async () => {
    const sysfs = createFakeSysfs(makeTmpDir("sysfs"));
    sysfs.plug("ttyUSB0", { vendorId: "0B00", productId: "0055", serial: "PP-1" });
    sysfs.plug("ttyS1", undefined);
    sysfs.addVirtual("tty0");
    const ports = await createSysfsPortLister(sysfs).list();
    expect(ports).toEqual([
      { path: join(sysfs.devRoot, "ttyS1") },
      { path: join(sysfs.devRoot, "ttyUSB0"), vendorId: "0b00", productId: "0055", serialNumber: "PP-1" },
    ]);
  });

  it("returns no ports when the sysfs directory does not exist", async () => {
    const lister = createSysfsPortLister({ sysRoot: join(makeTmpDir("sysfs"), "missing") });
    expect(await lister.list()).toEqual([]);
  });

  it("finds a port by vendor and product case-insensitively, and by serial number when one is given", async () => {
    const sysfs = createFakeSysfs(makeTmpDir("sysfs"));
    sysfs.plug("ttyUSB0", { vendorId: "0b00", productId: "0055", serial: "A" });
    sysfs.plug("ttyUSB1", { vendorId: "0b00", productId: "0055", serial: "B" });
    const ports = await createSysfsPortLister(sysfs).list();
    expect(findPort(ports, { vendorId: "0B00", productId: "0055" })?.path).toBe(
      join(sysfs.devRoot, "ttyUSB0"),
    );
    expect(findPort(ports, { vendorId: "0b00", productId: "0055", serialNumber: "B" })?.path).toBe(
      join(sysfs.devRoot, "ttyUSB1"),
    );
    expect(findPort(ports, { vendorId: "0b00", productId: "0056" })).toBeUndefined();
  });
});
