import type { Clock } from "../shared/clock.js";
import { AgentError, type ErrorCode, errorMessage, isAgentError } from "../shared/errors.js";
import type { AnyCommandHandler, CommandContext, CommandResponse, CommandStatus } from "./command.js";

/** `in_progress` responses of one command go out at most this often. */
export const PROGRESS_INTERVAL_MS = 1_000;

export type BuildResponse = (
  status: CommandStatus,
  extra?: Partial<Omit<CommandResponse, "v" | "id" | "deviceId" | "status">>,
) => CommandResponse;

export interface RunCommandInput {
  /** The request's id, handed to the handler (an update job remembers which command started it). */
  id: string;
  handler: AnyCommandHandler;
  /** What the handler's own args schema returned. */
  args: unknown;
  signers: readonly string[];
  timeoutMs: number;
  clock: Clock;
  /** A response of this command with the current time. */
  build: BuildResponse;
  /** accepted and in_progress. */
  update(response: CommandResponse): void;
  /** Called exactly once, with the terminal response. */
  conclude(response: CommandResponse): void;
}

export interface RunningCommand {
  /** Last progress reported, for an `in_progress` answer to a repeated id. */
  pct(): number | undefined;
  /** Aborts the handler's signal; its outcome still decides the terminal status. */
  abort(reason: AgentError): void;
  /** Concludes now with this response, unless already concluded; the handler is left to itself. */
  end(response: CommandResponse): void;
  /** Resolves once the terminal response is out. */
  settled: Promise<void>;
}

/** `code` and `message` of a failure: the AgentError's code, else INTERNAL. */
export function failure(error: unknown): { code: ErrorCode; message: string } {
  return { code: isAgentError(error) ? error.code : "INTERNAL", message: errorMessage(error) };
}

/**
 * Runs one admitted command: `accepted` first for long ones, rate-limited `in_progress`, a timeout that
 * aborts the handler's signal and fails the command at once (a handler that ignores its signal cannot
 * hold the answer back), and exactly one terminal response whatever the handler does.
 */
export function runCommand(input: RunCommandInput): RunningCommand {
  const { handler, build, clock, timeoutMs } = input;
  const controller = new AbortController();
  const long = handler.long === true;
  let done = false;
  let pct: number | undefined;
  let lastProgressAt = Number.NEGATIVE_INFINITY;
  let resolveSettled = () => {};
  const settled = new Promise<void>((resolve) => {
    resolveSettled = resolve;
  });

  const end = (terminal: CommandResponse) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    input.conclude(terminal);
    resolveSettled();
  };

  const context: CommandContext = {
    commandId: input.id,
    signal: controller.signal,
    signers: [...input.signers],
    progress(p) {
      if (!long || done) return;
      if (typeof p.pct === "number" && Number.isFinite(p.pct)) pct = Math.min(100, Math.max(0, p.pct));
      const at = clock.monotonic();
      if (at - lastProgressAt < PROGRESS_INTERVAL_MS) return;
      lastProgressAt = at;
      const note = typeof p.note === "string" ? { message: p.note.slice(0, 1024) } : {};
      input.update(build("in_progress", { ...(pct === undefined ? {} : { progress: pct }), ...note }));
    },
  };

  if (long) input.update(build("accepted"));
  const timer = setTimeout(() => {
    const reason = new AgentError("INTERNAL", `timed out after ${timeoutMs / 1000} s`);
    controller.abort(reason);
    end(build("failed", failure(reason)));
  }, timeoutMs);

  void Promise.resolve()
    .then(() => handler.run(input.args, context))
    .then(
      (result) => {
        let terminal: CommandResponse;
        try {
          terminal = build("succeeded", { result: jsonObject(result) });
        } catch (error) {
          terminal = build("failed", failure(error));
        }
        end(terminal);
      },
      (error: unknown) => {
        // Aborted (timeout, stop): the abort's reason says why, not whatever the handler threw then.
        end(build("failed", failure(controller.signal.aborted ? controller.signal.reason : error)));
      },
    );

  return {
    pct: () => pct,
    abort: (reason) => controller.abort(reason),
    end,
    settled,
  };
}

/** A handler's result as it will be journaled and sent: a JSON object. */
function jsonObject(value: unknown): Record<string, unknown> {
  const json: unknown = JSON.parse(JSON.stringify(value) ?? "null");
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AgentError("INTERNAL", "the command returned no result object");
  }
  return json as Record<string, unknown>;
}
