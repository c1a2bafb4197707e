import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * A sysfs tree laid out as the kernel lays out a USB serial adapter
 * (class/tty/ttyUSB0/device → devices/…/1-1/1-1:1.0/ttyUSB0, with idVendor in 1-1), and a /dev
 * directory whose nodes are symlinks to real PTYs. Plugging moves a device to another tty name.
 */
export function createFakeSysfs(root: string) {
  const sysRoot = join(root, "sys");
  const devRoot = join(root, "dev");
  mkdirSync(join(sysRoot, "class", "tty"), { recursive: true });
  mkdirSync(devRoot, { recursive: true });

  return {
    sysRoot,
    devRoot,
    /** A tty with a device node; `usb` gives it a USB identity, `target` makes /dev/{tty} a link to a PTY. */
    plug(
      tty: string,
      usb: { vendorId: string; productId: string; serial?: string } | undefined,
      target?: string,
    ) {
      const usbDevice = join(sysRoot, "devices", "usb1", `1-${tty}`);
      const iface = join(usbDevice, `1-${tty}:1.0`, tty);
      mkdirSync(iface, { recursive: true });
      if (usb !== undefined) {
        writeFileSync(join(usbDevice, "idVendor"), `${usb.vendorId}\n`);
        writeFileSync(join(usbDevice, "idProduct"), `${usb.productId}\n`);
        if (usb.serial !== undefined) writeFileSync(join(usbDevice, "serial"), `${usb.serial}\n`);
      }
      const classDir = join(sysRoot, "class", "tty", tty);
      mkdirSync(classDir, { recursive: true });
      symlinkSync(iface, join(classDir, "device"));
      if (target !== undefined) symlinkSync(target, join(devRoot, tty));
      return join(devRoot, tty);
    },
    /** A virtual terminal: listed by the kernel, but with no device behind it. */
    addVirtual(tty: string) {
      mkdirSync(join(sysRoot, "class", "tty", tty), { recursive: true });
    },
    unplug(tty: string) {
      rmSync(join(sysRoot, "class", "tty", tty), { recursive: true, force: true });
      rmSync(join(sysRoot, "devices", "usb1", `1-${tty}`), { recursive: true, force: true });
      rmSync(join(devRoot, tty), { force: true });
    },
  };
}
