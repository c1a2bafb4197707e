import { describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/shared/logger.js";
import { createRetainedStates } from "../../../src/transport/retained-states.js";
import { createFakeSession } from "../../fakes/fake-session.js";

const TOPIC = "pos/v1/acme/POS-1/periph/printer/state";

function setup() {
  const fake = createFakeSession();
  const retained = createRetainedStates({ session: fake.session, log: silentLogger });
  const payloads = () => fake.sent.map((message) => JSON.parse(message.payload) as { n: number });
  return { fake, retained, payloads };
}

describe("retained states", () => {
  it("keeps one publish per topic in flight and sends only the newest when it is acknowledged", () => {
    const { fake, retained, payloads } = setup();
    fake.up();
    retained.set(TOPIC, { n: 1 });
    retained.set(TOPIC, { n: 2 });
    retained.set(TOPIC, { n: 3 });
    expect(payloads()).toEqual([{ n: 1 }]);
    expect(fake.sent[0]?.retain).toBe(true);
    fake.sent[0]?.ack();
    expect(payloads()).toEqual([{ n: 1 }, { n: 3 }]);
    fake.sent[1]?.ack();
    expect(fake.sent).toHaveLength(2);
  });

  it("sends what changed while offline on connect, and everything again on a new connection", () => {
    const { fake, retained, payloads } = setup();
    retained.set(TOPIC, { n: 1 });
    retained.set(`${TOPIC}2`, { n: 2 });
    expect(fake.sent).toHaveLength(0);
    fake.up();
    expect(payloads()).toEqual([{ n: 1 }, { n: 2 }]);
    for (const message of fake.sent) message.ack();
    fake.down();
    fake.up();
    expect(payloads()).toEqual([{ n: 1 }, { n: 2 }, { n: 1 }, { n: 2 }]);
  });

  it("ignores the acknowledgement of an earlier connection and does not lose the state it carried", () => {
    const { fake, retained, payloads } = setup();
    fake.up();
    retained.set(TOPIC, { n: 1 });
    const stale = fake.sent[0];
    fake.down();
    fake.up();
    stale?.ack(new Error("connection closed"));
    retained.set(TOPIC, { n: 2 });
    // The resend of n=1 on the new connection is in flight; n=2 follows its acknowledgement.
    expect(payloads()).toEqual([{ n: 1 }, { n: 1 }]);
    fake.sent[1]?.ack();
    expect(payloads()).toEqual([{ n: 1 }, { n: 1 }, { n: 2 }]);
  });
});
