import { describe, expect, it, onTestFinished } from "vitest";
import { z } from "zod";
import { createCommandRegistry, createPingHandler, globMatch } from "../../../src/commands/builtins.js";
import {
  type AnyCommandHandler,
  type CommandContext,
  CommandResponse,
  isTerminalStatus,
  type ReplyRoute,
  type VerifyCommandEnvelope,
} from "../../../src/commands/command.js";
import { createCommandDispatcher, type DispatcherDeps, UNKNOWN_ID } from "../../../src/commands/dispatch.js";
import type { Clock } from "../../../src/shared/clock.js";
import { AgentError } from "../../../src/shared/errors.js";
import type { AgentEvent } from "../../../src/shared/events.js";
import { silentLogger } from "../../../src/shared/logger.js";
import { err, ok } from "../../../src/shared/result.js";
import { createCommandJournal } from "../../../src/store/command-journal.js";
import { openDatabase } from "../../../src/store/database.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const DEVICE = "POS-0001";
const NOW = Date.UTC(2026, 0, 1);
const MIN = 60_000;
/** Route of responses sent without a request (recovered commands). */
const DEFAULT_ROUTE = "(default)";

class FakeClock implements Clock {
  wall = NOW;
  mono = 0;
  now(): number {
    return this.wall;
  }
  monotonic(): number {
    return this.mono;
  }
}

/** Signatures are `{ protected: "ok:SUBJECT" | "forged" | "untrusted" }`; anything else is a test bug. */
function fakeVerify(calls: number[]): VerifyCommandEnvelope {
  return (envelope, now) => {
    calls.push(now);
    const { payload, signatures } = envelope as { payload: unknown; signatures: unknown };
    if (typeof payload !== "string" || !Array.isArray(signatures)) {
      return err(new AgentError("BAD_REQUEST", "not a JWS envelope"));
    }
    const signers: Array<{ subject: string }> = [];
    for (const signature of signatures) {
      const header = (signature as { protected?: unknown }).protected;
      if (header === "forged") return err(new AgentError("SIGNATURE_INVALID", "signature 0 does not verify"));
      if (header === "untrusted")
        return err(new AgentError("UNTRUSTED_SIGNER", "chain ends at no operator root"));
      if (typeof header !== "string" || !header.startsWith("ok:")) {
        throw new Error(`fake verify: unexpected signature ${JSON.stringify(signature)}`);
      }
      signers.push({ subject: header.slice(3) });
    }
    return ok({ payload: JSON.parse(Buffer.from(payload, "base64url").toString("utf8")), signers });
  };
}

function signed(command: Record<string, unknown>, header = "ok:ops-alice") {
  return {
    payload: Buffer.from(JSON.stringify(command)).toString("base64url"),
    signatures: [{ protected: header, signature: "sig" }],
  };
}

/** What a signed command needs to pass: target, a 5-minute lifetime around now. */
function window(clock: FakeClock) {
  return { target: DEVICE, issuedAt: clock.wall - MIN, expiresAt: clock.wall + 4 * MIN };
}

function deferred<T = void>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Side effects the tests can see, shared across a "restart". */
class World {
  runs: Record<string, number> = {};
  contexts: CommandContext[] = [];
  gate = deferred<Record<string, unknown>>();

  ran(name: string): number {
    return this.runs[name] ?? 0;
  }

  handlers(): AnyCommandHandler[] {
    const count = (name: string, context: CommandContext) => {
      this.runs[name] = this.ran(name) + 1;
      this.contexts.push(context);
    };
    return [
      {
        name: "counter.bump",
        args: z.strictObject({ by: z.int().min(1).default(1) }),
        run: async (args: { by: number }, context) => {
          count("counter.bump", context);
          return { by: args.by };
        },
      },
      ...["update.apply", "agent.restart"].map(
        (name): AnyCommandHandler => ({
          name,
          args: z.object({}),
          run: async (_args, context) => {
            count(name, context);
            return { done: true };
          },
        }),
      ),
      {
        name: "work.long",
        args: z.object({}),
        long: true,
        run: (_args, context) => {
          count("work.long", context);
          return this.gate.promise;
        },
      },
      {
        name: "work.hang",
        args: z.object({}),
        timeoutMs: 50,
        run: (_args, context) => {
          count("work.hang", context);
          return new Promise((_resolve, reject) => {
            context.signal.addEventListener("abort", () => reject(new Error("aborted, cleaning up")));
          });
        },
      },
      {
        name: "work.stuck",
        args: z.object({}),
        run: (_args, context) => {
          count("work.stuck", context);
          return new Promise(() => {});
        },
      },
      {
        name: "work.throw",
        args: z.strictObject({ kind: z.enum(["agent", "plain", "sync", "nothing"]) }),
        run: (args: { kind: string }, context) => {
          count("work.throw", context);
          if (args.kind === "sync") throw new Error("thrown before any promise");
          if (args.kind === "nothing")
            return Promise.resolve(undefined as unknown as Record<string, unknown>);
          return Promise.reject(
            args.kind === "agent" ? new AgentError("BUSY", "printer is printing") : new Error("disk on fire"),
          );
        },
      },
    ];
  }
}

interface Sent {
  tag: string;
  done: Promise<void>;
}

interface HarnessOptions {
  dir?: string;
  world?: World;
  deps?: Partial<DispatcherDeps>;
  /** respond() and audit() record, then throw: the dispatcher must carry on. */
  sinksThrow?: boolean;
}

function harness(options: HarnessOptions = {}) {
  const dir = options.dir ?? makeTmpDir("dispatch");
  const world = options.world ?? new World();
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: () => NOW,
    walLimitBytes: 1024 * 1024,
  });
  const journal = createCommandJournal(opened.db);
  const clock = new FakeClock();
  const responses: Array<{ tag: string; response: CommandResponse }> = [];
  const audits: AgentEvent[] = [];
  const verifyCalls: number[] = [];
  const tags: string[] = [];
  let trusted = true;
  const dispatcher = createCommandDispatcher({
    deviceId: DEVICE,
    groups: ["store-12", "region-north"],
    requireSignature: ["update.*", "agent.restart"],
    verify: fakeVerify(verifyCalls),
    journal,
    handlers: [createPingHandler({ clock }), ...world.handlers()],
    clock,
    clockTrusted: () => trusted,
    respond: (response, route: ReplyRoute) => {
      responses.push({ tag: route.correlationData?.toString() ?? DEFAULT_ROUTE, response });
      if (options.sinksThrow === true) throw new Error("transport gone");
    },
    audit: (event) => {
      audits.push(event);
      if (options.sinksThrow === true) throw new Error("outbox gone");
    },
    log: silentLogger,
    stopGraceMs: 50,
    ...options.deps,
  });

  const h = {
    dir,
    db: opened.db,
    journal,
    dispatcher,
    clock,
    world,
    audits,
    verifyCalls,
    setTrusted(value: boolean) {
      trusted = value;
    },
    /** Sends one request on its own route; its responses are `of(tag)`. */
    send(message: unknown, meta?: Parameters<typeof dispatcher.handle>[2], raw?: Buffer): Sent {
      const tag = `req-${tags.length + 1}`;
      tags.push(tag);
      const payload = raw ?? Buffer.from(JSON.stringify(message));
      return { tag, done: dispatcher.handle(payload, { correlationData: Buffer.from(tag) }, meta) };
    },
    /** Sends and waits for the terminal response; returns it. */
    async request(
      message: unknown,
      meta?: Parameters<typeof dispatcher.handle>[2],
    ): Promise<CommandResponse> {
      const sent = h.send(message, meta);
      await sent.done;
      return h.terminal(sent.tag);
    },
    of(tag: string): CommandResponse[] {
      return responses.filter((entry) => entry.tag === tag).map((entry) => entry.response);
    },
    terminal(tag: string): CommandResponse {
      const terminal = h.of(tag).filter((response) => isTerminalStatus(response.status));
      expect(terminal).toHaveLength(1);
      return terminal[0] as CommandResponse;
    },
    rejections(): AgentEvent[] {
      return audits.filter((event) => event.type === "command.rejected");
    },
    journalRows(): number {
      return (opened.db.prepare("SELECT COUNT(*) AS n FROM command_journal").get() as { n: number }).n;
    },
    /** A crash: the database goes away without stop(). */
    crash() {
      opened.db.close();
    },
  };

  onTestFinished(async () => {
    if (opened.db.open) await dispatcher.stop();
    // Every request ends in exactly one terminal status, as the last of its responses; a repeat of a
    // running id gets one in_progress (duplicate) instead. Every response is valid on the wire.
    for (const { response } of responses) expect(CommandResponse.safeParse(response).success).toBe(true);
    for (const tag of tags) {
      const statuses = h.of(tag).map((response) => response.status);
      if (statuses.length === 1 && statuses[0] === "in_progress") {
        expect(h.of(tag)[0]?.duplicate).toBe(true);
        continue;
      }
      expect(
        statuses.filter((status) => isTerminalStatus(status)),
        `${tag}: ${statuses.join(",")}`,
      ).toHaveLength(1);
      expect(isTerminalStatus(statuses.at(-1) ?? "accepted"), `${tag}: ${statuses.join(",")}`).toBe(true);
      if (statuses.includes("accepted")) expect(statuses[0]).toBe("accepted");
    }
    for (const { tag, response } of responses) {
      if (tag === DEFAULT_ROUTE) expect(response.status).toBe("failed");
      if (response.status === "rejected" || response.status === "failed") expect(response.code).toBeDefined();
    }
    if (opened.db.open) opened.db.close();
  });
  return h;
}

type Harness = ReturnType<typeof harness>;

function expectRejected(response: CommandResponse, code: string, message?: RegExp) {
  expect(response.status).toBe("rejected");
  expect(response.code).toBe(code);
  if (message !== undefined) expect(response.message).toMatch(message);
}

/** Lets handlers started by handle() begin running. */
function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function noRuns(h: Harness) {
  expect(h.world.runs).toEqual({});
}

describe("command dispatch: bare commands", () => {
  it("answers ping with pong and the device time", async () => {
    const h = harness();
    const response = await h.request({ id: "c-1", cmd: "ping" });
    expect(response).toEqual({
      v: 1,
      id: "c-1",
      deviceId: DEVICE,
      status: "succeeded",
      ts: NOW,
      result: { pong: true, ts: NOW },
    });
    expect(h.of("req-1")).toHaveLength(1);
    expect(h.audits).toEqual([]);
  });

  it("passes the handler its args as its schema made them, and no signers when unsigned", async () => {
    const h = harness();
    expect((await h.request({ id: "c-1", cmd: "counter.bump", args: { by: 3 } })).result).toEqual({ by: 3 });
    expect((await h.request({ id: "c-2", cmd: "counter.bump" })).result).toEqual({ by: 1 });
    expect(h.world.ran("counter.bump")).toBe(2);
    expect(h.world.contexts.map((context) => context.signers)).toEqual([[], []]);
  });
});

describe("command dispatch: malformed requests", () => {
  it("refuses a payload that is not JSON as BAD_REQUEST with the unknown id, without journaling it", async () => {
    const h = harness();
    const sent = h.send(undefined, {}, Buffer.from("{nope"));
    await sent.done;
    const response = h.terminal(sent.tag);
    expectRejected(response, "BAD_REQUEST", /not JSON/);
    expect(response.id).toBe(UNKNOWN_ID);
    expect(h.journalRows()).toBe(0);
    expect(h.rejections()).toMatchObject([{ severity: "medium", details: { id: "", code: "BAD_REQUEST" } }]);
  });

  it("refuses a request without a valid id as BAD_REQUEST with the unknown id", async () => {
    const h = harness();
    expectRejected(await h.request({ cmd: "ping" }), "BAD_REQUEST", /id/);
    const spaced = await h.request({ id: "has spaces", cmd: "ping" });
    expectRejected(spaced, "BAD_REQUEST");
    expect(spaced.id).toBe(UNKNOWN_ID);
    expectRejected(await h.request({ id: "x".repeat(129), cmd: "ping" }), "BAD_REQUEST");
    expectRejected(await h.request([1, 2]), "BAD_REQUEST");
    expect(h.journalRows()).toBe(0);
    noRuns(h);
  });

  it("refuses an envelope whose payload is not base64url JSON as BAD_REQUEST", async () => {
    const h = harness();
    const response = await h.request({ payload: "!!!", signatures: [] });
    expectRejected(response, "BAD_REQUEST", /base64url/);
    expect(h.verifyCalls).toEqual([]);
  });

  it("refuses a payload larger than the limit as TOO_LARGE", async () => {
    const h = harness({ deps: { maxPayloadBytes: 64 } });
    expectRejected(await h.request({ id: "c-1", cmd: "ping", pad: "x".repeat(64) }), "TOO_LARGE");
    expect(h.journalRows()).toBe(0);
  });

  it("refuses unknown fields and bad times with their id, and journals the refusal", async () => {
    const h = harness();
    const typo = await h.request({ id: "c-1", cmd: "ping", expiresat: NOW - 1 });
    expectRejected(typo, "BAD_REQUEST", /expiresat/);
    expect(typo.id).toBe("c-1");
    expectRejected(
      await h.request({ id: "c-2", cmd: "ping", expiresAt: "soon" }),
      "BAD_REQUEST",
      /expiresAt/,
    );
    expectRejected(await h.request({ id: "c-3", cmd: "ping", issuedAt: NOW, expiresAt: NOW }), "BAD_REQUEST");
    expect(h.journalRows()).toBe(3);
  });

  it("refuses args that fail the handler's schema as BAD_REQUEST with zod's messages, running nothing", async () => {
    const h = harness();
    const response = await h.request({ id: "c-1", cmd: "counter.bump", args: { by: 0 } });
    expectRejected(response, "BAD_REQUEST", /^args\.by: /);
    const extra = await h.request({ id: "c-2", cmd: "counter.bump", args: { by: 1, more: true } });
    expectRejected(extra, "BAD_REQUEST", /more/);
    noRuns(h);
  });

  it("refuses an unknown command as UNKNOWN_COMMAND", async () => {
    const h = harness();
    expectRejected(await h.request({ id: "c-1", cmd: "coffee.make" }), "UNKNOWN_COMMAND", /coffee\.make/);
    expect(h.rejections()).toMatchObject([
      {
        type: "command.rejected",
        severity: "medium",
        details: { id: "c-1", cmd: "coffee.make", signers: [] },
      },
    ]);
  });
});

describe("command dispatch: targets", () => {
  it("accepts a bare command on the device topic without target, or naming this device or one of its groups", async () => {
    const h = harness();
    expect((await h.request({ id: "c-1", cmd: "ping" })).status).toBe("succeeded");
    expect((await h.request({ id: "c-2", cmd: "ping", target: DEVICE })).status).toBe("succeeded");
    expect((await h.request({ id: "c-3", cmd: "ping", target: "group:store-12" })).status).toBe("succeeded");
  });

  it("refuses another device or a group it is not in as WRONG_TARGET", async () => {
    const h = harness();
    expectRejected(await h.request({ id: "c-1", cmd: "counter.bump", target: "POS-0002" }), "WRONG_TARGET");
    expectRejected(
      await h.request({ id: "c-2", cmd: "counter.bump", target: "group:store-99" }),
      "WRONG_TARGET",
    );
    expectRejected(await h.request({ id: "c-3", cmd: "counter.bump", target: "store-12" }), "WRONG_TARGET");
    noRuns(h);
  });

  it("on a group topic accepts only a target naming that group", async () => {
    const h = harness();
    const via = { receivedVia: "group", group: "store-12" } as const;
    expectRejected(await h.request({ id: "c-1", cmd: "counter.bump" }, via), "WRONG_TARGET", /group topic/);
    expectRejected(await h.request({ id: "c-2", cmd: "counter.bump", target: DEVICE }, via), "WRONG_TARGET");
    expectRejected(
      await h.request({ id: "c-3", cmd: "counter.bump", target: "group:region-north" }, via),
      "WRONG_TARGET",
      /store-12/,
    );
    expectRejected(
      await h.request({ id: "c-4", cmd: "counter.bump", target: "group:store-99" }, { receivedVia: "group" }),
      "WRONG_TARGET",
    );
    noRuns(h);
    expect((await h.request({ id: "c-5", cmd: "counter.bump", target: "group:store-12" }, via)).status).toBe(
      "succeeded",
    );
  });
});

describe("command dispatch: signatures", () => {
  it("refuses an unsigned command that requireSignature matches as SIGNATURE_REQUIRED, running nothing", async () => {
    const h = harness();
    expectRejected(await h.request({ id: "c-1", cmd: "update.apply" }), "SIGNATURE_REQUIRED");
    expectRejected(
      await h.request({ id: "c-2", cmd: "agent.restart", target: DEVICE }),
      "SIGNATURE_REQUIRED",
    );
    // Before saying whether it exists at all.
    expectRejected(await h.request({ id: "c-3", cmd: "update.nope" }), "SIGNATURE_REQUIRED");
    noRuns(h);
    expect(h.rejections().map((event) => event.severity)).toEqual(["medium", "medium", "medium"]);
  });

  it("runs a signed guarded command, hands it the signers and audits it as executed", async () => {
    const h = harness();
    const response = await h.request(signed({ id: "c-1", cmd: "update.apply", ...window(h.clock) }));
    expect(response).toMatchObject({ id: "c-1", status: "succeeded", result: { done: true } });
    expect(h.world.ran("update.apply")).toBe(1);
    expect(h.world.contexts[0]?.signers).toEqual(["ops-alice"]);
    expect(h.verifyCalls).toEqual([NOW]);
    expect(h.audits).toMatchObject([
      {
        type: "command.executed",
        severity: "info",
        details: { id: "c-1", cmd: "update.apply", signers: ["ops-alice"] },
      },
    ]);
  });

  it("runs a signed command that needs no signature without an executed audit", async () => {
    const h = harness();
    expect((await h.request(signed({ id: "c-1", cmd: "counter.bump", ...window(h.clock) }))).status).toBe(
      "succeeded",
    );
    expect(h.world.contexts[0]?.signers).toEqual(["ops-alice"]);
    expect(h.audits).toEqual([]);
  });

  it("refuses a bad signature or an untrusted signer with verify's code and a high-severity audit", async () => {
    const h = harness();
    const command = { cmd: "update.apply", ...window(h.clock) };
    expectRejected(await h.request(signed({ id: "c-1", ...command }, "forged")), "SIGNATURE_INVALID");
    expectRejected(await h.request(signed({ id: "c-2", ...command }, "untrusted")), "UNTRUSTED_SIGNER");
    noRuns(h);
    expect(h.rejections()).toMatchObject([
      {
        severity: "high",
        details: { id: "c-1", cmd: "update.apply", code: "SIGNATURE_INVALID", signers: [] },
      },
      { severity: "high", details: { id: "c-2", code: "UNTRUSTED_SIGNER" } },
    ]);
  });

  it("refuses a signed command without target, issuedAt or expiresAt, or living longer than allowed", async () => {
    const h = harness();
    const { target, issuedAt, expiresAt } = window(h.clock);
    expectRejected(
      await h.request(signed({ id: "c-1", cmd: "update.apply", issuedAt, expiresAt })),
      "BAD_REQUEST",
      /missing: target/,
    );
    expectRejected(
      await h.request(signed({ id: "c-2", cmd: "update.apply", target })),
      "BAD_REQUEST",
      /missing: issuedAt, expiresAt/,
    );
    expectRejected(
      await h.request(
        signed({ id: "c-3", cmd: "update.apply", target, issuedAt: NOW - MIN, expiresAt: NOW + 60 * MIN }),
      ),
      "BAD_REQUEST",
      /at most 3600 s/,
    );
    noRuns(h);
  });

  it("refuses a signed command for another device as WRONG_TARGET", async () => {
    const h = harness();
    const response = await h.request(
      signed({ id: "c-1", cmd: "update.apply", ...window(h.clock), target: "POS-0002" }),
    );
    expectRejected(response, "WRONG_TARGET");
    expect(h.rejections()[0]?.details).toMatchObject({ signers: ["ops-alice"] });
    noRuns(h);
  });
});

describe("command dispatch: time", () => {
  it("refuses a signed command past its expiresAt as EXPIRED", async () => {
    const h = harness();
    const command = {
      id: "c-1",
      cmd: "update.apply",
      target: DEVICE,
      issuedAt: NOW - 10 * MIN,
      expiresAt: NOW - 1,
    };
    expectRejected(await h.request(signed(command)), "EXPIRED", /expired at/);
    noRuns(h);
  });

  it("refuses a command issued more than 5 minutes ahead of the device clock as EXPIRED (not yet valid)", async () => {
    const h = harness();
    const early = { target: DEVICE, issuedAt: NOW + 6 * MIN, expiresAt: NOW + 20 * MIN };
    expectRejected(
      await h.request(signed({ id: "c-1", cmd: "update.apply", ...early })),
      "EXPIRED",
      /not yet valid/,
    );
    noRuns(h);
    const skewed = { target: DEVICE, issuedAt: NOW + 4 * MIN, expiresAt: NOW + 20 * MIN };
    expect((await h.request(signed({ id: "c-2", cmd: "update.apply", ...skewed }))).status).toBe("succeeded");
  });

  it("refuses an unsigned command past its expiresAt as EXPIRED", async () => {
    const h = harness();
    expectRejected(await h.request({ id: "c-1", cmd: "counter.bump", expiresAt: NOW - 1 }), "EXPIRED");
    noRuns(h);
    expect((await h.request({ id: "c-2", cmd: "counter.bump", expiresAt: NOW + MIN })).status).toBe(
      "succeeded",
    );
  });

  it("refuses a message whose MQTT expiry ran out as EXPIRED", async () => {
    const h = harness();
    expectRejected(
      await h.request({ id: "c-1", cmd: "counter.bump" }, { messageExpirySec: 0 }),
      "EXPIRED",
      /MQTT/,
    );
    noRuns(h);
    expect((await h.request({ id: "c-2", cmd: "counter.bump" }, { messageExpirySec: 5 })).status).toBe(
      "succeeded",
    );
  });

  it("on an untrusted clock refuses every command with an expiry, guarded ones always, whatever the clock says", async () => {
    const h = harness();
    h.setTrusted(false);
    const valid = signed({ id: "c-1", cmd: "update.apply", ...window(h.clock) });
    expectRejected(await h.request(valid), "EXPIRED", /clock is untrusted/);
    // A clock far behind would make an old, replayed command look valid: still refused.
    h.clock.wall = NOW - 365 * 24 * 60 * MIN;
    const replayed = {
      id: "c-2",
      cmd: "agent.restart",
      target: DEVICE,
      issuedAt: NOW - 10 * MIN,
      expiresAt: NOW,
    };
    expectRejected(await h.request(signed(replayed)), "EXPIRED", /clock is untrusted/);
    expectRejected(
      await h.request({ id: "c-3", cmd: "counter.bump", expiresAt: NOW + MIN }),
      "EXPIRED",
      /untrusted/,
    );
    noRuns(h);
    // A command with no expiry is not time-bound: an operator can still reach a device with a bad clock.
    expect((await h.request({ id: "c-4", cmd: "ping" })).status).toBe("succeeded");
  });
});

describe("command dispatch: repeated ids", () => {
  it("sends the stored response again with duplicate: true and does not run the command twice", async () => {
    const h = harness();
    const first = await h.request({ id: "c-1", cmd: "counter.bump" });
    h.clock.wall = NOW + 1000;
    const second = await h.request({ id: "c-1", cmd: "counter.bump" });
    expect(second).toEqual({ ...first, duplicate: true });
    expect(h.world.ran("counter.bump")).toBe(1);
  });

  it("recognises a repeated id after a restart over the same database file", async () => {
    const world = new World();
    const before = harness({ world });
    const first = await before.request(signed({ id: "c-1", cmd: "update.apply", ...window(before.clock) }));
    before.crash();

    const after = harness({ dir: before.dir, world });
    const again = await after.request(signed({ id: "c-1", cmd: "update.apply", ...window(after.clock) }));
    expect(again).toEqual({ ...first, duplicate: true });
    expect(world.ran("update.apply")).toBe(1);
    expect(after.audits).toEqual([]);
  });

  it("answers a repeated refusal the same, even when the repeat would now pass", async () => {
    const h = harness();
    const forged = await h.request(signed({ id: "c-1", cmd: "update.apply", ...window(h.clock) }, "forged"));
    expectRejected(forged, "SIGNATURE_INVALID");
    const genuine = await h.request(signed({ id: "c-1", cmd: "update.apply", ...window(h.clock) }));
    expect(genuine).toEqual({ ...forged, duplicate: true });
    noRuns(h);
    // A repeat is answered from the journal: no second verification, no second audit.
    expect(h.verifyCalls).toHaveLength(1);
    expect(h.rejections()).toHaveLength(1);
  });

  it("answers an id that is still running with in_progress (duplicate) and does not start it again", async () => {
    const h = harness();
    const first = h.send({ id: "c-1", cmd: "work.long" });
    const repeat = h.send({ id: "c-1", cmd: "work.long" });
    await repeat.done;
    expect(h.of(repeat.tag)).toMatchObject([{ id: "c-1", status: "in_progress", duplicate: true }]);
    h.world.gate.resolve({ ok: true });
    await first.done;
    expect(h.of(first.tag).map((response) => response.status)).toEqual(["accepted", "succeeded"]);
    expect(h.world.ran("work.long")).toBe(1);
  });
});

describe("command dispatch: long work, timeouts and failures", () => {
  it("sends accepted, then in_progress at most once a second, then the terminal status", async () => {
    const h = harness();
    const sent = h.send({ id: "c-1", cmd: "work.long" });
    await tick();
    const context = h.world.contexts[0];
    if (context === undefined) throw new Error("work.long did not start");
    context.progress({ pct: 10 });
    h.clock.mono = 500;
    context.progress({ pct: 20, note: "dropped: too soon" });
    h.clock.mono = 1000;
    context.progress({ pct: 150, note: "halfway" });

    const repeat = h.send({ id: "c-1", cmd: "work.long" });
    await repeat.done;
    expect(h.of(repeat.tag)).toMatchObject([{ status: "in_progress", progress: 100, duplicate: true }]);

    h.world.gate.resolve({ bytes: 42 });
    await sent.done;
    expect(h.of(sent.tag)).toEqual([
      { v: 1, id: "c-1", deviceId: DEVICE, status: "accepted", ts: NOW },
      { v: 1, id: "c-1", deviceId: DEVICE, status: "in_progress", ts: NOW, progress: 10 },
      {
        v: 1,
        id: "c-1",
        deviceId: DEVICE,
        status: "in_progress",
        ts: NOW,
        progress: 100,
        message: "halfway",
      },
      { v: 1, id: "c-1", deviceId: DEVICE, status: "succeeded", ts: NOW, result: { bytes: 42 } },
    ]);
    context.progress({ pct: 100 });
    expect(h.of(sent.tag)).toHaveLength(4);
  });

  it("fails a command that runs past its timeout and aborts its signal", async () => {
    const h = harness();
    const response = await h.request({ id: "c-1", cmd: "work.hang" });
    expect(response).toMatchObject({ status: "failed", code: "INTERNAL", message: "timed out after 0.05 s" });
    expect(h.world.contexts[0]?.signal.aborted).toBe(true);
    expect((await h.request({ id: "c-1", cmd: "work.hang" })).duplicate).toBe(true);
  });

  it("fails a handler that ignores its signal at the default timeout, without waiting for it", async () => {
    const h = harness({ deps: { defaultTimeoutMs: 30 } });
    const response = await h.request({ id: "c-1", cmd: "work.stuck" });
    expect(response).toMatchObject({ status: "failed", code: "INTERNAL", message: "timed out after 0.03 s" });
  });

  it("fails a handler that throws with the AgentError's code, else INTERNAL, and never throws itself", async () => {
    const h = harness();
    const agent = await h.request({ id: "c-1", cmd: "work.throw", args: { kind: "agent" } });
    expect(agent).toMatchObject({ status: "failed", code: "BUSY", message: "printer is printing" });
    const plain = await h.request({ id: "c-2", cmd: "work.throw", args: { kind: "plain" } });
    expect(plain).toMatchObject({ status: "failed", code: "INTERNAL", message: "disk on fire" });
    const sync = await h.request({ id: "c-3", cmd: "work.throw", args: { kind: "sync" } });
    expect(sync).toMatchObject({ status: "failed", code: "INTERNAL", message: "thrown before any promise" });
    const nothing = await h.request({ id: "c-4", cmd: "work.throw", args: { kind: "nothing" } });
    expect(nothing).toMatchObject({ status: "failed", code: "INTERNAL", message: /no result object/ });
    expect(h.world.ran("work.throw")).toBe(4);
  });

  it("answers failed and runs nothing when the journal cannot record the command", async () => {
    const h = harness();
    h.crash();
    const sent = h.send({ id: "c-1", cmd: "counter.bump" });
    await expect(sent.done).resolves.toBeUndefined();
    expect(h.of(sent.tag)).toMatchObject([
      { id: "c-1", status: "failed", code: "INTERNAL", message: /journal/ },
    ]);
    noRuns(h);
  });

  it("answers failed when a dependency throws during the checks, and the id stays answered", async () => {
    const h = harness({
      deps: {
        verify: () => {
          throw new Error("openssl exploded");
        },
      },
    });
    const response = await h.request(signed({ id: "c-1", cmd: "update.apply", ...window(h.clock) }));
    expect(response).toMatchObject({ status: "failed", code: "INTERNAL", message: /openssl exploded/ });
    expect((await h.request({ id: "c-1", cmd: "ping" })).duplicate).toBe(true);
    noRuns(h);
  });

  it("survives respond and audit throwing", async () => {
    const h = harness({ sinksThrow: true });
    await expect(
      h.send({ id: "c-1", cmd: "counter.bump", target: "POS-0002" }).done,
    ).resolves.toBeUndefined();
    await expect(h.send({ id: "c-2", cmd: "counter.bump" }).done).resolves.toBeUndefined();
    expect(h.world.ran("counter.bump")).toBe(1);
    // Still journaled, so the next copy is answered as a repeat.
    expect(h.journal.begin("c-2", "counter.bump", NOW).kind).toBe("done");
    expect(h.rejections()).toHaveLength(1);
  });
});

describe("command dispatch: restart and stop", () => {
  it("answers commands a crash left running as failed at start, and their repeats from the journal", async () => {
    const world = new World();
    const before = harness({ world });
    before.journal.begin("c-crash", "update.apply", NOW - 1000);
    before.crash();

    const after = harness({ dir: before.dir, world });
    after.dispatcher.recoverInterrupted();
    const recovered = after.of(DEFAULT_ROUTE);
    expect(recovered).toMatchObject([
      { id: "c-crash", status: "failed", code: "INTERNAL", message: /interrupted by a restart/ },
    ]);
    const repeat = await after.request(
      signed({ id: "c-crash", cmd: "update.apply", ...window(after.clock) }),
    );
    expect(repeat).toEqual({ ...recovered[0], duplicate: true });
    noRuns(after);
    after.dispatcher.recoverInterrupted();
    expect(after.of(DEFAULT_ROUTE)).toHaveLength(1);
  });

  it("aborts running commands on stop; each ends with its outcome, or failed when it does not stop in time", async () => {
    const h = harness();
    const hang = h.send({ id: "c-1", cmd: "work.hang", args: {} });
    const stuck = h.send({ id: "c-2", cmd: "work.stuck" });
    await tick();
    expect(h.dispatcher.running().sort()).toEqual(["c-1", "c-2"]);

    await h.dispatcher.stop();
    await Promise.all([hang.done, stuck.done]);
    expect(h.terminal(hang.tag)).toMatchObject({
      status: "failed",
      code: "INTERNAL",
      message: "interrupted: the agent is stopping",
    });
    expect(h.terminal(stuck.tag)).toMatchObject({ status: "failed", message: /did not stop within 0.05 s/ });
    expect(h.world.contexts.every((context) => context.signal.aborted)).toBe(true);
    expect(h.dispatcher.running()).toEqual([]);
  });

  it("refuses requests as BUSY once stopping, without journaling them", async () => {
    const world = new World();
    const before = harness({ world });
    await before.dispatcher.stop();
    expectRejected(await before.request({ id: "c-1", cmd: "counter.bump" }), "BUSY");
    expect(before.journalRows()).toBe(0);
    before.crash();

    const after = harness({ dir: before.dir, world });
    expect((await after.request({ id: "c-1", cmd: "counter.bump" })).status).toBe("succeeded");
    expect(world.ran("counter.bump")).toBe(1);
  });
});

describe("command registry and globs", () => {
  it("refuses two handlers with the same name, or a malformed name", () => {
    const ping = createPingHandler({ clock: new FakeClock() });
    expect(() => createCommandRegistry([ping, ping])).toThrow(/registered twice/);
    expect(() => createCommandRegistry([{ ...ping, name: "has space" }])).toThrow(/not 1-64 characters/);
    expect(createCommandRegistry(new World().handlers().concat(ping)).names()).toContain("ping");
  });

  it("matches * against any run of characters, and everything else literally", () => {
    expect(globMatch("update.*", "update.apply")).toBe(true);
    expect(globMatch("update.*", "update.")).toBe(true);
    expect(globMatch("update.*", "update")).toBe(false);
    expect(globMatch("update.*", "updateXapply")).toBe(false);
    expect(globMatch("update.*", "Update.apply")).toBe(false);
    expect(globMatch("agent.restart", "agent.restart")).toBe(true);
    expect(globMatch("agent.restart", "agent.restarts")).toBe(false);
    expect(globMatch("*", "anything")).toBe(true);
    expect(globMatch("*.upload", "logs.upload")).toBe(true);
    expect(globMatch("a*b*c", "a-b-b-c")).toBe(true);
    expect(globMatch("a*b*c", "a-c-b")).toBe(false);
    expect(globMatch("a*a", "a")).toBe(false);
    expect(globMatch("[a].(b)+", "[a].(b)+")).toBe(true);
  });
});
