import type { Logger } from "../shared/logger.js";
import type { MqttSession } from "./mqtt-session.js";

/**
 * Retained "last known value" topics (`ROOT/periph/{name}/state`): only the newest payload of each
 * topic matters, so these bypass the outbox. Each is published when it changes while connected, and
 * every one not yet acknowledged by this broker connection is published again on the next connect.
 */
export function createRetainedStates(options: { session: MqttSession; log: Logger }) {
  const { session, log } = options;
  const latest = new Map<string, { payload: string; version: number }>();
  const acknowledged = new Map<string, number>();
  let version = 0;

  function send(topic: string): void {
    const entry = latest.get(topic);
    if (entry === undefined || acknowledged.get(topic) === entry.version) return;
    const sentVersion = entry.version;
    const sent = session.publish(topic, entry.payload, { qos: 1, retain: true }, (error) => {
      if (error !== undefined) {
        log.debug({ topic, err: error }, "retained state not acknowledged; sent again on reconnect");
        return;
      }
      if ((acknowledged.get(topic) ?? -1) < sentVersion) acknowledged.set(topic, sentVersion);
    });
    if (!sent) log.debug({ topic }, "not connected; retained state goes out on connect");
  }

  session.subscribe({
    up() {
      // A new connection may be to another broker (failover) that never saw our states.
      acknowledged.clear();
      for (const topic of latest.keys()) send(topic);
    },
    down() {},
  });

  return {
    set(topic: string, payload: object): void {
      version += 1;
      latest.set(topic, { payload: JSON.stringify(payload), version });
      send(topic);
    },
  };
}
export type RetainedStates = ReturnType<typeof createRetainedStates>;
