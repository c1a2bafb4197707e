import { z } from "zod";
import { Component } from "./component-schema.js";
import {
  BrokerUrl,
  FilePath,
  fieldsValid,
  isTlsUrl,
  LoopbackHost,
  MaintenanceWindow,
  Name,
  NonEmptyString,
  Percent,
  RegexSource,
} from "./fields.js";
import { Peripherals } from "./peripheral-schema.js";

export const DEFAULT_DATA_DIR = "/var/lib/pos-agent";

export const DEFAULT_REQUIRE_SIGNATURE = [
  "update.*",
  "agent.restart",
  "device.reboot",
  "logs.upload",
] as const;

export const MqttTls = z
  .strictObject({
    ca: FilePath.exactOptional().describe(
      "PEM file with the CA certificates that sign the broker's certificate.",
    ),
    cert: FilePath.exactOptional().describe("PEM client certificate for mutual TLS; needs key."),
    key: FilePath.exactOptional().describe("PEM private key for the client certificate; needs cert."),
  })
  .superRefine((tls, ctx) => {
    if (tls.cert !== undefined && tls.key === undefined) {
      ctx.addIssue({ code: "custom", path: ["key"], message: "is required when cert is set" });
    }
    if (tls.key !== undefined && tls.cert === undefined) {
      ctx.addIssue({ code: "custom", path: ["cert"], message: "is required when key is set" });
    }
  })
  .describe("TLS files; relative paths are resolved against the config file's directory.");

const Reconnect = z
  .strictObject({
    minSec: z.number().min(1).default(1).describe("First delay before reconnecting after a lost connection."),
    maxSec: z.number().min(1).default(60).describe("Upper bound of the growing (jittered) reconnect delay."),
  })
  .refine((r) => r.maxSec >= r.minSec, {
    message: "must be at least minSec",
    path: ["maxSec"],
    when: fieldsValid,
  })
  .prefault({})
  .describe("Agent-internal: backoff between reconnect attempts.");

const Mqtt = z
  .strictObject({
    urls: z
      .array(BrokerUrl)
      .min(1, "needs at least one broker URL")
      .describe("Broker URLs, tried in turn (failover)."),
    protocolVersion: z
      .literal([5, 4])
      .default(5)
      .describe("5 (MQTT 5), or 4 (MQTT 3.1.1) for brokers without v5."),
    tls: MqttTls.exactOptional(),
    username: NonEmptyString.exactOptional().describe("Broker user name."),
    passwordFile: FilePath.exactOptional().describe(
      "File holding the broker password (trailing newline ignored).",
    ),
    keepaliveSec: z.int().min(0).max(65535).default(30).describe("MQTT keepalive; 0 turns it off."),
    willDelaySec: z
      .int()
      .min(0)
      .max(4294967295)
      .default(30)
      .describe(
        "MQTT 5 Will Delay: how long a lost connection may last before 'lost' is published; 0 = at once.",
      ),
    groups: z
      .array(Name)
      .default(() => [])
      .describe("Groups this device belongs to (group command topics)."),
    ackTimeoutSec: z
      .int()
      .min(1)
      .default(30)
      .describe("Agent-internal: reconnect if connected but no PUBACK arrived for this long."),
    maxInflight: z
      .int()
      .min(1)
      .max(1000)
      .default(64)
      .describe("Agent-internal: how many published messages may await their PUBACK at once."),
    reconnect: Reconnect,
    sessionExpirySec: z
      .int()
      .min(0)
      .max(4294967295)
      .default(0)
      .describe("Agent-internal: MQTT 5 Session Expiry Interval; 0 means use willDelaySec."),
  })
  .superRefine((mqtt, ctx) => {
    // TLS files or credentials with a plain-text URL would send the password in clear, or silently
    // skip the certificate checks the operator asked for.
    const secured = mqtt.tls !== undefined || mqtt.username !== undefined || mqtt.passwordFile !== undefined;
    if (!secured) return;
    mqtt.urls.forEach((url, index) => {
      if (!isTlsUrl(url)) {
        ctx.addIssue({
          code: "custom",
          path: ["urls", index],
          message: "must be mqtts://, ssl:// or wss:// when tls, username or passwordFile is set",
        });
      }
    });
  })
  .describe("Connection to the MQTT broker.");

const Intake = z
  .strictObject({
    host: LoopbackHost.default("127.0.0.1").describe("Loopback address the local intake API listens on."),
    port: z.int().min(0).max(65535).default(7311).describe("TCP port of the intake API; 0 disables it."),
  })
  .prefault({})
  .describe("Local HTTP API for the terminal's own apps (logs and events).");

const Telemetry = z
  .strictObject({
    intervalSec: z.number().min(1).default(60).describe("Seconds between metric samples."),
  })
  .prefault({})
  .describe("Host metrics reporting.");

const Outbox = z
  .strictObject({
    maxBytes: z
      .int()
      .min(65536)
      .default(104857600)
      .describe(
        "Most bytes the outbox holds; when full the oldest telemetry, then logs, then events are dropped.",
      ),
    maxMessageBytes: z
      .int()
      .min(1024)
      .max(262144)
      .default(65536)
      .describe("Largest MQTT message the agent publishes; batches are cut to fit. At most maxBytes."),
  })
  .refine((outbox) => outbox.maxMessageBytes <= outbox.maxBytes, {
    message: "must not exceed outbox.maxBytes",
    path: ["maxMessageBytes"],
    when: fieldsValid,
  })
  .prefault({})
  .describe("Local store-and-forward queue for records.");

const Alerts = z
  .strictObject({
    diskUsedPct: Percent.default(90).describe("Alert when the data disk is fuller than this (percent)."),
    memUsedPct: Percent.default(92).describe("Alert when memory use exceeds this (percent)."),
    batteryPct: Percent.default(15).describe("Alert when the battery falls below this (percent)."),
    cpuTempC: z.number().default(85).describe("Alert when the CPU is hotter than this (degrees Celsius)."),
    minDurationSec: z
      .int()
      .min(0)
      .max(86_400)
      .default(60)
      .describe(
        "A threshold must stay crossed (or cleared) this long before an alert is raised (or cleared).",
      ),
  })
  .prefault({})
  .describe("Thresholds for health alerts (events); each clears 5 points (or 5 °C) back past its threshold.");

const WatchedProcess = z
  .strictObject({
    name: z
      .string()
      .regex(
        /^[A-Za-z0-9_-]{1,64}$/,
        "must be 1-64 characters of A-Z a-z 0-9 _ - (it is one segment of a metric name)",
      )
      .describe("Name used in metrics (proc.{name}.alive) and events."),
    match: RegexSource.describe("Regular expression tested against each process's full command line."),
  })
  .describe("A process to watch (the POS app).");

const Health = z
  .strictObject({
    processes: z
      .array(WatchedProcess)
      .max(16, "at most 16 processes")
      .default(() => [])
      .refine((list) => new Set(list.map((entry) => entry.name)).size === list.length, {
        error: "process names must be unique",
        when: (payload) => Array.isArray(payload.value),
      })
      .describe("Processes whose liveness, restarts and memory are reported."),
    slowSampleSec: z
      .int()
      .min(10)
      .max(86_400)
      .default(300)
      .describe("Readers that cost more (Wi-Fi signal, battery health) run at most this often."),
    bootIdFile: FilePath.default("/proc/sys/kernel/random/boot_id").describe(
      "Where the kernel's boot id is read, to tell a device reboot from an agent restart.",
    ),
  })
  .prefault({})
  .describe("Host health sampling.");

const Trust = z
  .strictObject({
    releaseRoots: z
      .array(FilePath)
      .default(() => [])
      .describe("PEM files of root certificates trusted to sign release manifests."),
    operatorRoots: z
      .array(FilePath)
      .default(() => [])
      .describe("PEM files of root certificates trusted to sign commands."),
    threshold: z
      .int()
      .min(1)
      .default(1)
      .describe("How many distinct valid signers a release or command needs."),
  })
  .prefault({})
  .describe(
    "Trust roots for signed envelopes; relative paths are resolved against the config file's directory.",
  );

const Commands = z
  .strictObject({
    requireSignature: z
      .array(NonEmptyString)
      .default(() => [...DEFAULT_REQUIRE_SIGNATURE])
      .describe('Commands that must arrive signed by an operator; a trailing ".*" matches a prefix.'),
  })
  .prefault({})
  .describe("Command authorisation.");

const Updates = z
  .strictObject({
    maintenanceWindow: MaintenanceWindow.exactOptional(),
    lockFiles: z
      .array(FilePath)
      .default(() => [])
      .describe("While any of these files exists, updates are deferred (e.g. a payment in progress)."),
    minBatteryPct: Percent.default(30).describe("Defer updates while the battery is below this (percent)."),
  })
  .prefault({})
  .describe("When updates may be installed.");

const Log = z
  .strictObject({
    level: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace"])
      .default("info")
      .describe("The agent's own log level."),
  })
  .prefault({})
  .describe("The agent's own logging.");

export const Config = z
  .strictObject({
    deviceId: Name.describe("This terminal's id; also the MQTT client id."),
    tenant: Name.describe("The tenant (merchant or estate) this terminal belongs to."),
    model: NonEmptyString.default("unknown").describe(
      "Hardware model, matched against manifests' compatible.models.",
    ),
    dataDir: FilePath.default(DEFAULT_DATA_DIR).describe("SQLite database, releases and staging live here."),
    mqtt: Mqtt,
    intake: Intake,
    telemetry: Telemetry,
    outbox: Outbox,
    peripherals: Peripherals,
    alerts: Alerts,
    health: Health,
    trust: Trust,
    commands: Commands,
    components: z
      .record(Name, Component)
      .default(() => ({}))
      .describe("Components the agent installs and updates, by name."),
    updates: Updates,
    log: Log,
  })
  .describe("pos-agent configuration.");

export type Config = z.infer<typeof Config>;
export type ConfigInput = z.input<typeof Config>;
