import { scrubCardData, scrubValue } from "./card-scrubber.js";
import type { AgentEvent } from "./events.js";
import type { Logger } from "./logger.js";

/** After the first event of a source, further redactions are summed into one event per interval. */
const DEFAULT_EVENT_INTERVAL_MS = 5 * 60_000;
const MAX_SOURCES = 64;
const OTHER_SOURCES = "other";

export interface CardDataGuardOptions {
  now(): number;
  /** Records the high-severity event that says a component logs card data (never the number itself). */
  raise(event: AgentEvent): void;
  log: Logger;
  eventIntervalMs?: number;
}

interface SourceTally {
  total: number;
  unreported: number;
  lastRaisedAt: number | undefined;
}

/**
 * Applies the card-number rule (REFERENCE 4) to everything a source hands the agent, counts every
 * redaction per source, and fails closed: when the scrubber itself fails, the data is withheld.
 */
export function createCardDataGuard(options: CardDataGuardOptions) {
  const interval = options.eventIntervalMs ?? DEFAULT_EVENT_INTERVAL_MS;
  const tallies = new Map<string, SourceTally>();
  let failures = 0;
  let atPublish = 0;

  function count(named: string, redactions: number): void {
    // Sources come from apps and config; a bounded number of them get their own tally and metric.
    const source = tallies.has(named) || tallies.size < MAX_SOURCES ? named : OTHER_SOURCES;
    let tally = tallies.get(source);
    if (tally === undefined) {
      tally = { total: 0, unreported: 0, lastRaisedAt: undefined };
      tallies.set(source, tally);
    }
    tally.total += redactions;
    tally.unreported += redactions;
    const now = options.now();
    if (tally.lastRaisedAt === undefined || now - tally.lastRaisedAt >= interval) raise(source, tally, now);
  }

  function raise(source: string, tally: SourceTally, now: number): void {
    const redactions = tally.unreported;
    tally.unreported = 0;
    tally.lastRaisedAt = now;
    options.raise({
      type: "card_data.redacted",
      severity: "high",
      source,
      message: `${redactions} card number${redactions === 1 ? "" : "s"} masked in data from ${source}: a component is logging card data`,
      details: { redactions, total: tally.total },
    });
  }

  function failed(source: string, error: unknown): void {
    failures += 1;
    // The error may quote its input; log only what failed, never the data.
    options.log.error(
      { source, error: error instanceof Error ? error.name : typeof error },
      "card-data scrubber failed; the data was withheld",
    );
  }

  return {
    /** The line with card data masked, or undefined if it must be withheld. */
    line(source: string, text: string): string | undefined {
      try {
        const result = scrubCardData(text);
        if (result.redactions > 0) count(source, result.redactions);
        return result.text;
      } catch (error) {
        failed(source, error);
        return undefined;
      }
    },

    /** Every string (and long integer) inside a JSON value masked, or undefined if it must be withheld. */
    value<T>(source: string, value: T): T | undefined {
      try {
        const result = scrubValue(value);
        if (result.redactions > 0) count(source, result.redactions);
        return result.value as T;
      } catch (error) {
        failed(source, error);
        return undefined;
      }
    },

    /**
     * The second look at captured lines (the logs stream), just before they are published. Telemetry
     * and events are the agent's own words (events from the intake were scrubbed on the way in), and
     * their file names and counters would only give false hits. Finding anything here means a path
     * skipped the first scrub: it is masked, counted and logged as a bug; a failure withholds the text.
     */
    checkStored(stream: string, body: string): string {
      if (stream !== "logs") return body;
      try {
        if (scrubCardData(body).redactions === 0) return body;
        const parsed = JSON.parse(body) as Record<string, unknown>;
        // Strings only: numbers in a stored record are the agent's own (timestamps, counts), or were
        // turned into masked strings when the record was stored.
        const result = scrubStrings(parsed);
        if (result.redactions === 0) return body;
        const source = typeof parsed.source === "string" ? parsed.source : stream;
        atPublish += result.redactions;
        options.log.error(
          { source, redactions: result.redactions },
          "card data reached the publisher; masked",
        );
        count(source, result.redactions);
        return JSON.stringify(result.value);
      } catch (error) {
        failed(stream, error);
        return JSON.stringify({
          source: "agent",
          level: "error",
          line: "[withheld: the card-data check failed]",
        });
      }
    },

    /** Raises the summed event of every source whose interval has passed; call it now and then. */
    tick(): void {
      const now = options.now();
      for (const [source, tally] of tallies) {
        if (
          tally.unreported > 0 &&
          tally.lastRaisedAt !== undefined &&
          now - tally.lastRaisedAt >= interval
        ) {
          raise(source, tally, now);
        }
      }
    },

    /** Redactions per source since start, and scrubber failures (data withheld). */
    metrics(): Record<string, number> {
      const metrics: Record<string, number> = {
        "agent.scrub.failures": failures,
        "agent.scrub.atPublish": atPublish,
      };
      let all = 0;
      for (const [source, tally] of tallies) {
        metrics[`agent.scrub.redactions.${source}`] = tally.total;
        all += tally.total;
      }
      metrics["agent.scrub.redactions"] = all;
      return metrics;
    },
  };
}
export type CardDataGuard = ReturnType<typeof createCardDataGuard>;

/** Every string inside a parsed JSON value scrubbed; numbers and keys left alone. */
function scrubStrings(value: unknown): { value: unknown; redactions: number } {
  if (typeof value === "string") {
    const result = scrubCardData(value);
    return { value: result.text, redactions: result.redactions };
  }
  if (Array.isArray(value)) {
    let redactions = 0;
    const items = value.map((item) => {
      const result = scrubStrings(item);
      redactions += result.redactions;
      return result.value;
    });
    return { value: items, redactions };
  }
  if (typeof value === "object" && value !== null) {
    let redactions = 0;
    const entries = Object.entries(value).map(([key, item]) => {
      const result = scrubStrings(item);
      redactions += result.redactions;
      return [key, result.value] as const;
    });
    return { value: Object.fromEntries(entries), redactions };
  }
  return { value, redactions: 0 };
}
