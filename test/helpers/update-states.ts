import mqtt from "mqtt";

export interface UpdateStateMessage {
  state: string;
  toVersion: string;
  fromVersion?: string;
  code?: string;
  message?: string;
  reason?: string;
  [key: string]: unknown;
}

export interface UpdateStateWatch {
  /** Every payload of ROOT/update/state received, in order (retained ones included). */
  readonly states: UpdateStateMessage[];
  /** The newest state reported for `toVersion`. */
  last(toVersion: string): UpdateStateMessage | undefined;
  /** Resolves once `toVersion` has been reported in `state`; rejects after `timeoutMs`. */
  reached(toVersion: string, state: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Subscribes, as the fleet would, to a device's retained update state. */
export async function watchUpdateStates(
  brokerUrl: string,
  root: string,
  clientId: string,
): Promise<UpdateStateWatch> {
  const client = mqtt.connect(brokerUrl, { clientId, protocolVersion: 5 });
  await new Promise((resolve) => client.once("connect", resolve));
  const states: UpdateStateMessage[] = [];
  client.on("message", (_topic, payload) => {
    if (payload.length > 0) states.push(JSON.parse(payload.toString()) as UpdateStateMessage);
  });
  await client.subscribeAsync(`${root}/update/state`, { qos: 1 });
  const last = (toVersion: string) => states.filter((s) => s.toVersion === toVersion).at(-1);
  return {
    states,
    last,
    async reached(toVersion, state, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!states.some((s) => s.toVersion === toVersion && s.state === state)) {
        if (Date.now() > deadline) {
          throw new Error(
            `${toVersion} did not reach ${state} in ${timeoutMs} ms; last: ${JSON.stringify(last(toVersion))}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () => client.endAsync(),
  };
}
