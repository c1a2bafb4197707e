import { readdir, readFile, realpath } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { PortInfo, PortLister } from "./serial-port.js";

/** How far up from a tty's device node we look for the USB device that owns it. */
const MAX_DEPTH = 6;

/**
 * Lists serial ports with their USB identity from sysfs, the same files udev reads.
 *
 * Not `SerialPort.list()`: on Linux it spawns `udevadm info -e`, and where udevadm is missing (Android,
 * minimal images) the spawn error escapes as an uncaught exception and kills the process. sysfs is
 * there on every Linux and Android kernel, costs no process, and can be pointed at a test tree.
 */
export function createSysfsPortLister(options: { sysRoot?: string; devRoot?: string } = {}): PortLister {
  const sysRoot = options.sysRoot ?? "/sys";
  const devRoot = options.devRoot ?? "/dev";
  return {
    async list(): Promise<PortInfo[]> {
      let names: string[];
      try {
        names = await readdir(join(sysRoot, "class", "tty"));
      } catch {
        return [];
      }
      const ports: PortInfo[] = [];
      for (const name of names.sort()) {
        const port = await describe(sysRoot, devRoot, name);
        if (port !== undefined) ports.push(port);
      }
      return ports;
    },
  };
}

async function describe(sysRoot: string, devRoot: string, name: string): Promise<PortInfo | undefined> {
  let device: string;
  try {
    // Virtual terminals (tty0, ptmx…) have no `device` link: no hardware behind them.
    device = await realpath(join(sysRoot, "class", "tty", name, "device"));
  } catch {
    return undefined;
  }
  const port: PortInfo = { path: join(devRoot, name) };
  let dir = device;
  for (let depth = 0; depth < MAX_DEPTH && dir.length > sysRoot.length; depth += 1) {
    const vendorId = await readAttribute(dir, "idVendor");
    const productId = await readAttribute(dir, "idProduct");
    if (vendorId !== undefined && productId !== undefined) {
      port.vendorId = vendorId.toLowerCase();
      port.productId = productId.toLowerCase();
      const serialNumber = await readAttribute(dir, "serial");
      if (serialNumber !== undefined) port.serialNumber = serialNumber;
      break;
    }
    dir = dirname(dir);
  }
  return port;
}

async function readAttribute(dir: string, name: string): Promise<string | undefined> {
  try {
    const value = (await readFile(join(dir, name), "utf8")).trim();
    return value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}
