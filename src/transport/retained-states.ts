import type { Logger } from "../shared/logger.js";
import type { MqttSession } from "./mqtt-session.js";

interface Entry {
  payload: string;
  version: number;
  /** The version this connection's broker acknowledged, if any. */
  acknowledged: number | undefined;
  inflight: boolean;
}

/**
 * Retained "last known value" topics (`ROOT/periph/{name}/state`): only the newest payload of each
 * topic matters, so these bypass the outbox. At most one publish per topic is in flight; changes
 * that arrive meanwhile collapse into the newest, sent when the broker acknowledges (so a flapping
 * device cannot pile publishes into mqtt.js's memory, REFERENCE 1). On every connect, everything is
 * sent again: a failover broker may never have seen our states.
 */
export function createRetainedStates(options: { session: MqttSession; log: Logger }) {
  const { session, log } = options;
  const entries = new Map<string, Entry>();
  let generation = 0;

  function send(topic: string): void {
    const entry = entries.get(topic);
    if (entry === undefined || entry.inflight || entry.acknowledged === entry.version) return;
    const sentVersion = entry.version;
    const sentGeneration = generation;
    const sent = session.publish(topic, entry.payload, { qos: 1, retain: true }, (error) => {
      if (sentGeneration !== generation) return; // a callback of an earlier connection
      entry.inflight = false;
      if (error !== undefined) {
        log.debug({ topic, err: error }, "retained state not acknowledged; sent again on reconnect");
        return;
      }
      entry.acknowledged = sentVersion;
      send(topic);
    });
    if (sent) entry.inflight = true;
    else log.debug({ topic }, "not connected; retained state goes out on connect");
  }

  session.subscribe({
    up() {
      generation += 1;
      for (const entry of entries.values()) {
        entry.acknowledged = undefined;
        entry.inflight = false;
      }
      for (const topic of entries.keys()) send(topic);
    },
    down() {},
  });

  return {
    set(topic: string, payload: object): void {
      const entry = entries.get(topic);
      const next = JSON.stringify(payload);
      if (entry === undefined) {
        entries.set(topic, { payload: next, version: 1, acknowledged: undefined, inflight: false });
      } else {
        entry.payload = next;
        entry.version += 1;
      }
      send(topic);
    },
  };
}
export type RetainedStates = ReturnType<typeof createRetainedStates>;
