import { describe, expect, it } from "vitest";
import {
  type CheckOutcome,
  DEFAULT_CHECK_TIMEOUT_MS,
  type DiagnosticCheck,
  formatReport,
  runDiagnostics,
} from "../../../src/diagnostics/check.js";

function fixed(name: string, outcome: CheckOutcome): DiagnosticCheck {
  return { name, run: async () => outcome };
}

/** A clock that moves 5 ms on every read: durations are then known exactly. */
function steppingClock(start = 1_000_000) {
  let t = start;
  return () => {
    const now = t;
    t += 5;
    return now;
  };
}

const pass = (name: string) => fixed(name, { status: "pass", detail: `${name} fine` });
const warn = (name: string) => fixed(name, { status: "warn", detail: `${name} so-so` });
const fail = (name: string) => fixed(name, { status: "fail", detail: `${name} broken` });

describe("runDiagnostics", () => {
  it("runs every check in suite order and counts the statuses when no names are given", async () => {
    const report = await runDiagnostics([pass("a"), warn("b"), fail("c"), pass("d")], {
      deviceId: "POS-1",
      now: steppingClock(),
    });
    expect(report.deviceId).toBe("POS-1");
    expect(report.ts).toBe(1_000_000);
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ["a", "pass"],
      ["b", "warn"],
      ["c", "fail"],
      ["d", "pass"],
    ]);
    expect(report.summary).toEqual({ pass: 2, warn: 1, fail: 1, worst: "c" });
    expect(report.checks.every((c) => c.durationMs === 5)).toBe(true);
  });

  it("names the first warning as worst when nothing fails, and no worst when all pass", async () => {
    const warned = await runDiagnostics([pass("a"), warn("b"), warn("c")], { deviceId: "d", now: Date.now });
    expect(warned.summary.worst).toBe("b");
    const clean = await runDiagnostics([pass("a"), pass("b")], { deviceId: "d", now: Date.now });
    expect(clean.summary).toEqual({ pass: 2, warn: 0, fail: 0 });
    expect("worst" in clean.summary).toBe(false);
  });

  it("keeps a check's data and leaves the key out when it has none", async () => {
    const report = await runDiagnostics(
      [fixed("a", { status: "pass", detail: "ok", data: { x: 1 } }), pass("b")],
      { deviceId: "d", now: Date.now },
    );
    expect(report.checks[0]?.data).toEqual({ x: 1 });
    expect(report.checks[1] !== undefined && "data" in report.checks[1]).toBe(false);
  });

  it("reports a check that throws or rejects as a fail with its message, and goes on", async () => {
    const throwing: DiagnosticCheck = {
      name: "sync",
      run: () => {
        throw new Error("quick_check: disk I/O error");
      },
    };
    const rejecting: DiagnosticCheck = { name: "async", run: async () => Promise.reject(new Error("gone")) };
    const report = await runDiagnostics([throwing, rejecting, pass("after")], {
      deviceId: "d",
      now: Date.now,
    });
    expect(report.checks).toMatchObject([
      { name: "sync", status: "fail", detail: "quick_check: disk I/O error" },
      { name: "async", status: "fail", detail: "gone" },
      { name: "after", status: "pass" },
    ]);
  });

  it("fails a check that outlives its timeout and aborts its signal", async () => {
    let seen: AbortSignal | undefined;
    const hanging: DiagnosticCheck = {
      name: "hang",
      run: (signal) => {
        seen = signal;
        return new Promise(() => {});
      },
    };
    const started = Date.now();
    const report = await runDiagnostics([hanging, pass("next")], {
      deviceId: "d",
      now: Date.now,
      timeoutMs: 30,
    });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(report.checks[0]).toMatchObject({ name: "hang", status: "fail", detail: "timed out after 30 ms" });
    expect(seen?.aborted).toBe(true);
    expect(report.checks[1]?.status).toBe("pass");
  });

  it("defaults the timeout to 10 s and says whole seconds as seconds", async () => {
    expect(DEFAULT_CHECK_TIMEOUT_MS).toBe(10_000);
    const hanging: DiagnosticCheck = { name: "hang", run: () => new Promise(() => {}) };
    const report = await runDiagnostics([hanging], { deviceId: "d", now: Date.now, timeoutMs: 1000 });
    expect(report.checks[0]?.detail).toBe("timed out after 1 s");
  });

  it("drops a late answer or rejection from a timed-out check without an unhandled rejection", async () => {
    const late: DiagnosticCheck = {
      name: "late",
      run: () => new Promise((_, reject) => setTimeout(() => reject(new Error("too late")), 40)),
    };
    const report = await runDiagnostics([late], { deviceId: "d", now: Date.now, timeoutMs: 10 });
    expect(report.checks[0]?.detail).toBe("timed out after 10 ms");
    await new Promise((resolve) => setTimeout(resolve, 60));
  });

  it("runs only the named checks, in the order named, once each", async () => {
    const ran: string[] = [];
    const tracked = (name: string): DiagnosticCheck => ({
      name,
      run: async () => {
        ran.push(name);
        return { status: "pass", detail: "" };
      },
    });
    const report = await runDiagnostics([tracked("a"), tracked("b"), tracked("c")], {
      deviceId: "d",
      names: ["c", "a", "c"],
      now: Date.now,
    });
    expect(ran).toEqual(["c", "a"]);
    expect(report.checks.map((c) => c.name)).toEqual(["c", "a"]);
  });

  it("fails each unknown name with a detail naming it and the known checks", async () => {
    const report = await runDiagnostics([pass("disk"), pass("memory")], {
      deviceId: "d",
      names: ["disk", "dsik"],
      now: Date.now,
    });
    expect(report.checks[1]).toEqual({
      name: "dsik",
      status: "fail",
      detail: 'no check is named "dsik"; known: disk, memory',
      durationMs: 0,
    });
    expect(report.summary).toEqual({ pass: 1, warn: 0, fail: 1, worst: "dsik" });
  });

  it("runs the checks one after another, never two at once", async () => {
    let running = 0;
    let most = 0;
    const slow = (name: string): DiagnosticCheck => ({
      name,
      run: async () => {
        running += 1;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running -= 1;
        return { status: "pass", detail: "" };
      },
    });
    await runDiagnostics([slow("a"), slow("b"), slow("c")], { deviceId: "d", now: Date.now });
    expect(most).toBe(1);
  });

  it("aborts the running check and skips the rest when the run is cancelled", async () => {
    const controller = new AbortController();
    let checkSignal: AbortSignal | undefined;
    const cancelling: DiagnosticCheck = {
      name: "long",
      run: (signal) => {
        checkSignal = signal;
        setTimeout(() => controller.abort(), 5);
        return new Promise(() => {});
      },
    };
    const report = await runDiagnostics([cancelling, pass("next")], {
      deviceId: "d",
      now: Date.now,
      signal: controller.signal,
    });
    expect(checkSignal?.aborted).toBe(true);
    expect(report.checks).toMatchObject([
      { name: "long", status: "fail", detail: "cancelled: the diagnostics run was stopped" },
      { name: "next", status: "fail", detail: "not run: the diagnostics run was cancelled" },
    ]);
  });

  it("reports each result as it comes, with progress counts", async () => {
    const seen: string[] = [];
    await runDiagnostics([pass("a"), fail("b")], {
      deviceId: "d",
      now: Date.now,
      onResult: (result, done, total) => seen.push(`${result.name}:${result.status}:${done}/${total}`),
    });
    expect(seen).toEqual(["a:pass:1/2", "b:fail:2/2"]);
  });
});

describe("formatReport", () => {
  it("prints one aligned row per check and a summary naming the worst", async () => {
    const report = await runDiagnostics([pass("database"), warn("disk"), fail("broker")], {
      deviceId: "POS-7",
      now: steppingClock(Date.UTC(2026, 0, 2)),
    });
    const text = formatReport(report);
    const lines = text.split("\n");
    expect(lines[0]).toBe("diagnostics of POS-7 at 2026-01-02T00:00:00.000Z");
    expect(text).toMatch(/^CHECK\s+STATUS\s+MS\s+DETAIL$/m);
    expect(text).toMatch(/^database\s+pass\s+5\s+database fine$/m);
    expect(text).toMatch(/^disk\s+warn\s+5\s+disk so-so$/m);
    expect(text).toMatch(/^broker\s+fail\s+5\s+broker broken$/m);
    // Details start in one column.
    const column = (name: string) => lines.find((l) => l.startsWith(name))?.indexOf(`${name} `, name.length);
    expect(new Set([column("database"), column("disk"), column("broker")]).size).toBe(1);
    expect(lines.at(-1)).toBe("FAILED: 1 pass, 1 warn, 1 fail of 3; worst: broker");
  });

  it("says all passed when nothing warns or fails", async () => {
    const report = await runDiagnostics([pass("a")], { deviceId: "d", now: Date.now });
    expect(formatReport(report).split("\n").at(-1)).toBe("all passed: 1 pass, 0 warn, 0 fail of 1");
  });
});
