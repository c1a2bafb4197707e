/**
 * The update as a table of `(state, event) → state` (CONTRACT 9, REFERENCE 6), in one place: the
 * engine asks this table where to go and persists the answer before it acts, and the start-up
 * recovery maps every persisted state to what to do next. Pure, so every row is tested.
 */

export const UPDATE_STATES = [
  "idle",
  "deferred",
  "downloading",
  "verifying",
  "installing",
  "activating",
  "health_check",
  "committed",
  "rolling_back",
  "rolled_back",
  "failed",
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];

export const UPDATE_EVENTS = [
  /** A verified manifest was accepted for this component. */
  "start",
  /** A precondition is unmet (lock, window, battery, disk). */
  "defer",
  /** Preconditions met (again). */
  "proceed",
  "downloaded",
  "verified",
  /** The new tree is staged and checked, beside the old one. */
  "installed",
  /** `current` points at the new release and the component was restarted. */
  "activated",
  "healthy",
  "unhealthy",
  /** Something failed in this step. */
  "error",
  /** The operator (or pos-agent rollback) asked to go back. */
  "rollback",
  /** `current` points at the old release again and the component was restarted. */
  "reverted",
] as const;
export type UpdateEvent = (typeof UPDATE_EVENTS)[number];

/** States after which `current` may have changed: a failure there must roll back, not just stop. */
export const CHANGED_STATES: ReadonlySet<UpdateState> = new Set(["activating", "health_check"]);
export const TERMINAL_STATES: ReadonlySet<UpdateState> = new Set([
  "idle",
  "committed",
  "rolled_back",
  "failed",
]);

const TABLE: Readonly<Partial<Record<UpdateState, Partial<Record<UpdateEvent, UpdateState>>>>> = {
  // A job is created in idle and leaves it at once; one a restart found there never started: failed.
  idle: { start: "downloading", defer: "deferred", error: "failed" },
  committed: { start: "downloading", defer: "deferred" },
  rolled_back: { start: "downloading", defer: "deferred" },
  failed: { start: "downloading", defer: "deferred" },
  deferred: { proceed: "downloading", defer: "deferred", error: "failed" },
  downloading: { downloaded: "verifying", defer: "deferred", error: "failed" },
  verifying: { verified: "installing", error: "failed" },
  // Nothing is switched until activating: a failure up to here leaves the old release untouched.
  installing: { installed: "activating", defer: "deferred", error: "failed" },
  activating: { activated: "health_check", error: "rolling_back", rollback: "rolling_back" },
  health_check: {
    healthy: "committed",
    unhealthy: "rolling_back",
    error: "rolling_back",
    rollback: "rolling_back",
  },
  // Rolling back is retried until it is done: there is nowhere safer to go.
  rolling_back: { reverted: "rolled_back", error: "rolling_back" },
};

/** Where `event` leads from `state`, or undefined when the table has no such row (a bug: refuse it). */
export function nextState(state: UpdateState, event: UpdateEvent): UpdateState | undefined {
  const row = Object.hasOwn(TABLE, state) ? TABLE[state] : undefined;
  return row !== undefined && Object.hasOwn(row, event) ? row[event] : undefined;
}

export type Recovery =
  /** Nothing to do. */
  | { action: "none" }
  /** Redo the step of this state from its start (every step is idempotent). */
  | { action: "resume"; state: UpdateState }
  /** The component may be half switched: go back to the old release. */
  | { action: "rollback"; reason: string }
  /** Nothing was changed; record the failure. */
  | { action: "fail"; reason: string };

/** How many starts one update may see before it is abandoned (Mender uses 28; terminals reboot less). */
export const MAX_RESTARTS = 5;

/**
 * What to do at start with a job found in `state` after `restarts` earlier starts inside it.
 * - up to installing: nothing was switched; resume (a download continues from its .part, staging is redone);
 * - activating: the switch and restart are redone (idempotent), then the health check runs;
 * - health_check: the window was cut by a restart, which REFERENCE 6 counts as unhealthy: roll back;
 * - rolling_back: finish it;
 * - past MAX_RESTARTS: give up, rolling back if anything may have changed.
 * Anything unknown rolls back.
 */
export function recover(state: string, restarts: number): Recovery {
  if (!(UPDATE_STATES as readonly string[]).includes(state)) {
    return { action: "rollback", reason: `unknown persisted update state ${JSON.stringify(state)}` };
  }
  const known = state as UpdateState;
  if (TERMINAL_STATES.has(known)) return { action: "none" };
  if (known === "rolling_back") return { action: "resume", state: known };
  if (restarts > MAX_RESTARTS) {
    const reason = `restarted ${restarts} times during the update (limit ${MAX_RESTARTS})`;
    return CHANGED_STATES.has(known) ? { action: "rollback", reason } : { action: "fail", reason };
  }
  if (known === "health_check") {
    return { action: "rollback", reason: "the agent restarted during the health check window" };
  }
  return { action: "resume", state: known };
}
