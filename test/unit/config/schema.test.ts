import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/load.js";
import { Config, type ConfigInput } from "../../../src/config/schema.js";

const EXAMPLES = new URL("../../../firmware-manifests/examples/", import.meta.url);

function example(name: string): unknown {
  return JSON.parse(readFileSync(new URL(name, EXAMPLES), "utf8"));
}

const minimal: ConfigInput = {
  deviceId: "POS-0001",
  tenant: "acme",
  mqtt: { urls: ["mqtts://broker-a:8883"] },
};

function problemsOf(raw: unknown): { path: string; message: string }[] {
  const result = parseConfig(raw);
  if (result.ok) throw new Error("expected the config to be refused");
  return result.error;
}

function withPeripherals(peripherals: unknown[]): unknown {
  return { ...minimal, peripherals };
}

describe("Config schema", () => {
  it("fills every default when only deviceId, tenant and one broker URL are given", () => {
    expect(Config.parse(minimal)).toEqual({
      deviceId: "POS-0001",
      tenant: "acme",
      model: "unknown",
      dataDir: "/var/lib/pos-agent",
      mqtt: {
        urls: ["mqtts://broker-a:8883"],
        protocolVersion: 5,
        keepaliveSec: 30,
        willDelaySec: 30,
        groups: [],
        ackTimeoutSec: 30,
        maxInflight: 64,
        reconnect: { minSec: 1, maxSec: 60 },
        sessionExpirySec: 0,
      },
      intake: { host: "127.0.0.1", port: 7311 },
      telemetry: { intervalSec: 60 },
      outbox: { maxBytes: 104857600, maxMessageBytes: 65536 },
      peripherals: [],
      alerts: { diskUsedPct: 90, memUsedPct: 92, batteryPct: 15, cpuTempC: 85, minDurationSec: 60 },
      health: { processes: [], slowSampleSec: 300, bootIdFile: "/proc/sys/kernel/random/boot_id" },
      trust: { releaseRoots: [], operatorRoots: [], threshold: 1 },
      commands: { requireSignature: ["update.*", "agent.restart", "device.reboot", "logs.upload"] },
      components: {},
      updates: { lockFiles: [], minBatteryPct: 30 },
      log: { level: "info" },
    });
  });

  it("accepts the committed minimal example", () => {
    expect(parseConfig(example("config.minimal.json")).ok).toBe(true);
  });

  it("accepts the contract's example and keeps its values", () => {
    const result = parseConfig(example("config.example.json"));
    expect(
      result.ok && result.value.peripherals.map((p) => [p.name, p.driver, p.baudRate, p.dataBits]),
    ).toEqual([
      ["printer", "escpos", 115200, 8],
      ["pinpad", "lines", 115200, 8],
      ["cardreader", "jsonl", 115200, 8],
    ]);
  });

  it("fills the other defaults of a partly given section", () => {
    const config = Config.parse({ ...minimal, outbox: { maxBytes: 1048576 }, components: { app: {} } });
    expect(config.outbox).toEqual({ maxBytes: 1048576, maxMessageBytes: 65536 });
    expect(config.components).toEqual({ app: { keep: 2 } });
  });

  it("requires deviceId, tenant and mqtt.urls", () => {
    expect(problemsOf({})).toEqual([
      { path: "deviceId", message: "is required" },
      { path: "tenant", message: "is required" },
      { path: "mqtt", message: "is required" },
    ]);
    expect(problemsOf({ ...minimal, mqtt: { urls: [] } })).toEqual([
      { path: "mqtt.urls", message: "needs at least one broker URL" },
    ]);
  });

  it("refuses a deviceId outside [A-Za-z0-9._-]{1,64}", () => {
    for (const deviceId of ["POS 1", "pos/1", "a+b", "", "x".repeat(65)]) {
      expect(problemsOf({ ...minimal, deviceId }).map((p) => p.path)).toEqual(["deviceId"]);
    }
    expect(parseConfig({ ...minimal, deviceId: "A.b_c-9" }).ok).toBe(true);
  });

  it("refuses broker URLs with another scheme or no host", () => {
    const problems = problemsOf({ ...minimal, mqtt: { urls: ["http://broker", "mqtt://", "wss://b/mqtt"] } });
    expect(problems.map((p) => p.path)).toEqual(["mqtt.urls[0]", "mqtt.urls[1]"]);
    expect(problems[0]?.message).toMatch(/mqtt:\/\//);
  });

  it("refuses credentials inside a broker URL", () => {
    expect(problemsOf({ ...minimal, mqtt: { urls: ["mqtts://dev:secret@broker:8883"] } })).toEqual([
      { path: "mqtt.urls[0]", message: expect.stringMatching(/mqtt.passwordFile/) },
    ]);
  });

  it("refuses a plain-text broker URL when TLS files or credentials are configured", () => {
    const problems = problemsOf({
      ...minimal,
      mqtt: { urls: ["mqtts://a:8883", "mqtt://b:1883", "ws://c/mqtt"], username: "dev", passwordFile: "pw" },
    });
    expect(problems.map((p) => p.path)).toEqual(["mqtt.urls[1]", "mqtt.urls[2]"]);
    expect(problems[0]?.message).toMatch(/mqtts:\/\//);
    expect(parseConfig({ ...minimal, mqtt: { urls: ["mqtt://b:1883"] } }).ok).toBe(true);
  });

  it("refuses an intake host that is not a loopback address", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) {
      expect(parseConfig({ ...minimal, intake: { host } }).ok).toBe(true);
    }
    for (const host of ["0.0.0.0", "192.168.1.5", "127.0.0.256", "::", "example.com"]) {
      const problems = problemsOf({ ...minimal, intake: { host } });
      expect(problems).toEqual([{ path: "intake.host", message: expect.stringMatching(/loopback/) }]);
    }
  });

  it("refuses outbox.maxMessageBytes larger than outbox.maxBytes", () => {
    expect(problemsOf({ ...minimal, outbox: { maxBytes: 65536, maxMessageBytes: 100000 } })).toEqual([
      { path: "outbox.maxMessageBytes", message: "must not exceed outbox.maxBytes" },
    ]);
  });

  it("keeps outbox sizes within their bounds", () => {
    const problems = problemsOf({ ...minimal, outbox: { maxBytes: 1000, maxMessageBytes: 300000 } });
    expect(problems).toEqual([
      { path: "outbox.maxBytes", message: "must be at least 65536" },
      { path: "outbox.maxMessageBytes", message: "must be at most 262144" },
    ]);
  });

  it("requires tls cert and key together", () => {
    expect(problemsOf({ ...minimal, mqtt: { ...minimal.mqtt, tls: { cert: "c.pem" } } })).toEqual([
      { path: "mqtt.tls.key", message: "is required when cert is set" },
    ]);
    expect(problemsOf({ ...minimal, mqtt: { ...minimal.mqtt, tls: { key: "k.pem" } } })).toEqual([
      { path: "mqtt.tls.cert", message: "is required when key is set" },
    ]);
  });

  it("refuses a peripheral with both or neither of path and match", () => {
    const problems = problemsOf(
      withPeripherals([
        { name: "a", path: "/dev/ttyS0", driver: "lines" },
        { name: "b", path: "/dev/ttyS1", match: { vendorId: "0b00", productId: "0055" }, driver: "lines" },
        { name: "c", driver: "lines" },
      ]),
    );
    expect(problems).toEqual([
      { path: "peripherals[1]", message: "needs exactly one of path or match" },
      { path: "peripherals[2]", message: "needs exactly one of path or match" },
    ]);
  });

  it("reports a duplicate peripheral name at the later entry", () => {
    const problems = problemsOf(
      withPeripherals([
        { name: "printer", path: "/dev/ttyS0", driver: "escpos" },
        { name: "printer", path: "/dev/ttyS1", driver: "escpos" },
      ]),
    );
    expect(problems).toEqual([
      { path: "peripherals[1].name", message: 'duplicate peripheral name "printer" (also peripherals[0])' },
    ]);
  });

  it("checks serial line settings and USB ids", () => {
    const problems = problemsOf(
      withPeripherals([
        {
          name: "scanner",
          match: { vendorId: "0b0", productId: "zzzz" },
          dataBits: 9,
          stopBits: 3,
          parity: "mark",
          driver: "modem",
          baudRate: 0,
        },
      ]),
    );
    expect(problems.map((p) => p.path).sort()).toEqual(
      [
        "peripherals[0].match.vendorId",
        "peripherals[0].match.productId",
        "peripherals[0].dataBits",
        "peripherals[0].stopBits",
        "peripherals[0].parity",
        "peripherals[0].driver",
        "peripherals[0].baudRate",
      ].sort(),
    );
  });

  it("names a bad delimiter escape and a level pattern that is not a regular expression", () => {
    const problems = problemsOf(
      withPeripherals([
        {
          name: "pinpad",
          path: "/dev/ttyUSB0",
          driver: "lines",
          delimiter: "\\q",
          levels: [
            { level: "error", regex: "^E/" },
            { level: "warn", regex: "([W]" },
          ],
        },
      ]),
    );
    expect(problems).toEqual([
      { path: "peripherals[0].delimiter", message: expect.stringContaining("unknown escape \\q") },
      {
        path: "peripherals[0].levels[1].regex",
        message: expect.stringMatching(/^is not a valid regular expression: /),
      },
    ]);
  });

  it("reads delimiter escapes and keeps configured level patterns", () => {
    const result = parseConfig(
      withPeripherals([
        {
          name: "pinpad",
          path: "/dev/ttyUSB0",
          driver: "lines",
          delimiter: "\\r\\n",
          levels: [{ level: "error", regex: "FAIL" }],
        },
      ]),
    );
    expect(result.ok && result.value.peripherals[0]).toMatchObject({
      delimiter: "\\r\\n",
      levels: [{ level: "error", regex: "FAIL" }],
    });
  });

  it("refuses a maintenance window that is not HH:MM", () => {
    const problems = problemsOf({
      ...minimal,
      updates: { maintenanceWindow: { start: "1:00", end: "24:00" } },
    });
    expect(problems.map((p) => p.path)).toEqual([
      "updates.maintenanceWindow.start",
      "updates.maintenanceWindow.end",
    ]);
  });

  it("refuses a component health check with neither command nor url", () => {
    expect(problemsOf({ ...minimal, components: { app: { healthCheck: { timeoutSec: 5 } } } })).toEqual([
      { path: "components.app.healthCheck", message: "needs a command or a url" },
    ]);
  });

  it("refuses component names outside the name charset", () => {
    const problems = problemsOf({ ...minimal, components: { "pos app": {} } });
    expect(problems).toEqual([
      { path: 'components["pos app"]', message: expect.stringMatching(/^invalid name/) },
    ]);
  });

  it("refuses reconnect.maxSec below reconnect.minSec", () => {
    expect(
      problemsOf({ ...minimal, mqtt: { ...minimal.mqtt, reconnect: { minSec: 10, maxSec: 5 } } }),
    ).toEqual([{ path: "mqtt.reconnect.maxSec", message: "must be at least minSec" }]);
  });
});
