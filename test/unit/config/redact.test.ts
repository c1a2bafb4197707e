import { describe, expect, it } from "vitest";
import { REDACTED, redactConfig, redactUrl } from "../../../src/config/redact.js";

describe("redactConfig", () => {
  it("removes secrets, credential paths, URL user information and query strings, and keeps the rest", () => {
    const redacted = redactConfig({
      deviceId: "POS-1",
      mqtt: {
        urls: ["mqtts://fleet:hunter2@broker:8883", "mqtts://broker-b:8883"],
        username: "fleet",
        passwordFile: "/etc/pos-agent/pw",
        tls: { ca: "/etc/ca.pem", cert: "/etc/c.pem", key: "/etc/k.pem" },
      },
      components: { app: { healthCheck: { url: "http://127.0.0.1/health?token=abc123" } } },
      alerts: { diskUsedPct: 90 },
    });
    const text = JSON.stringify(redacted);
    for (const secret of ["hunter2", "fleet", "/etc/pos-agent/pw", "/etc/k.pem", "abc123"]) {
      expect(text).not.toContain(secret);
    }
    expect(redacted).toMatchObject({
      deviceId: "POS-1",
      mqtt: {
        urls: [`mqtts://${REDACTED}@broker:8883`, "mqtts://broker-b:8883"],
        username: REDACTED,
        tls: { ca: "/etc/ca.pem", cert: "/etc/c.pem", key: REDACTED },
      },
      components: { app: { healthCheck: { url: `http://127.0.0.1/health?${REDACTED}` } } },
      alerts: { diskUsedPct: 90 },
    });
  });

  it("leaves strings that are not URLs alone", () => {
    expect(redactUrl("/dev/ttyS1")).toBe("/dev/ttyS1");
    expect(redactUrl("https://updates.example/a.tar.gz")).toBe("https://updates.example/a.tar.gz");
  });
});
