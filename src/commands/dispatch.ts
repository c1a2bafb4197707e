import type { Clock } from "../shared/clock.js";
import { AgentError, type ErrorCode, errorMessage, isDiskFull } from "../shared/errors.js";
import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { CommandJournal } from "../store/command-journal.js";
import { type Admitted, admit } from "./admit.js";
import { createCommandRegistry } from "./builtins.js";
import {
  type AnyCommandHandler,
  type CommandMeta,
  type CommandResponse,
  isEnvelope,
  peekEnvelopePayload,
  type ReplyRoute,
  readCommandId,
  readCommandName,
  type VerifyCommandEnvelope,
} from "./command.js";
import { type BuildResponse, failure, type RunningCommand, runCommand } from "./run-command.js";

export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_LIFETIME_MS = 60 * 60_000;
export const DEFAULT_STOP_GRACE_MS = 5_000;
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** The id of a response to a request whose id could not be read: never a valid command id. */
export const UNKNOWN_ID = "";

export interface DispatcherDeps {
  deviceId: string;
  groups: readonly string[];
  /** commands.requireSignature: glob patterns like "update.*", "agent.restart". */
  requireSignature: readonly string[];
  /** Verifies a signed envelope (typ pos-command+json) against trust.operatorRoots. */
  verify: VerifyCommandEnvelope;
  journal: CommandJournal;
  handlers: readonly AnyCommandHandler[];
  clock: Clock;
  /** Whether the wall clock can be believed; a command with an expiry is refused while it cannot. */
  clockTrusted(): boolean;
  /** Sends one response to the request's route (Response Topic, else ROOT/cmd/res). Must not throw. */
  respond(response: CommandResponse, route: ReplyRoute): void;
  /** `command.rejected` for every refusal, `command.executed` for every guarded command run. */
  audit(event: AgentEvent): void;
  log: Logger;
  defaultTimeoutMs?: number;
  /** Signed commands: expiresAt - issuedAt may not exceed this. */
  maxLifetimeMs?: number;
  /** How long stop() waits for aborted handlers before answering them as failed. */
  stopGraceMs?: number;
  maxPayloadBytes?: number;
}

export type CommandDispatcher = ReturnType<typeof createCommandDispatcher>;

/**
 * Turns command messages into exactly one terminal response each (CONTRACT 6). Every request with a
 * readable id is journaled, refusals included: a repeated id gets the first answer again and is never
 * evaluated or executed twice.
 */
export function createCommandDispatcher(deps: DispatcherDeps) {
  const { clock, journal, deviceId } = deps;
  const log = deps.log.child({ component: "commands" });
  const registry = createCommandRegistry(deps.handlers);
  const defaultTimeoutMs = deps.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const stopGraceMs = deps.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const maxPayloadBytes = deps.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const policy = {
    deviceId,
    groups: deps.groups,
    requireSignature: deps.requireSignature,
    maxLifetimeMs: deps.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS,
    registry,
    verify: deps.verify,
  };
  const active = new Map<string, RunningCommand>();
  let stopping = false;

  const build =
    (id: string): BuildResponse =>
    (status, extra = {}) => ({ v: 1, id, deviceId, status, ts: clock.now(), ...extra });

  function send(message: CommandResponse, route: ReplyRoute): void {
    try {
      deps.respond(message, route);
    } catch (error) {
      log.error({ err: error, id: message.id, status: message.status }, "sending a command response failed");
    }
  }

  function audit(event: AgentEvent): void {
    try {
      deps.audit(event);
    } catch (error) {
      log.error({ err: error, type: event.type }, "recording an audit event failed");
    }
  }

  /** Journals the terminal response (if the id was begun), then sends it. */
  function conclude(id: string, terminal: CommandResponse, route: ReplyRoute, journaled: boolean): void {
    if (journaled) {
      try {
        journal.finish(id, terminal, clock.now());
      } catch (error) {
        // Still answered now; the row stays 'running' and the next start reports it as interrupted.
        log.error({ err: error, id }, "journaling a command's terminal response failed");
      }
    }
    send(terminal, route);
  }

  function refuse(
    request: { id: string; cmd: string; signers: string[]; journaled: boolean },
    code: ErrorCode,
    message: string,
    route: ReplyRoute,
  ): void {
    const { id, cmd, signers } = request;
    log.warn({ id, cmd, code, signers }, `command refused: ${message}`);
    audit({
      type: "command.rejected",
      severity: code === "SIGNATURE_INVALID" || code === "UNTRUSTED_SIGNER" ? "high" : "medium",
      source: "commands",
      message: `command ${cmd === "" ? "(unnamed)" : cmd} ${id === UNKNOWN_ID ? "(no id)" : id} refused: ${code}: ${message}`,
      details: { id, cmd, code, signers },
    });
    conclude(id, build(id)("rejected", { code, message }), route, request.journaled);
  }

  async function handleRequest(payload: Buffer, route: ReplyRoute, meta: CommandMeta): Promise<void> {
    const unnamed = { id: UNKNOWN_ID, cmd: "", signers: [], journaled: false };
    if (payload.length > maxPayloadBytes) {
      refuse(unnamed, "TOO_LARGE", `payload of ${payload.length} bytes exceeds ${maxPayloadBytes}`, route);
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(payload.toString("utf8"));
    } catch (error) {
      refuse(unnamed, "BAD_REQUEST", `payload is not JSON: ${errorMessage(error)}`, route);
      return;
    }
    // Unverified until admit(): used only to name the request in the journal and in a refusal.
    const named = isEnvelope(message) ? peekEnvelopePayload(message) : message;
    const id = readCommandId(named);
    const cmd = readCommandName(named);
    if (id === undefined) {
      const why =
        named === undefined
          ? "the envelope's payload is not base64url JSON"
          : "id: must be 1-128 characters of A-Z a-z 0-9 . _ : -";
      refuse({ ...unnamed, cmd }, "BAD_REQUEST", why, route);
      return;
    }
    if (stopping) {
      // Not journaled: nothing was evaluated, so the same id sent again after the restart is.
      refuse(
        { id, cmd, signers: [], journaled: false },
        "BUSY",
        "the agent is stopping; send it again later",
        route,
      );
      return;
    }

    let begun: ReturnType<CommandJournal["begin"]>;
    try {
      begun = journal.begin(id, cmd, clock.now());
    } catch (error) {
      // A command that cannot be journaled is never run: its repeat could not be recognised.
      log.error({ err: error, id, cmd }, "command journal unavailable; command not run");
      const code: ErrorCode = isDiskFull(error) ? "DISK_FULL" : "INTERNAL";
      send(build(id)("failed", { code, message: `command journal: ${errorMessage(error)}` }), route);
      return;
    }
    if (begun.kind === "done") {
      log.info({ id, cmd, status: begun.response.status }, "repeated command id; sending its response again");
      send({ ...begun.response, duplicate: true }, route);
      return;
    }
    if (begun.kind === "running") {
      const pct = active.get(id)?.pct();
      send(
        build(id)("in_progress", { duplicate: true, ...(pct === undefined ? {} : { progress: pct }) }),
        route,
      );
      return;
    }

    let verdict: ReturnType<typeof admit>;
    try {
      verdict = admit(policy, { id, message, meta, now: clock.now(), clockTrusted: deps.clockTrusted() });
    } catch (error) {
      // A fault in a dependency (verify, clockTrusted): the request still gets its terminal status.
      log.error({ err: error, id, cmd }, "checking a command failed");
      const reason = new AgentError("INTERNAL", `checking the command failed: ${errorMessage(error)}`);
      conclude(id, build(id)("failed", failure(reason)), route, true);
      return;
    }
    if (!verdict.ok) {
      const { code, message: why, signers } = verdict.error;
      refuse({ id, cmd, signers, journaled: true }, code, why, route);
      return;
    }
    await execute(id, verdict.value, route);
  }

  function execute(id: string, admitted: Admitted, route: ReplyRoute): Promise<void> {
    const { request, handler, signers } = admitted;
    if (admitted.guarded) {
      // Before running: agent.restart and device.reboot end the process before any terminal status.
      audit({
        type: "command.executed",
        severity: "info",
        source: "commands",
        message: `command ${request.cmd} ${id} executed, signed by ${signers.join(", ")}`,
        details: { id, cmd: request.cmd, signers },
      });
    }
    log.info({ id, cmd: request.cmd, signers }, "running command");
    const running = runCommand({
      id,
      handler,
      args: admitted.args,
      signers,
      timeoutMs: handler.timeoutMs ?? defaultTimeoutMs,
      clock,
      build: build(id),
      update: (response) => send(response, route),
      conclude: (terminal) => {
        active.delete(id);
        conclude(id, terminal, route, true);
      },
    });
    active.set(id, running);
    return running.settled;
  }

  return {
    /**
     * One MQTT message from ROOT/cmd/req or a group topic. Resolves once the request has its terminal
     * response (or its duplicate answer); never rejects. Long commands keep it pending for their whole
     * run, so do not serialise messages on it: `void dispatcher.handle(…)`.
     */
    async handle(payload: Buffer, route: ReplyRoute, meta: CommandMeta = {}): Promise<void> {
      try {
        await handleRequest(payload, route, meta);
      } catch (error) {
        log.error({ err: error }, "handling a command message failed");
      }
    },

    /**
     * At start, before the first handle(): commands a crash left running are answered as failed
     * (INTERNAL) on the default route (ROOT/cmd/res), since their request's route was not kept.
     */
    recoverInterrupted(): void {
      let interrupted: ReturnType<CommandJournal["interrupted"]>;
      try {
        interrupted = journal.interrupted();
      } catch (error) {
        log.error({ err: error }, "reading interrupted commands failed");
        return;
      }
      for (const row of interrupted) {
        if (active.has(row.id)) continue;
        log.warn(
          { id: row.id, cmd: row.cmd, receivedAt: row.receivedAt },
          "command interrupted by a restart",
        );
        const message = `interrupted by a restart of the agent before ${row.cmd === "" ? "it" : row.cmd} finished`;
        conclude(row.id, build(row.id)("failed", { code: "INTERNAL", message }), {}, true);
      }
    },

    /**
     * Refuses new requests (BUSY), aborts running handlers and waits up to stopGraceMs for them; each
     * ends with its own outcome, or failed if it does not return in time.
     */
    async stop(): Promise<void> {
      stopping = true;
      const running = [...active.entries()];
      if (running.length === 0) return;
      const reason = new AgentError("INTERNAL", "interrupted: the agent is stopping");
      for (const [, execution] of running) execution.abort(reason);
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(running.map(([, execution]) => execution.settled)),
        new Promise<void>((resolve) => {
          grace = setTimeout(resolve, stopGraceMs);
        }),
      ]);
      clearTimeout(grace);
      const late = new AgentError(
        "INTERNAL",
        `interrupted: the agent is stopping (the command did not stop within ${stopGraceMs / 1000} s)`,
      );
      for (const [id, execution] of running) execution.end(build(id)("failed", failure(late)));
    },

    /** Ids of the commands running now. */
    running: (): string[] => [...active.keys()],
  };
}
