import type { Clock } from "../shared/clock.js";
import { AgentError } from "../shared/errors.js";
import type { AgentEvent, Severity } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { UpdateJob, UpdateJournal } from "../store/update-journal.js";
import { nextState, type UpdateEvent, type UpdateState } from "./transitions.js";

/** The retained `ROOT/update/state` payload (CONTRACT 9). */
export interface UpdateStatePayload {
  v: 1;
  component: string;
  fromVersion?: string | undefined;
  toVersion: string;
  state: string;
  progress?: number | undefined;
  bytes?: number | undefined;
  totalBytes?: number | undefined;
  code?: string | undefined;
  message?: string | undefined;
  /** deferred: lock_held, outside_window, battery_low, disk_low. */
  reason?: string | undefined;
  commandId?: string | undefined;
  ts: number;
}

export interface JobOutcome {
  component: string;
  fromVersion?: string;
  toVersion: string;
  state: string;
  code?: string;
  message?: string;
}

const SEVERITY: Partial<Record<UpdateState, Severity>> = {
  rolled_back: "high",
  rolling_back: "medium",
  failed: "medium",
  deferred: "low",
};

export type JobReporter = ReturnType<typeof createJobReporter>;

/**
 * An update job's states as the outside sees them: each one persisted first (through the transition
 * table), then the retained `ROOT/update/state`, an `update.{state}` event and a log line.
 */
export function createJobReporter(deps: {
  journal: UpdateJournal;
  publishState(payload: UpdateStatePayload): void;
  recordEvent(event: AgentEvent): void;
  clock: Clock;
  log: Logger;
}) {
  const { journal, clock, log } = deps;

  function publish(job: UpdateJob, extra: Partial<UpdateStatePayload> = {}): void {
    const current = journal.get(job.id) ?? job;
    deps.publishState({
      v: 1,
      component: current.component,
      ...(current.fromVersion === undefined ? {} : { fromVersion: current.fromVersion }),
      toVersion: current.toVersion,
      state: current.state,
      ...(current.progress ?? {}),
      ...(current.code === undefined ? {} : { code: current.code }),
      ...(current.message === undefined ? {} : { message: current.message }),
      ...(current.commandId === undefined ? {} : { commandId: current.commandId }),
      ...extra,
      ts: clock.now(),
    });
  }

  /** Persists the state the table gives for `event`, then reports it (retained state, event, log). */
  function move(
    job: UpdateJob,
    event: UpdateEvent,
    extra: { code?: string; message?: string; reason?: string; alongside?: () => void } = {},
  ): UpdateState {
    const from = journal.get(job.id)?.state as UpdateState;
    const to = nextState(from, event);
    if (to === undefined) throw new AgentError("INTERNAL", `no transition from ${from} on ${event}`);
    // Persisted (with what must commit alongside) before it is reported: retained state, event, log.
    journal.atomically(() => {
      journal.setState(job.id, to, clock.now(), {
        ...(extra.code === undefined ? {} : { code: extra.code }),
        ...(extra.message === undefined ? {} : { message: extra.message }),
        ...(extra.reason === undefined ? {} : { progress: { reason: extra.reason } }),
      });
      extra.alongside?.();
    });
    publish(job);
    deps.recordEvent({
      type: `update.${to}`,
      severity: SEVERITY[to] ?? "info",
      source: job.component,
      message: `${job.component} ${job.fromVersion ?? "(none)"} → ${job.toVersion}: ${to}${extra.message ? `: ${extra.message}` : ""}`,
      details: {
        component: job.component,
        fromVersion: job.fromVersion ?? null,
        toVersion: job.toVersion,
        state: to,
        ...(extra.code === undefined ? {} : { code: extra.code }),
        ...(extra.reason === undefined ? {} : { reason: extra.reason }),
        ...(job.commandId === undefined ? {} : { commandId: job.commandId }),
      },
    });
    log.info({ component: job.component, toVersion: job.toVersion, from, event, to }, "update state");
    return to;
  }

  function outcome(job: UpdateJob): JobOutcome {
    const current = journal.get(job.id) ?? job;
    return {
      component: current.component,
      ...(current.fromVersion === undefined ? {} : { fromVersion: current.fromVersion }),
      toVersion: current.toVersion,
      state: current.state,
      ...(current.code === undefined ? {} : { code: current.code }),
      ...(current.message === undefined ? {} : { message: current.message }),
    };
  }

  /** The job's current code and message, carried into its next state. */
  function codeAndMessage(job: UpdateJob): { code?: string; message?: string } {
    const now = journal.get(job.id);
    return {
      ...(now?.code === undefined ? {} : { code: now.code }),
      ...(now?.message === undefined ? {} : { message: now.message }),
    };
  }

  return { publish, move, outcome, codeAndMessage };
}
