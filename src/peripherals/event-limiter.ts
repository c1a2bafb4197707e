import type { AgentEvent } from "../shared/events.js";

export interface EventLimiterOptions {
  source: string;
  /** Events a peripheral may raise per minute before the rest are only counted. */
  perMinute: number;
  now(): number;
  record(event: AgentEvent): void;
}

/**
 * A flapping cable or a printer port fed text at the wrong baud rate can change state many times a
 * second; each change is an event, and events are the last thing the outbox drops. A token bucket per
 * peripheral lets the first ones through, counts the rest, and says once when it starts and once when
 * it stops holding events back.
 */
export function createEventLimiter(options: EventLimiterOptions) {
  const capacity = options.perMinute;
  let tokens = capacity;
  let last = options.now();
  let suppressed = 0;

  function refill(now: number): void {
    if (now > last) tokens = Math.min(capacity, tokens + ((now - last) * capacity) / 60_000);
    last = Math.max(last, now);
  }

  return {
    record(event: AgentEvent): void {
      refill(options.now());
      if (tokens >= 1) {
        tokens -= 1;
        if (suppressed > 0) {
          options.record({
            type: "peripheral.events_resumed",
            severity: "info",
            source: options.source,
            message: `${options.source}: ${suppressed} events were counted, not sent, while it flapped`,
            details: { suppressed },
          });
          suppressed = 0;
        }
        options.record(event);
        return;
      }
      if (suppressed === 0) {
        options.record({
          type: "peripheral.flapping",
          severity: "medium",
          source: options.source,
          message: `${options.source} changes state faster than ${capacity} times a minute; further changes are counted, the retained state stays current`,
          details: { perMinute: capacity },
        });
      }
      suppressed += 1;
    },
    get suppressed(): number {
      return suppressed;
    },
  };
}
