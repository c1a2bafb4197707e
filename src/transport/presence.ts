import type { Logger } from "../shared/logger.js";
import type { Connection, MqttSession } from "./mqtt-session.js";
import type { Topics } from "./topics.js";

/** What the birth message says about the device beyond the session (CONTRACT 5). */
export interface BirthFacts {
  agentVersion: string;
  model: string;
  components: Record<string, string>;
  peripherals: Array<{ name: string; driver: string; online: boolean }>;
  capabilities: string[];
  /** Extra fields later capabilities add (current alerts, update state). */
  extra?: Record<string, unknown>;
}

const BIRTH_ACK_MS = 30_000;

export function willPayload(sessionId: number, ts: number): string {
  return JSON.stringify({ v: 1, online: false, state: "lost", sessionId, ts });
}

/**
 * Birth on every connect and an explicit `offline` before a clean disconnect, retained on ROOT/state,
 * each carrying the sessionId so a consumer can ignore a late Will of an older session (Sparkplug B).
 */
export function createPresence(options: {
  session: MqttSession;
  topics: Topics;
  facts: () => BirthFacts;
  now: () => number;
  log: Logger;
}) {
  const { session, topics, log } = options;

  function publishState(payload: object, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const sent = session.publish(
        topics.state,
        JSON.stringify(payload),
        { qos: 1, retain: true },
        (error) => {
          clearTimeout(timer);
          if (error !== undefined) log.warn({ err: error }, "state message not acknowledged");
          resolve(error === undefined);
        },
      );
      if (!sent) {
        clearTimeout(timer);
        resolve(false);
      }
    });
  }

  let goingOffline = false;

  function birth(connection: Connection): void {
    const { extra, ...facts } = options.facts();
    const payload = {
      ...extra,
      v: 1,
      online: true,
      state: "ready",
      ts: options.now(),
      sessionId: connection.sessionId,
      ...facts,
    };
    void publishState(payload, BIRTH_ACK_MS).then((acknowledged) => {
      // Without its birth the retained state would keep saying `lost` for this whole connection.
      if (!acknowledged && session.connection?.generation === connection.generation) {
        session.forceReconnect("birth not acknowledged");
      }
    });
  }

  session.subscribe({ up: birth, down: () => {} });

  return {
    /** Publishes the birth again (the `rebirth` command, or after the facts changed). */
    rebirth(): void {
      const connection = session.connection;
      if (connection !== undefined && !goingOffline) birth(connection);
    },

    /** The clean-stop message; resolves false if it could not be delivered in time. No birth follows it. */
    offline(timeoutMs: number): Promise<boolean> {
      goingOffline = true;
      const connection = session.connection;
      if (connection === undefined) return Promise.resolve(false);
      return publishState(
        { v: 1, online: false, state: "offline", ts: options.now(), sessionId: connection.sessionId },
        timeoutMs,
      );
    },
  };
}
export type Presence = ReturnType<typeof createPresence>;
