import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SerialPortMock } from "serialport";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { createSerialOpener } from "../../src/peripherals/node-serialport.js";
import type { SerialConnection, SerialOpener } from "../../src/peripherals/serial-port.js";
import { startPty } from "../helpers/pty.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const FRAMING = { baudRate: 115200, dataBits: 8, stopBits: 1, parity: "none" } as const;

/** A device on the far side of a port, as each implementation lets a test drive it. */
interface Device {
  path: string;
  /** Bytes from the device to the agent. */
  send(bytes: string): Promise<void>;
  /** What the agent wrote, as the device saw it. */
  received(): Promise<string>;
  /** Absent where the implementation cannot unplug. */
  unplug?: () => Promise<void>;
}

interface Implementation {
  name: string;
  canUnplug: boolean;
  opener(): SerialOpener;
  device(): Promise<Device>;
  missingPath(): string;
}

// The ESM build of @serialport/binding-mock would be a second registry; use the one SerialPortMock uses.
const MockBinding = SerialPortMock.binding;

/** The mock binding hides its port objects; remember the last one opened to play the device. */
let lastMockPort: SerialPortMock | undefined;
class RememberedMock extends SerialPortMock {
  constructor(...args: ConstructorParameters<typeof SerialPortMock>) {
    super(...args);
    lastMockPort = this;
  }
}
function mockBinding() {
  const binding = lastMockPort?.port;
  if (binding === undefined) throw new Error("the mock port is not open");
  return binding;
}

const implementations: Implementation[] = [
  {
    name: "node-serialport over a socat PTY",
    canUnplug: true,
    opener: () => createSerialOpener(),
    async device() {
      const pty = await startPty(join(makeTmpDir("opener"), "tty"));
      onTestFinished(() => pty.stop());
      return {
        path: pty.path,
        send: (bytes) => pty.write(Buffer.from(bytes, "latin1")),
        received: async () => pty.received().toString("latin1"),
        unplug: () => pty.unplug(),
      };
    },
    missingPath: () => join(makeTmpDir("opener"), "no-such-tty"),
  },
  {
    name: "node-serialport over the mock binding",
    canUnplug: false,
    opener: () => createSerialOpener(RememberedMock),
    async device() {
      const path = "/dev/mock-tty";
      MockBinding.createPort(path, { record: true });
      return {
        path,
        send: async (bytes) => mockBinding().emitData(Buffer.from(bytes, "latin1")),
        received: async () => mockBinding().recording.toString("latin1"),
      };
    },
    missingPath: () => "/dev/mock-missing",
  },
];

// The mock binding keeps its ports in a module-global registry (STYLE.md: the part not to copy).
afterEach(() => {
  MockBinding.reset();
  lastMockPort = undefined;
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function open(implementation: Implementation, device: Device) {
  const data: Buffer[] = [];
  const closes: Array<Error | undefined> = [];
  const connection: SerialConnection = await implementation
    .opener()
    .open(
      { path: device.path, ...FRAMING },
      { data: (chunk) => data.push(chunk), closed: (error) => closes.push(error) },
    );
  onTestFinished(() => connection.close());
  return { connection, data, closes, text: () => Buffer.concat(data).toString("latin1") };
}

describe.each(implementations)("SerialOpener contract: $name", (implementation) => {
  it("delivers the device's bytes in order and writes the agent's bytes to the device", async () => {
    const device = await implementation.device();
    const port = await open(implementation, device);
    await device.send("hello\n");
    await device.send("\x00\xff binary\n");
    await until(() => port.text() === "hello\n\x00\xff binary\n", "the device's bytes");
    await port.connection.write(Uint8Array.from([0x10, 0x04, 0x01]));
    await until(async () => (await device.received()) === "\x10\x04\x01", "the agent's bytes");
  });

  it("calls closed once without an error when the agent closes the port", async () => {
    const device = await implementation.device();
    const port = await open(implementation, device);
    await port.connection.close();
    await port.connection.close();
    expect(port.closes).toEqual([undefined]);
    await expect(port.connection.write(Uint8Array.of(1))).rejects.toThrow(/closed/);
  });

  it("rejects naming the path when the device does not exist", async () => {
    const path = implementation.missingPath();
    await expect(
      implementation.opener().open({ path, ...FRAMING }, { data: () => {}, closed: () => {} }),
    ).rejects.toThrow(path);
  });
});

// The mock binding has no way to pull a port from under an open stream; the PTY can.
describe.each(implementations.filter((implementation) => implementation.canUnplug))(
  "SerialOpener unplug: $name",
  (implementation) => {
    it("calls closed with an error when the device is unplugged", async () => {
      const device = await implementation.device();
      const port = await open(implementation, device);
      await device.unplug?.();
      await until(() => port.closes.length === 1, "the close");
      expect(port.closes[0]).toBeInstanceOf(Error);
    });
  },
);
