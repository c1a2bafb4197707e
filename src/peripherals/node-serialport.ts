import { existsSync } from "node:fs";
import { SerialPort } from "serialport";
import { errorMessage } from "../shared/errors.js";
import type { SerialConnection, SerialEvents, SerialOpener, SerialOpenOptions } from "./serial-port.js";

/** What we use of a node-serialport stream; `SerialPort` and `SerialPortMock` both are one. */
interface PortStream {
  readonly isOpen: boolean;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "close", listener: (error: Error | null) => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  write(data: Buffer, callback: (error: Error | null | undefined) => void): boolean;
  close(callback: (error?: Error | null) => void): void;
  removeAllListeners(): unknown;
}

interface PortOptions {
  path: string;
  baudRate: number;
  dataBits: 5 | 6 | 7 | 8;
  stopBits: 1 | 2;
  parity: "none" | "even" | "odd";
  xon: boolean;
  xoff: boolean;
  rtscts: boolean;
  hupcl: boolean;
}

/** `SerialPort` from "serialport", or `SerialPortMock` for unit tests: both take the same options. */
export type SerialPortClass = new (
  options: PortOptions,
  openCallback?: (error: Error | null) => void,
) => PortStream;

/** How often an open port's device node is checked (a hangup the bindings never saw). */
const NODE_WATCH_MS = 1000;

/**
 * The opener over node-serialport. It reads with the stream's `data` events and no serialport parser
 * (those buffer without limit, REFERENCE 1); framing is ours and bounded.
 */
export function createSerialOpener(Port: SerialPortClass = SerialPort): SerialOpener {
  return {
    open(options: SerialOpenOptions, events: SerialEvents): Promise<SerialConnection> {
      return new Promise((resolve, reject) => openPort(Port, options, events, resolve, reject));
    },
  };
}

function openPort(
  Port: SerialPortClass,
  options: SerialOpenOptions,
  events: SerialEvents,
  resolve: (connection: SerialConnection) => void,
  reject: (error: Error) => void,
): void {
  let closed = false;
  let closing: Promise<void> | undefined;

  let nodeWatch: NodeJS.Timeout | undefined;
  const finish = (error: Error | undefined) => {
    if (closed) return;
    closed = true;
    clearInterval(nodeWatch);
    events.closed(error);
  };

  const opened = new Port(
    {
      path: options.path,
      baudRate: options.baudRate,
      dataBits: options.dataBits,
      stopBits: options.stopBits,
      parity: options.parity,
      // No software or hardware flow control: the printer's XON/XOFF are dropped by its parser.
      xon: false,
      xoff: false,
      rtscts: false,
      hupcl: false,
    },
    (error) => {
      if (error === null) {
        // The bindings learn of an unplug from a hangup on the descriptor, which a loaded machine
        // sometimes never delivers; the device node going away is the other sign, checked each second.
        nodeWatch = setInterval(() => {
          if (closed || existsSync(options.path)) return;
          finish(new Error(`${options.path}: device disconnected (the device node disappeared)`));
          opened.close(() => {});
        }, NODE_WATCH_MS);
        nodeWatch.unref();
        resolve(connection);
        return;
      }
      closed = true;
      opened.removeAllListeners();
      reject(new Error(`${options.path}: cannot open: ${errorMessage(error)}`, { cause: error }));
    },
  );
  opened.on("data", (chunk: Buffer) => {
    if (!closed) events.data(chunk);
  });
  // Unplugging shows as `close` with an error (`disconnected: true`); a read or write failure as
  // `error` first. Either way the port is gone for us.
  opened.on("close", (error: (Error & { disconnected?: boolean }) | null) => {
    if (error?.disconnected === true) {
      finish(new Error(`${options.path}: device disconnected (${error.message})`, { cause: error }));
    } else {
      finish(error ?? (closing === undefined ? new Error(`${options.path}: closed`) : undefined));
    }
  });
  opened.on("error", (error: Error) => {
    if (!opened.isOpen) return;
    finish(new Error(`${options.path}: ${errorMessage(error)}`, { cause: error }));
    opened.close(() => {});
  });

  const connection: SerialConnection = {
    path: options.path,
    write(bytes: Uint8Array): Promise<void> {
      return new Promise((resolveWrite, rejectWrite) => {
        if (closed || !opened.isOpen) {
          rejectWrite(new Error(`${options.path}: port is closed`));
          return;
        }
        opened.write(Buffer.from(bytes), (error) => {
          if (error) rejectWrite(new Error(`${options.path}: write failed: ${errorMessage(error)}`));
          else resolveWrite();
        });
      });
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolveClose) => {
        if (!opened.isOpen) {
          finish(undefined);
          resolveClose();
          return;
        }
        opened.close(() => {
          finish(undefined);
          resolveClose();
        });
      });
      return closing;
    },
  };
}
