import type { Database } from "better-sqlite3";
import type { AgentEvent } from "../shared/events.js";
import type { MetaStore } from "./meta.js";
import { countsPerStream, type Outbox, type RecordInput, type Stream } from "./outbox.js";

export type DropCounts = Record<Stream, number>;

/**
 * One `agent.outbox.dropped` event per increase of the drop counters. The event and the note of what
 * was reported commit together, so a crash or a full disk between the two never loses a report nor
 * sends one twice.
 */
export function createDropReport(options: {
  db: Database;
  outbox: Outbox;
  meta: MetaStore;
  maxBytes: number;
  now: () => number;
}): () => boolean {
  const { outbox, meta } = options;
  return options.db.transaction(() => {
    const { streams } = outbox.stats();
    const totals = countsPerStream((stream) => streams[stream].dropped);
    const reported = meta.getJson<DropCounts>("dropsReported") ?? countsPerStream(() => 0);
    const dropped = countsPerStream((stream) => totals[stream] - reported[stream]);
    if (dropped.telemetry + dropped.events + dropped.logs <= 0) return false;
    outbox.append([dropEvent(dropped, totals, options.maxBytes, options.now())]);
    meta.setJson("dropsReported", totals);
    return true;
  });
}

function dropEvent(dropped: DropCounts, totals: DropCounts, maxBytes: number, ts: number): RecordInput {
  const event: AgentEvent = {
    type: "agent.outbox.dropped",
    severity: dropped.events > 0 ? "high" : "medium",
    source: "agent",
    message: `outbox quota reached: dropped ${dropped.telemetry} telemetry, ${dropped.logs} log and ${dropped.events} event records`,
    details: { dropped, totals, maxBytes },
  };
  return { stream: "events", ts, body: { ...event } };
}
