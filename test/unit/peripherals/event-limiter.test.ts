import { describe, expect, it } from "vitest";
import { createEventLimiter } from "../../../src/peripherals/event-limiter.js";
import type { AgentEvent } from "../../../src/shared/events.js";

describe("event limiter", () => {
  it("passes events up to the rate, counts the rest behind one flapping event, and says when it resumes", () => {
    let now = 0;
    const recorded: AgentEvent[] = [];
    const limiter = createEventLimiter({
      source: "pinpad",
      perMinute: 3,
      now: () => now,
      record: (event) => recorded.push(event),
    });
    const change = (i: number): AgentEvent => ({ type: `peripheral.link.e${i}`, severity: "medium" });
    for (let i = 0; i < 10; i++) limiter.record(change(i));
    expect(recorded.map((event) => event.type)).toEqual([
      "peripheral.link.e0",
      "peripheral.link.e1",
      "peripheral.link.e2",
      "peripheral.flapping",
    ]);
    expect(limiter.suppressed).toBe(7);

    now += 20_000; // one token back
    limiter.record(change(10));
    expect(recorded.slice(4).map((event) => [event.type, event.details])).toEqual([
      ["peripheral.events_resumed", { suppressed: 7 }],
      ["peripheral.link.e10", undefined],
    ]);
    expect(limiter.suppressed).toBe(0);
  });
});
