/**
 * The hardware boundary, kept as small as node-serialport's own BindingInterface: the link code
 * depends only on these types, and the real binding, the mock binding and the sysfs lister are chosen
 * at the edge (main.ts, tests). The doc comments are the contract every implementation keeps.
 */

export interface SerialOpenOptions {
  path: string;
  baudRate: number;
  dataBits: 5 | 6 | 7 | 8;
  stopBits: 1 | 2;
  parity: "none" | "even" | "odd";
}

export interface SerialEvents {
  /** Bytes as they arrive, in order; never called after `closed`. */
  data(chunk: Buffer): void;
  /**
   * Called exactly once when the port closes for any reason after a successful open: unplugged
   * (a hangup, or the device node disappearing, whichever shows first),
   * I/O error, or our own close(). `error` is undefined only for our own close().
   */
  closed(error: Error | undefined): void;
}

export interface SerialConnection {
  readonly path: string;
  /** Resolves when the bytes were handed to the OS; rejects if the port is closed or failed. */
  write(bytes: Uint8Array): Promise<void>;
  /** Idempotent; resolves once the port is closed (and `closed` was called). */
  close(): Promise<void>;
}

export interface SerialOpener {
  /** Opens the port or rejects with an error naming the path (missing device, permission, busy). */
  open(options: SerialOpenOptions, events: SerialEvents): Promise<SerialConnection>;
}

/** A serial port the system knows, with its USB identity when it has one. */
export interface PortInfo {
  path: string;
  /** Lower-case 4-digit hex, as sysfs and `lsusb` print them. */
  vendorId?: string;
  productId?: string;
  serialNumber?: string;
}

export interface PortLister {
  /** Ports present now. Never throws for a missing or unreadable system directory: that is no ports. */
  list(): Promise<PortInfo[]>;
}

export interface UsbMatch {
  vendorId: string;
  productId: string;
  serialNumber?: string;
}

/** The first port with this USB identity (ids compared case-insensitively), if one is plugged in. */
export function findPort(ports: readonly PortInfo[], match: UsbMatch): PortInfo | undefined {
  const vendorId = match.vendorId.toLowerCase();
  const productId = match.productId.toLowerCase();
  return ports.find(
    (port) =>
      port.vendorId?.toLowerCase() === vendorId &&
      port.productId?.toLowerCase() === productId &&
      (match.serialNumber === undefined || port.serialNumber === match.serialNumber),
  );
}

export function describeMatch(match: UsbMatch): string {
  const serial = match.serialNumber === undefined ? "" : ` serial ${match.serialNumber}`;
  return `USB ${match.vendorId}:${match.productId}${serial}`;
}
