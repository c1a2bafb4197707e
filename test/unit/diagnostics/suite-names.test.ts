import { describe, expect, it } from "vitest";
import { DIAGNOSTIC_CHECKS } from "../../../scripts/sim/fleet.mjs";
import { parseConfig } from "../../../src/config/load.js";
import { DIAGNOSTIC_CHECK_NAMES } from "../../../src/diagnostics/check.js";
import { createLiveChecks } from "../../../src/diagnostics/live-checks.js";

function unused(): never {
  throw new Error("not called: only the names are looked at");
}

describe("the diagnostics suite's names", () => {
  it("are the same, in the same order, in the live suite and in the fleet simulator", () => {
    const parsed = parseConfig({ deviceId: "POS-1", tenant: "acme", mqtt: { urls: ["mqtt://localhost"] } });
    if (!parsed.ok) throw new Error("the minimal config must parse");
    const live = createLiveChecks({
      config: parsed.value,
      quickCheck: unused,
      outboxStats: unused,
      filesystems: unused,
      memory: unused,
      clock: unused,
      brokerRoundTrip: unused,
      peripherals: unused,
      now: unused,
    });
    expect(live.map((check) => check.name)).toEqual([...DIAGNOSTIC_CHECK_NAMES]);
    expect([...DIAGNOSTIC_CHECKS]).toEqual([...DIAGNOSTIC_CHECK_NAMES]);
  });
});
