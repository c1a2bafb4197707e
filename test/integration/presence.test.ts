import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { startAgent, writeAgentConfig } from "../helpers/agent-process.js";
import { startConsumer } from "../helpers/consumer.js";
import { suiteResources } from "../helpers/suite-resources.js";

type State = { online: boolean; state: string; sessionId: number };

describe("presence", () => {
  const { dir, cleanups } = suiteResources("pos-presence");

  for (const protocolVersion of [5, 4] as const) {
    it(`publishes the Will of the killed session, a newer birth, and offline on clean stop (MQTT ${protocolVersion === 5 ? "5" : "3.1.1"})`, async () => {
      const broker = await startMosquitto({ dir: join(dir, `broker-${protocolVersion}`) });
      cleanups.push(() => broker.kill());
      const config = await writeAgentConfig({
        dir: join(dir, `agent-${protocolVersion}`),
        brokerUrl: broker.url,
        mqtt: { protocolVersion, willDelaySec: 1 },
      });
      const watcher = await startConsumer({
        url: broker.url,
        clientId: `watcher-${protocolVersion}`,
        topics: [`${config.root}/state`],
        persistent: false,
      });
      cleanups.push(() => watcher.close());
      const states = () => watcher.messages.map((message) => message.payload as unknown as State);

      const first = await startAgent(config);
      await watcher.waitFor(() => states().some((s) => s.state === "ready"), 10_000, "first birth");
      const firstBirth = states().find((s) => s.state === "ready") as State;
      expect(firstBirth.online).toBe(true);

      await first.kill("SIGKILL");
      await watcher.waitFor(() => states().some((s) => s.state === "lost"), 15_000, "the Will");
      const will = states().find((s) => s.state === "lost") as State;
      expect(will).toMatchObject({ online: false, sessionId: firstBirth.sessionId });

      const second = await startAgent(config);
      // A session may publish its birth more than once (rebirth when its facts change): look for the
      // first birth of a newer session.
      const newerBirth = () => states().find((s) => s.state === "ready" && s.sessionId > will.sessionId);
      await watcher.waitFor(() => newerBirth() !== undefined, 10_000, "second birth");
      const secondBirth = newerBirth() as State;
      expect(secondBirth.sessionId).toBeGreaterThan(will.sessionId);

      expect((await second.kill("SIGTERM")).code).toBe(0);
      // A newcomer sees the retained state: offline, from the latest session, not a late Will.
      const newcomer = await startConsumer({
        url: broker.url,
        clientId: `newcomer-${protocolVersion}`,
        topics: [`${config.root}/state`],
        persistent: false,
      });
      cleanups.push(() => newcomer.close());
      await newcomer.waitFor(() => newcomer.messages.length > 0, 5000, "retained state");
      const retained = newcomer.messages[0];
      expect(retained?.retain).toBe(true);
      expect(retained?.payload).toMatchObject({
        online: false,
        state: "offline",
        sessionId: secondBirth.sessionId,
      });
      // Nothing after the offline message: a clean DISCONNECT discards the Will.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(states().at(-1)).toMatchObject({ state: "offline", sessionId: secondBirth.sessionId });
    });
  }
});
