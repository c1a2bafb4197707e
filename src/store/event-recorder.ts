import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { Outbox } from "./outbox.js";

/**
 * Commits one event to the outbox. An event that cannot be stored (full disk, quota held by events
 * already) is logged, not thrown: the caller is reporting something else and must carry on.
 */
export function createEventRecorder(options: {
  outbox: Pick<Outbox, "append">;
  now: () => number;
  log: Logger;
}): (event: AgentEvent) => void {
  return (event) => {
    try {
      options.outbox.append([{ stream: "events", ts: options.now(), body: { ...event } }]);
    } catch (error) {
      options.log.error({ err: error, event: event.type }, "could not store event");
    }
  };
}
