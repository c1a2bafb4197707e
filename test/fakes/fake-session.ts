import type { Connection, MqttSession, SessionListener } from "../../src/transport/mqtt-session.js";

export interface SentMessage {
  topic: string;
  payload: string;
  retain: boolean;
  ack(error?: Error & { code?: number }): void;
}

/**
 * A broker link the test drives by hand: it records what is published and the test decides when (and
 * how) each message is acknowledged. Only what the publisher and presence use is implemented; the
 * rest throws, so a new dependency on the session shows up as a failing test, not a silent no-op.
 */
export function createFakeSession() {
  const listeners = new Set<SessionListener>();
  const sent: SentMessage[] = [];
  const forced: string[] = [];
  let connection: Connection | undefined;
  let generation = 0;

  function down(reason: string): void {
    const was = connection;
    connection = undefined;
    if (was !== undefined) for (const listener of listeners) listener.down(was, reason);
  }

  const session = {
    start(): void {
      throw new Error("fake session: start() is not implemented");
    },
    subscribe(listener: SessionListener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    get connection() {
      return connection;
    },
    listen(): () => void {
      throw new Error("fake session: listen() is not implemented");
    },
    get reconnects(): number {
      throw new Error("fake session: reconnects is not implemented");
    },
    publish(
      topic: string,
      payload: string | Buffer,
      opts: { retain?: boolean },
      onAck: (error: Error | undefined) => void,
    ) {
      if (connection === undefined) return false;
      sent.push({
        topic,
        payload: payload.toString(),
        retain: opts.retain === true,
        ack: (error) => onAck(error),
      });
      return true;
    },
    /** As the real session: the link drops (the test brings it up again when it wants). */
    forceReconnect(reason: string): void {
      forced.push(reason);
      down(reason);
    },
    stop(): Promise<void> {
      throw new Error("fake session: stop() is not implemented");
    },
  } satisfies MqttSession;

  return {
    session: session as MqttSession,
    sent,
    forced,
    up(overrides: Partial<Connection> = {}): Connection {
      generation += 1;
      connection = {
        generation,
        sessionId: generation,
        url: "mqtt://fake",
        protocolVersion: 5,
        receiveMaximum: undefined,
        maximumPacketSize: undefined,
        connectedAt: 0,
        ...overrides,
      };
      for (const listener of listeners) listener.up(connection);
      return connection;
    },
    down(reason = "link lost"): void {
      down(reason);
    },
  };
}
