import { describe, expect, it } from "vitest";
import {
  CHANGED_STATES,
  MAX_RESTARTS,
  nextState,
  type Recovery,
  recover,
  TERMINAL_STATES,
  UPDATE_EVENTS,
  UPDATE_STATES,
  type UpdateEvent,
  type UpdateState,
} from "../../../src/updates/transitions.js";

/** No row: the engine must refuse this event in this state. */
const _ = undefined;

type Row = Readonly<Record<UpdateEvent, UpdateState | undefined>>;

/**
 * The whole table, written out by hand (CONTRACT 9, REFERENCE 6), every state × every event: a change
 * to transitions.ts must change this too, on purpose.
 */
// biome-ignore format: one line per state reads as the table it is
const EXPECTED: Readonly<Record<UpdateState, Row>> = {
  idle:         { start: "downloading", defer: "deferred", proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: "failed",       rollback: _,              reverted: _ },
  deferred:     { start: _,             defer: "deferred", proceed: "downloading", downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: "failed",       rollback: _,              reverted: _ },
  downloading:  { start: _,             defer: "deferred", proceed: _,             downloaded: "verifying", verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: "failed",       rollback: _,              reverted: _ },
  verifying:    { start: _,             defer: _,          proceed: _,             downloaded: _,           verified: "installing", installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: "failed",       rollback: _,              reverted: _ },
  installing:   { start: _,             defer: "deferred", proceed: _,             downloaded: _,           verified: _,            installed: "activating", activated: _,              healthy: _,           unhealthy: _,              error: "failed",       rollback: _,              reverted: _ },
  activating:   { start: _,             defer: _,          proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: "health_check", healthy: _,           unhealthy: _,              error: "rolling_back", rollback: "rolling_back", reverted: _ },
  health_check: { start: _,             defer: _,          proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: "committed", unhealthy: "rolling_back", error: "rolling_back", rollback: "rolling_back", reverted: _ },
  committed:    { start: "downloading", defer: "deferred", proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: _,              rollback: _,              reverted: _ },
  rolling_back: { start: _,             defer: _,          proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: "rolling_back", rollback: _,              reverted: "rolled_back" },
  rolled_back:  { start: "downloading", defer: "deferred", proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: _,              rollback: _,              reverted: _ },
  failed:       { start: "downloading", defer: "deferred", proceed: _,             downloaded: _,           verified: _,            installed: _,            activated: _,              healthy: _,           unhealthy: _,              error: _,              rollback: _,              reverted: _ },
};

/** The states in the order an update goes through them; `activating` is the first that changes `current`. */
const BEFORE_ACTIVATING: readonly UpdateState[] = [
  "idle",
  "deferred",
  "downloading",
  "verifying",
  "installing",
];
const FAILURES: readonly UpdateEvent[] = ["error", "unhealthy", "rollback"];

const pairs = UPDATE_STATES.flatMap((state) => UPDATE_EVENTS.map((event) => [state, event] as const));

/** Every edge of the table as the implementation answers it. */
const edges = pairs.flatMap(([state, event]) => {
  const to = nextState(state, event);
  return to === undefined ? [] : [{ from: state, event, to }];
});

/**
 * States reachable from `from` through the table within one update (a terminal state ends it: only a
 * new update leaves it), not passing through `avoid`.
 */
function reachable(from: UpdateState, avoid: ReadonlySet<UpdateState> = new Set()): Set<UpdateState> {
  const seen = new Set<UpdateState>([from]);
  const pending = [from];
  for (let at = pending.pop(); at !== undefined; at = pending.pop()) {
    if (at !== from && TERMINAL_STATES.has(at)) continue;
    for (const edge of edges) {
      if (edge.from !== at || avoid.has(edge.to) || seen.has(edge.to)) continue;
      seen.add(edge.to);
      pending.push(edge.to);
    }
  }
  return seen;
}

describe("the update transition table", () => {
  it("the expected table names every state and every event, and nothing else", () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...UPDATE_STATES].sort());
    for (const state of UPDATE_STATES) {
      expect(Object.keys(EXPECTED[state]).sort(), state).toEqual([...UPDATE_EVENTS].sort());
    }
    expect(pairs).toHaveLength(11 * 12);
  });

  it.each(pairs)("%s on %s", (state, event) => {
    expect(nextState(state, event)).toBe(EXPECTED[state][event]);
  });

  it("every target is a known state", () => {
    for (const edge of edges) expect(UPDATE_STATES).toContain(edge.to);
  });

  it("nothing leaves rolling_back except to rolled_back or rolling_back (a retry)", () => {
    const out = edges.filter((edge) => edge.from === "rolling_back");
    expect(out.length).toBeGreaterThan(0);
    for (const edge of out) expect(["rolled_back", "rolling_back"], edge.event).toContain(edge.to);
    // Nor can anything after it: rolled_back is terminal, and only a new update leaves it.
    expect(reachable("rolling_back", new Set(["rolled_back"]))).toEqual(new Set(["rolling_back"]));
  });

  it.each(BEFORE_ACTIVATING)("nothing from %s leads to rolling_back without passing activating", (state) => {
    for (const event of UPDATE_EVENTS) expect(nextState(state, event), event).not.toBe("rolling_back");
    const beyond = reachable(state, new Set(["activating"]));
    expect(beyond.has("rolling_back")).toBe(false);
    expect(beyond.has("health_check")).toBe(false);
    expect(beyond.has("committed")).toBe(false);
    expect(beyond.has("rolled_back")).toBe(false);
  });

  it.each(["activating", "health_check"] as const)("from %s every failure leads to rolling_back", (state) => {
    expect(CHANGED_STATES.has(state)).toBe(true);
    for (const event of FAILURES) {
      // activating has no `unhealthy` row: its failure is `error` (a restart command that failed).
      if (state === "activating" && event === "unhealthy") {
        expect(nextState(state, event)).toBeUndefined();
        continue;
      }
      expect(nextState(state, event), event).toBe("rolling_back");
    }
    // And nothing from there stops short: no `failed`, no `deferred`, no giving up with a half switch.
    for (const edge of edges.filter((e) => e.from === state)) {
      expect(["health_check", "committed", "rolling_back"], edge.event).toContain(edge.to);
    }
  });

  it("the states that may have changed `current` are exactly activating and health_check", () => {
    expect([...CHANGED_STATES].sort()).toEqual(["activating", "health_check"]);
  });

  it("once activating is entered, every terminal state reachable is committed or rolled_back", () => {
    const after = reachable("activating");
    const terminal = [...after].filter((state) => TERMINAL_STATES.has(state)).sort();
    expect(terminal).toEqual(["committed", "rolled_back"]);
  });

  it("terminal states are idle, committed, rolled_back and failed, and accept only start and defer (and idle error: a job a restart found never started)", () => {
    expect([...TERMINAL_STATES].sort()).toEqual(["committed", "failed", "idle", "rolled_back"]);
    for (const state of TERMINAL_STATES) {
      const accepted = UPDATE_EVENTS.filter((event) => nextState(state, event) !== undefined);
      expect(accepted, state).toEqual(state === "idle" ? ["start", "defer", "error"] : ["start", "defer"]);
      expect(nextState(state, "start")).toBe("downloading");
      expect(nextState(state, "defer")).toBe("deferred");
    }
  });

  it("every non-terminal state can still end (reaches a terminal state), and every state is reachable from idle", () => {
    for (const state of UPDATE_STATES) {
      const ends = [...reachable(state)].filter((s) => TERMINAL_STATES.has(s) && s !== state);
      if (!TERMINAL_STATES.has(state)) expect(ends.length, state).toBeGreaterThan(0);
    }
    expect([...reachable("idle")].sort()).toEqual([...UPDATE_STATES].sort());
  });

  it("an unknown state or event has no row", () => {
    expect(nextState("bogus" as UpdateState, "start")).toBeUndefined();
    expect(nextState("idle", "bogus" as UpdateEvent)).toBeUndefined();
    expect(nextState("__proto__" as UpdateState, "start")).toBeUndefined();
  });

  // Was a bug (fixed with Object.hasOwn): the lookup walked Object.prototype, so a name that is not a
  // row answered whatever the prototype holds (a function, or "Object") instead of undefined.
  it.each([
    ["idle", "toString"],
    ["constructor", "name"],
  ])("names inherited from Object.prototype are not rows either: %s on %s", (state, event) => {
    expect(nextState(state as UpdateState, event as UpdateEvent)).toBeUndefined();
  });
});

describe("recover(): what a start does with a job found in each state", () => {
  const RESTARTS = [0, 1, MAX_RESTARTS, MAX_RESTARTS + 1] as const;
  type Plan = Recovery["action"] | `resume ${UpdateState}`;
  const none: Plan[] = ["none", "none", "none", "none"];
  /** Nothing switched yet: resume, and past the limit give up without rolling back. */
  const resumeThenFail = (state: UpdateState): Plan[] => [
    `resume ${state}`,
    `resume ${state}`,
    `resume ${state}`,
    "fail",
  ];
  /** The plan at restarts 0, 1, MAX_RESTARTS and MAX_RESTARTS + 1, by hand. */
  const EXPECTED_RECOVERY: Readonly<Record<UpdateState, Plan[]>> = {
    idle: none,
    deferred: resumeThenFail("deferred"),
    downloading: resumeThenFail("downloading"),
    verifying: resumeThenFail("verifying"),
    installing: resumeThenFail("installing"),
    activating: ["resume activating", "resume activating", "resume activating", "rollback"],
    // A restart inside the health check window counts as unhealthy (REFERENCE 6).
    health_check: ["rollback", "rollback", "rollback", "rollback"],
    committed: none,
    // Nowhere safer to go: finished whatever the count.
    rolling_back: [
      "resume rolling_back",
      "resume rolling_back",
      "resume rolling_back",
      "resume rolling_back",
    ],
    rolled_back: none,
    failed: none,
  };

  const plan = (recovery: Recovery): Plan =>
    recovery.action === "resume" ? `resume ${recovery.state}` : recovery.action;

  const cases = UPDATE_STATES.flatMap((state) =>
    RESTARTS.map((restarts, index) => [state, restarts, EXPECTED_RECOVERY[state][index] as Plan] as const),
  );

  it.each(cases)("%s after %i restarts: %s", (state, restarts, expected) => {
    const recovery = recover(state, restarts);
    expect(plan(recovery)).toBe(expected);
    if (recovery.action === "rollback" || recovery.action === "fail") {
      expect(recovery.reason.length).toBeGreaterThan(0);
      if (restarts > MAX_RESTARTS && state !== "health_check") {
        expect(recovery.reason).toContain(String(MAX_RESTARTS));
      }
    }
  });

  it("a resume never skips ahead: it redoes the persisted state's own step", () => {
    for (const [state, restarts] of cases) {
      const recovery = recover(state, restarts);
      if (recovery.action === "resume") expect(recovery.state).toBe(state);
    }
  });

  it("a job that may have changed `current` is never just failed: it is resumed or rolled back", () => {
    for (const state of ["activating", "health_check", "rolling_back"] as const) {
      for (const restarts of [...RESTARTS, 28, 1000]) {
        expect(["resume", "rollback"]).toContain(recover(state, restarts).action);
      }
    }
  });

  it("a rollback plan is always something the table can do: the state's error leads to rolling_back", () => {
    for (const [state, restarts] of cases) {
      if (recover(state, restarts).action === "rollback") {
        expect(nextState(state, "error"), state).toBe("rolling_back");
      }
      if (recover(state, restarts).action === "fail") {
        expect(nextState(state, "error"), state).toBe("failed");
      }
    }
  });

  it.each([
    "",
    "unknown",
    "IDLE",
    "Committed",
    "commited",
    "rolling-back",
    " idle",
    "idle ",
    "health check",
    "__proto__",
    "constructor",
    "toString",
    "null",
    "0",
  ])("an unknown persisted state %j rolls back, whatever the count", (state) => {
    for (const restarts of [...RESTARTS, 1000]) {
      const recovery = recover(state, restarts);
      expect(recovery.action).toBe("rollback");
      if (recovery.action === "rollback") expect(recovery.reason).toContain(JSON.stringify(state));
    }
  });
});
