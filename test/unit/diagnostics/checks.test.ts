import { describe, expect, it } from "vitest";
import type { CheckOutcome, DiagnosticCheck } from "../../../src/diagnostics/check.js";
import {
  brokerCheck,
  clockCheck,
  componentsCheck,
  databaseCheck,
  diskCheck,
  memoryCheck,
  outboxCheck,
  peripheralsCheck,
} from "../../../src/diagnostics/checks.js";
import type { FilesystemSample } from "../../../src/metrics/host/host-readers.js";
import type { PeripheralState } from "../../../src/peripherals/peripherals.js";
import type { NormalisedStatus } from "../../../src/peripherals/protocols/escpos-status.js";
import type { OutboxStats } from "../../../src/store/outbox.js";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 0, 1, 12);

function run(check: DiagnosticCheck): Promise<CheckOutcome> {
  return check.run(new AbortController().signal);
}

describe("databaseCheck", () => {
  it("passes when quick_check says ok", async () => {
    const check = databaseCheck({ quickCheck: () => "ok" });
    expect(check.name).toBe("database");
    expect(await run(check)).toMatchObject({
      status: "pass",
      detail: expect.stringContaining("quick_check ok"),
    });
  });

  it("fails with the problem quick_check names", async () => {
    const outcome = await run(databaseCheck({ quickCheck: () => "row 3 missing from index idx_seq" }));
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toContain("row 3 missing from index idx_seq");
  });
});

function stats(over: { bytes?: number; oldestTs?: number; records?: number; dropped?: number }): OutboxStats {
  const stream = { records: 0, bytes: 0, dropped: 0 };
  return {
    records: over.records ?? 10,
    bytes: over.bytes ?? 0,
    oldestTs: over.oldestTs,
    lastSeq: 99,
    streams: {
      telemetry: { ...stream, dropped: over.dropped ?? 0 },
      events: stream,
      logs: { ...stream, dropped: 2 },
    },
  };
}

describe("outboxCheck", () => {
  const outbox = (s: OutboxStats) =>
    run(outboxCheck({ stats: () => s, maxBytes: 100 * MIB, now: () => NOW }));

  it("passes an empty outbox and a small fresh backlog", async () => {
    expect((await outbox(stats({ records: 0 }))).status).toBe("pass");
    const fresh = await outbox(stats({ bytes: 50 * MIB, oldestTs: NOW - HOUR }));
    expect(fresh.status).toBe("pass");
    expect(fresh.detail).toBe("10 records, 50 MiB of 100 MiB (50 %), oldest 60 min old, 2 dropped");
  });

  it("warns over half the quota", async () => {
    const outcome = await outbox(stats({ bytes: 50 * MIB + 1 }));
    expect(outcome.status).toBe("warn");
    expect(outcome.detail).toMatch(/^backlog over 50 % of its quota: /);
  });

  it("warns when the oldest record is over an hour old", async () => {
    const outcome = await outbox(stats({ oldestTs: NOW - HOUR - 1000 }));
    expect(outcome.status).toBe("warn");
    expect(outcome.detail).toContain("oldest record over 1 h old");
  });

  it("fails over 90 % of the quota", async () => {
    expect((await outbox(stats({ bytes: 90 * MIB }))).status).toBe("warn");
    expect((await outbox(stats({ bytes: 90 * MIB + 1 }))).status).toBe("fail");
  });

  it("fails when the oldest record is over a day old, whatever the size", async () => {
    expect((await outbox(stats({ oldestTs: NOW - 24 * HOUR }))).status).toBe("warn");
    const outcome = await outbox(stats({ bytes: 60 * MIB, oldestTs: NOW - 24 * HOUR - 1 }));
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toContain("over 50 % of its quota and oldest record over 24 h old");
  });

  it("counts drops of every stream in the detail and the data", async () => {
    const outcome = await outbox(stats({ dropped: 5 }));
    expect(outcome.detail).toContain("7 dropped");
    expect(outcome.data?.dropped).toEqual({ telemetry: 5, logs: 2, events: 0 });
  });
});

describe("diskCheck", () => {
  const disk = (free: number, total: number, extra: FilesystemSample[] = []) =>
    run(
      diskCheck({
        filesystems: async () => [
          {
            name: "data",
            mount: "/data",
            usedPct: ((total - free) / total) * 100,
            freeBytes: free,
            totalBytes: total,
          },
          ...extra,
        ],
      }),
    );

  it("passes with room to spare", async () => {
    const outcome = await disk(4 * GIB, 8 * GIB);
    expect(outcome.status).toBe("pass");
    expect(outcome.detail).toBe("4.0 GiB free of 8.0 GiB (50 %) on /data");
  });

  it("warns under 15 % free or under 200 MiB", async () => {
    expect((await disk(1.1 * GIB, 8 * GIB)).status).toBe("warn"); // 13.75 %
    expect((await disk(199 * MIB, 1 * GIB)).status).toBe("warn"); // 19 %, but under 200 MiB
    expect((await disk(1.25 * GIB, 8 * GIB)).status).toBe("pass"); // 15.6 %
  });

  it("fails under 5 % free or under 50 MiB", async () => {
    expect((await disk(0.3 * GIB, 8 * GIB)).status).toBe("fail"); // 3.75 %
    const small = await disk(49 * MIB, 256 * MIB); // 19 %, but under 50 MiB
    expect(small.status).toBe("fail");
    expect(small.detail).toMatch(/^data filesystem almost full: 49 MiB free/);
  });

  it("judges the data filesystem, not the others", async () => {
    const others: FilesystemSample[] = [
      { name: "root", mount: "/", usedPct: 99, freeBytes: MIB, totalBytes: GIB },
    ];
    expect((await disk(4 * GIB, 8 * GIB, others)).status).toBe("pass");
  });

  it("warns when the data filesystem cannot be read", async () => {
    const outcome = await run(diskCheck({ filesystems: async () => [] }));
    expect(outcome).toMatchObject({ status: "warn", detail: expect.stringContaining("could not be read") });
  });
});

describe("memoryCheck", () => {
  const memory = (usedPct: number) =>
    run(memoryCheck({ memory: async () => ({ usedPct, availableBytes: GIB, totalBytes: 2 * GIB }) }));

  it("passes up to 85 % used, warns above, fails above 95 %", async () => {
    expect((await memory(85)).status).toBe("pass");
    expect((await memory(85.1)).status).toBe("warn");
    expect((await memory(95)).status).toBe("warn");
    expect((await memory(95.1)).status).toBe("fail");
  });

  it("says how much is used and available", async () => {
    expect((await memory(50)).detail).toBe("50 % used, 1.0 GiB available of 2.0 GiB");
  });

  it("warns when memory cannot be read", async () => {
    expect((await run(memoryCheck({ memory: async () => undefined }))).status).toBe("warn");
  });
});

describe("clockCheck", () => {
  it("passes a trusted clock and fails an untrusted one with the reason", async () => {
    expect((await run(clockCheck({ trusted: () => ({ trusted: true }) }))).status).toBe("pass");
    const outcome = await run(
      clockCheck({
        trusted: () => ({ trusted: false, reason: "wall clock 1970-01-01 is before the build" }),
      }),
    );
    expect(outcome).toMatchObject({
      status: "fail",
      detail: "wall clock untrusted: wall clock 1970-01-01 is before the build",
    });
  });

  it("warns that it is unknown when the agent has not decided yet", async () => {
    expect(await run(clockCheck({ trusted: () => undefined }))).toEqual({
      status: "warn",
      detail: "unknown: the agent has not run yet",
    });
  });
});

describe("brokerCheck", () => {
  it("fails when not connected", async () => {
    expect(await run(brokerCheck({ roundTrip: async () => undefined }))).toEqual({
      status: "fail",
      detail: "not connected to the broker",
    });
  });

  it("passes a round trip up to 1 s and warns over it", async () => {
    expect(await run(brokerCheck({ roundTrip: async () => 42 }))).toMatchObject({
      status: "pass",
      detail: "broker round trip 42 ms",
      data: { roundTripMs: 42 },
    });
    expect((await run(brokerCheck({ roundTrip: async () => 1000 }))).status).toBe("pass");
    expect((await run(brokerCheck({ roundTrip: async () => 1001 }))).status).toBe("warn");
  });

  it("hands its signal to the round trip", async () => {
    let received: AbortSignal | undefined;
    const controller = new AbortController();
    await brokerCheck({
      roundTrip: async (signal) => {
        received = signal;
        return 1;
      },
    }).run(controller.signal);
    expect(received).toBe(controller.signal);
  });
});

const OK_PRINTER: NormalisedStatus = {
  online: true,
  paper: "ok",
  cover: "closed",
  cutter: "ok",
  error: "none",
};

function printer(status: Partial<NormalisedStatus> | undefined, link: PeripheralState["link"] = "online") {
  const state: PeripheralState = {
    v: 1,
    name: "printer",
    driver: "escpos",
    link,
    path: "/dev/ttyS1",
    since: NOW,
    ts: NOW,
  };
  if (status !== undefined) state.status = { ...OK_PRINTER, ...status };
  return state;
}

const pinpad = (link: PeripheralState["link"], error?: string): PeripheralState => ({
  v: 1,
  name: "pinpad",
  driver: "lines",
  link,
  path: "/dev/ttyUSB0",
  since: NOW,
  ts: NOW,
  ...(error === undefined ? {} : { error }),
});

describe("peripheralsCheck", () => {
  const periph = (...states: PeripheralState[]) => run(peripheralsCheck({ states: () => states }));

  it("passes with a note when no peripheral is configured", async () => {
    expect(await periph()).toEqual({ status: "pass", detail: "no peripherals configured" });
  });

  it("passes when every peripheral is online and the printer is ready", async () => {
    const outcome = await periph(printer({}), pinpad("online"));
    expect(outcome.status).toBe("pass");
    expect(outcome.detail).toBe("2 peripherals online and answering: printer, pinpad");
  });

  it("fails a peripheral whose link is not online, naming it and the error", async () => {
    const outcome = await periph(printer({}), pinpad("offline", "ENOENT: no such file"));
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toBe("pinpad not present (offline at /dev/ttyUSB0: ENOENT: no such file)");
    expect((await periph(pinpad("connecting"))).status).toBe("fail");
  });

  it("fails a printer that is offline, out of paper, open or in an unrecoverable error", async () => {
    expect((await periph(printer({ online: false }))).detail).toBe("printer offline");
    expect((await periph(printer({ online: false, paper: "out" }))).detail).toBe("printer paper out");
    expect((await periph(printer({ cover: "open" }))).status).toBe("fail");
    expect((await periph(printer({ error: "unrecoverable" }))).status).toBe("fail");
  });

  it("warns on paper near end, a cutter error, a recoverable error or no status yet", async () => {
    expect(await periph(printer({ paper: "near_end" }))).toMatchObject({
      status: "warn",
      detail: "printer paper near end",
    });
    expect((await periph(printer({ cutter: "error" }))).status).toBe("warn");
    expect((await periph(printer({ error: "recoverable" }))).status).toBe("warn");
    expect((await periph(printer(undefined))).status).toBe("warn");
  });

  it("takes the worst peripheral and lists every problem", async () => {
    const outcome = await periph(printer({ paper: "near_end" }), pinpad("offline"));
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toBe("printer paper near end; pinpad not present (offline at /dev/ttyUSB0)");
    expect(outcome.data?.peripherals).toHaveLength(2);
  });
});

describe("componentsCheck", () => {
  it("passes with none configured", async () => {
    expect(await run(componentsCheck({ components: {} }))).toEqual({
      status: "pass",
      detail: "none configured",
    });
  });

  it("lists versions, unknown ones too", async () => {
    const outcome = await run(
      componentsCheck({ components: { "pos-app": { version: "2.4.0", healthy: true }, kiosk: {} } }),
    );
    expect(outcome).toMatchObject({ status: "pass", detail: "pos-app 2.4.0, kiosk (version unknown)" });
  });

  it("fails when a component reports unhealthy", async () => {
    const outcome = await run(
      componentsCheck({ components: { "pos-app": { version: "2.4.0", healthy: false } } }),
    );
    expect(outcome.status).toBe("fail");
    expect(outcome.detail).toMatch(/^unhealthy: pos-app/);
  });
});
