import type { Logger } from "../shared/logger.js";
import type { InboundMessage, MqttSession } from "./mqtt-session.js";
import type { Topics } from "./topics.js";

/** Where a response goes: the request's MQTT 5 Response Topic with its Correlation Data, else ROOT/cmd/res. */
export interface ReplyRoute {
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface CommandRequest {
  payload: Buffer;
  route: ReplyRoute;
  /** Left of the MQTT 5 Message Expiry Interval, if the request had one. */
  messageExpirySec?: number;
  receivedVia: "device" | "group";
  /** The group whose topic carried it. */
  group?: string;
}

/**
 * The command topics of CONTRACT 3 and 6: ROOT/cmd/req and each configured group's topic in, the
 * responses out. Responses are published directly (not through the outbox): the terminal one is kept
 * in the command journal, and a repeated request gets it again.
 */
export function createCommandChannel(options: {
  session: MqttSession;
  topics: Topics;
  groups: readonly string[];
  log: Logger;
}) {
  const { session, topics, log } = options;
  const groupOf = new Map(options.groups.map((group) => [topics.groupCmdReq(group), group]));

  return {
    listen(handler: (request: CommandRequest) => void): () => void {
      return session.listen([topics.cmdReq, ...groupOf.keys()], (message: InboundMessage) => {
        const group = groupOf.get(message.topic);
        if (message.topic !== topics.cmdReq && group === undefined) return;
        const route: ReplyRoute = {};
        if (message.responseTopic !== undefined) route.responseTopic = message.responseTopic;
        if (message.correlationData !== undefined) route.correlationData = message.correlationData;
        const request: CommandRequest = {
          payload: message.payload,
          route,
          receivedVia: group === undefined ? "device" : "group",
        };
        if (group !== undefined) request.group = group;
        if (message.messageExpirySec !== undefined) request.messageExpirySec = message.messageExpirySec;
        handler(request);
      });
    },

    /** Publishes one response (QoS 1, not retained); false when not connected (the journal keeps it). */
    respond(response: object, route: ReplyRoute): boolean {
      const topic = route.responseTopic ?? topics.cmdRes;
      const properties =
        route.correlationData === undefined ? undefined : { correlationData: route.correlationData };
      const sent = session.publish(
        topic,
        JSON.stringify(response),
        { qos: 1, retain: false, ...(properties === undefined ? {} : { properties }) },
        (error) => {
          if (error !== undefined) log.warn({ err: error, topic }, "command response not acknowledged");
        },
      );
      if (!sent)
        log.warn({ topic }, "not connected; command response dropped (a repeated request gets it again)");
      return sent;
    },
  };
}
export type CommandChannel = ReturnType<typeof createCommandChannel>;
