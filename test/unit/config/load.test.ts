import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ConfigProblem,
  defaultConfigPath,
  formatProblems,
  loadConfig,
  parseConfig,
} from "../../../src/config/load.js";

const minimal = { deviceId: "POS-0001", tenant: "acme", mqtt: { urls: ["mqtt://127.0.0.1:1883"] } };

function problemsOf(raw: unknown): ConfigProblem[] {
  const result = parseConfig(raw);
  if (result.ok) throw new Error("expected the config to be refused");
  return result.error;
}

describe("parseConfig", () => {
  it("reports every unknown key at its path", () => {
    const problems = problemsOf({
      ...minimal,
      colour: "red",
      mqtt: { ...minimal.mqtt, bogus: 1, reconnect: { minSec: 1, jitter: true } },
      peripherals: [{ name: "p", path: "/dev/ttyS0", driver: "lines", speed: 9600 }],
      components: { app: { healthCheck: { url: "http://127.0.0.1/health", retries: 3 } } },
    });
    expect(problems.map((p) => `${p.path}: ${p.message}`).sort()).toEqual(
      [
        "colour: unknown key",
        "mqtt.bogus: unknown key",
        "mqtt.reconnect.jitter: unknown key",
        "peripherals[0].speed: unknown key",
        "components.app.healthCheck.retries: unknown key",
      ].sort(),
    );
  });

  it("reports several problems at once, not just the first", () => {
    const problems = problemsOf({
      deviceId: "POS 1",
      tenant: "acme",
      mqtt: { urls: ["http://x"], keepaliveSec: -1 },
      outbox: { maxBytes: 65536, maxMessageBytes: 131072 },
      intake: { host: "0.0.0.0" },
      log: { level: "loud" },
    });
    expect(problems.map((p) => p.path).sort()).toEqual(
      [
        "deviceId",
        "mqtt.urls[0]",
        "mqtt.keepaliveSec",
        "outbox.maxMessageBytes",
        "intake.host",
        "log.level",
      ].sort(),
    );
  });

  it("names the expected and the given type when a value has the wrong type", () => {
    const problems = problemsOf({
      ...minimal,
      tenant: 7,
      mqtt: { urls: "mqtt://x", protocolVersion: 3, keepaliveSec: 1.5 },
      telemetry: [],
      trust: { releaseRoots: [null] },
    });
    expect(problems).toEqual([
      { path: "tenant", message: "must be a string, not a number" },
      { path: "mqtt.urls", message: "must be an array, not a string" },
      { path: "mqtt.protocolVersion", message: "must be one of 5, 4" },
      { path: "mqtt.keepaliveSec", message: "must be an integer, not a number" },
      { path: "telemetry", message: "must be an object, not an array" },
      { path: "trust.releaseRoots[0]", message: "must be a string, not null" },
    ]);
  });

  it("writes a type error of the document itself at (root)", () => {
    expect(problemsOf([1, 2])).toEqual([{ path: "(root)", message: "must be an object, not an array" }]);
    expect(problemsOf(null)).toEqual([{ path: "(root)", message: "must be an object, not null" }]);
  });

  it("leaves relative paths as written", () => {
    const result = parseConfig({ ...minimal, dataDir: "data" });
    expect(result.ok && result.value.dataDir).toBe("data");
  });
});

describe("loadConfig", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "pos-agent-config-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function write(name: string, text: string): string {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  it("loads a valid file and names it", () => {
    const file = write("config.json", JSON.stringify(minimal));
    const result = loadConfig(file);
    expect(result.ok && result.value.file).toBe(file);
    expect(result.ok && result.value.config.deviceId).toBe("POS-0001");
  });

  it("reports a missing file as one problem naming the file and the reason", () => {
    const file = join(dir, "nope.json");
    expect(loadConfig(file)).toEqual({
      ok: false,
      error: { file, problems: [{ path: "(file)", message: `cannot read ${file}: no such file` }] },
    });
  });

  it("reports a directory given as the config file", () => {
    const result = loadConfig(dir);
    expect(!result.ok && result.error.problems[0]?.message).toBe(`cannot read ${dir}: it is a directory`);
  });

  it("names line and column of a JSON syntax error", () => {
    const cases: [string, string][] = [
      ['{\n  "deviceId": "a",\n  "tenant": x\n}', "line 3, column 13"],
      ['{\n  "deviceId": "a"\n  "tenant": "b"\n}', "line 3, column 3"],
      ['{\n  "deviceId": "a",\n}', "line 3, column 1"],
      ['{\n  "deviceId": "a",\n', "line 3, column 1"],
      ["", "line 1, column 1"],
    ];
    for (const [text, where] of cases) {
      const file = write("broken.json", text);
      const result = loadConfig(file);
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      expect(result.error.problems).toHaveLength(1);
      expect(result.error.problems[0]?.path).toBe("(file)");
      expect(result.error.problems[0]?.message).toContain(`invalid JSON at ${where}`);
      expect(result.error.problems[0]?.message).not.toMatch(/position|is not valid JSON/);
    }
  });

  it("accepts a file that starts with a byte-order mark", () => {
    const file = write("bom.json", `\uFEFF${JSON.stringify(minimal)}`);
    expect(loadConfig(file).ok).toBe(true);
  });

  it("reports validation problems with the file", () => {
    const file = write("config.json", JSON.stringify({ ...minimal, mqtt: { ...minimal.mqtt, bogus: 1 } }));
    expect(loadConfig(file)).toEqual({
      ok: false,
      error: { file, problems: [{ path: "mqtt.bogus", message: "unknown key" }] },
    });
  });

  it("resolves relative paths against the config file's directory", () => {
    mkdirSync(join(dir, "etc"));
    const file = write(
      "etc/config.json",
      JSON.stringify({
        ...minimal,
        dataDir: "../var",
        mqtt: {
          urls: ["mqtts://broker.example:8883"],
          tls: { ca: "tls/ca.pem", cert: "/abs/cert.pem", key: "tls/key.pem" },
          passwordFile: "pw",
        },
        trust: { releaseRoots: ["roots/release.pem"], operatorRoots: ["/abs/operator.pem", "op.pem"] },
        updates: { lockFiles: ["/run/pos-app/txn.lock"] },
      }),
    );
    const result = loadConfig(file);
    if (!result.ok) throw new Error(formatProblems(result.error.file, result.error.problems));
    const { config } = result.value;
    expect(config.dataDir).toBe(join(dir, "var"));
    expect(config.mqtt.tls).toEqual({
      ca: join(dir, "etc/tls/ca.pem"),
      cert: "/abs/cert.pem",
      key: join(dir, "etc/tls/key.pem"),
    });
    expect(config.mqtt.passwordFile).toBe(join(dir, "etc/pw"));
    expect(config.trust.releaseRoots).toEqual([join(dir, "etc/roots/release.pem")]);
    expect(config.trust.operatorRoots).toEqual(["/abs/operator.pem", join(dir, "etc/op.pem")]);
  });

  it("adds no optional keys that the file left out", () => {
    const file = write("config.json", JSON.stringify(minimal));
    const result = loadConfig(file);
    expect(result.ok && Object.keys(result.value.config.mqtt)).not.toContain("tls");
    expect(result.ok && Object.keys(result.value.config.mqtt)).not.toContain("passwordFile");
  });

  it("reads through an injected reader", () => {
    const seen: string[] = [];
    const result = loadConfig("/nowhere/config.json", {
      readFile: (path) => {
        seen.push(path);
        return JSON.stringify({ ...minimal, dataDir: "data" });
      },
    });
    expect(seen).toEqual(["/nowhere/config.json"]);
    expect(result.ok && result.value.config.dataDir).toBe("/nowhere/data");
  });
});

describe("formatProblems", () => {
  it("prints one FILE: path: message line per problem", () => {
    const text = formatProblems("/etc/pos-agent/config.json", [
      { path: "mqtt.urls[0]", message: "must start with mqtt://" },
      { path: "outbox.maxBytes", message: "must be at least 65536" },
    ]);
    expect(text).toBe(
      "/etc/pos-agent/config.json: mqtt.urls[0]: must start with mqtt://\n" +
        "/etc/pos-agent/config.json: outbox.maxBytes: must be at least 65536",
    );
  });
});

describe("defaultConfigPath", () => {
  it("prefers $POS_AGENT_CONFIG", () => {
    expect(defaultConfigPath({ POS_AGENT_CONFIG: "/tmp/c.json" })).toBe("/tmp/c.json");
  });

  it("falls back to /etc/pos-agent/config.json", () => {
    expect(defaultConfigPath({})).toBe("/etc/pos-agent/config.json");
    expect(defaultConfigPath({ POS_AGENT_CONFIG: "" })).toBe("/etc/pos-agent/config.json");
  });
});
