import { describe, expect, it } from "vitest";
import type { OpsDeps } from "../../../src/cli/ops-broker.js";
import { opsDiag } from "../../../src/cli/ops-diag.js";
import type {
  CommandClient,
  CommandTarget,
  FleetResponse,
  ReceivedResponse,
} from "../../../src/transport/command-client.js";

type Answer = (command: { id: string; target: string }) => Array<Omit<FleetResponse, "v" | "ts" | "id">>;

/** A broker-less client: each sent command is answered (a tick later) by the device's script. */
function fakeClient(answers: Record<string, Answer>): CommandClient {
  const listeners = new Set<(received: ReceivedResponse) => void>();
  return {
    clientId: "fake",
    replyTopic: "pos-ops/fake/replies",
    async send(_tenant: string, target: CommandTarget, command: object) {
      const { id } = command as { id: string };
      const deviceId = target.kind === "device" ? target.deviceId : "";
      for (const response of answers[deviceId]?.(command as { id: string; target: string }) ?? []) {
        setTimeout(() => {
          const received = { id, receivedAt: Date.now(), response: { v: 1, id, ts: 0, ...response } };
          for (const listener of listeners) listener(received as ReceivedResponse);
        }, 20);
      }
      return id;
    },
    onResponse(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onInvalid: () => () => {},
    responses() {
      throw new Error("fake client: responses() is not implemented");
    },
    forget() {
      throw new Error("fake client: forget() is not implemented");
    },
    request() {
      throw new Error("fake client: request() is not implemented");
    },
    close: async () => {},
  };
}

function deps(client: CommandClient, progressTty = false) {
  const out: string[] = [];
  const err: string[] = [];
  const progress: string[] = [];
  let ids = 0;
  const value: OpsDeps = {
    now: () => Date.now(),
    newId: () => {
      ids += 1;
      return `c-${ids}`;
    },
    out: (text) => out.push(text),
    err: (text) => err.push(text),
    progress: (text) => progress.push(text),
    progressTty,
    connect: async () => client,
  };
  return { deps: value, out, err, progress };
}

const report = (fail: number) => ({
  ts: 1,
  deviceId: "x",
  summary: { pass: 2 - fail, warn: 0, fail },
  checks: [
    { name: "disk.headroom", status: "pass", detail: "ok", durationMs: 1 },
    { name: "printer.paper", status: fail > 0 ? "fail" : "pass", detail: "paper out", durationMs: 2 },
  ],
});
const ok =
  (fail = 0): Answer =>
  (command) => [
    { deviceId: command.target, status: "accepted" },
    { deviceId: command.target, status: "succeeded", result: report(fail) },
  ];
const base = ["--broker", "mqtt://127.0.0.1:1", "--tenant", "acme"];

describe("pos-ops diag", () => {
  it("shows a progress line on a terminal while waiting and clears it at the deadline", async () => {
    const io = deps(fakeClient({ A: ok() }), true);
    const code = await opsDiag([...base, "--target", "A,B", "--wait", "0.6"], io.deps);
    expect(code).toBe(1);
    expect(io.progress).toContain("answered 1/2, waiting 1 s more");
    expect(io.progress.at(-1)).toBe("");
    expect(io.out.slice(1)).toEqual([
      expect.stringMatching(/^A\s+2\s+0\s+0\s+-\s+\(\d+ ms\)$/),
      "B       no answer",
    ]);
    expect(io.err).toEqual([
      "2 device(s): 1 answered within 0.6 s, 1 no answer; 0 with failing checks or commands",
    ]);
  });

  it("ends as soon as every listed device has answered, without a progress line off a terminal", async () => {
    const io = deps(fakeClient({ A: ok(), B: ok() }));
    const started = Date.now();
    const code = await opsDiag([...base, "--target", "A,B", "--wait", "30"], io.deps);
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(io.progress).toEqual([]);
  });

  it("names the worst check, and shows refusals and unreadable reports in their rows", async () => {
    const io = deps(
      fakeClient({
        A: ok(1),
        B: () => [{ deviceId: "B", status: "rejected", code: "SIGNATURE_REQUIRED", message: "sign it" }],
        C: () => [{ deviceId: "C", status: "succeeded", result: { summary: "fine" } }],
      }),
    );
    const code = await opsDiag([...base, "--target", "A,B,C", "--wait", "5"], io.deps);
    expect(code).toBe(1);
    expect(io.out[1]).toMatch(/^A\s+1\s+0\s+1\s+printer\.paper\s+\(\d+ ms\)$/);
    expect(io.out[2]).toMatch(/^B\s+rejected {2}SIGNATURE_REQUIRED {2}sign it {2}\(\d+ ms\)$/);
    expect(io.out[3]).toMatch(/^C\s+unreadable report \(summary: /);
    expect(io.err[0]).toMatch(/3 answered within 5 s, 0 no answer; 3 with failing checks or commands/);
  });
});
