import { randomBytes } from "node:crypto";
import type { IClientOptions, IClientPublishOptions, MqttClient } from "mqtt";
import mqtt from "mqtt";
import { z } from "zod";
import { COMMAND_STATUSES, isTerminalStatus } from "../shared/command-response.js";
import { errorMessage } from "../shared/errors.js";
import { err, ok, type Result } from "../shared/result.js";
import { createTopics } from "./topics.js";

/** Device ids, tenants and group names share the config's charset (CONTRACT 2). */
export const FLEET_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export type CommandTarget = { kind: "device"; deviceId: string } | { kind: "group"; group: string };

/** `DEVICE` or `group:NAME`, as in a command's `target` (CONTRACT 6). */
export function parseTarget(text: string): Result<CommandTarget, string> {
  const group = text.startsWith("group:") ? text.slice("group:".length) : undefined;
  const name = group ?? text;
  if (!FLEET_NAME_PATTERN.test(name)) {
    return err(`"${text}" is not a device id or group:NAME (1-64 characters of A-Z a-z 0-9 . _ -)`);
  }
  return ok(group === undefined ? { kind: "device", deviceId: name } : { kind: "group", group: name });
}

/** The `target` field of a command sent to this target. */
export function targetText(target: CommandTarget): string {
  return target.kind === "device" ? target.deviceId : `group:${target.group}`;
}

/** `pos/v1/{tenant}/{deviceId}/cmd/req` or `pos/v1/{tenant}/groups/{group}/cmd/req` (CONTRACT 3). */
export function requestTopic(tenant: string, target: CommandTarget): string {
  return target.kind === "device"
    ? createTopics(tenant, target.deviceId).cmdReq
    : createTopics(tenant, "-").groupCmdReq(target.group);
}

/**
 * A response as the fleet side reads it. Looser than the agent's own schema on purpose: an operator's
 * tool must show a newer agent's answer (an unknown code, an extra field) rather than drop it.
 */
export const FleetResponse = z.looseObject({
  v: z.literal(1),
  id: z.string(),
  deviceId: z.string(),
  status: z.enum(COMMAND_STATUSES),
  ts: z.number(),
  code: z.string().optional(),
  message: z.string().optional(),
  progress: z.number().optional(),
  result: z.record(z.string(), z.unknown()).optional(),
  duplicate: z.boolean().optional(),
});
export type FleetResponse = z.infer<typeof FleetResponse>;

export interface ReceivedResponse {
  /** The command id it answers: the Correlation Data, else the response's own `id`. */
  id: string;
  response: FleetResponse;
  /** `now()` when it arrived. */
  receivedAt: number;
}

export interface CommandClientOptions {
  url: string;
  /** Default `pos-ops-` and 12 random hex digits; also names the reply topic. */
  clientId?: string;
  /** PEM contents (the CLI reads the files). Certificate checks are never relaxed. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  username?: string;
  password?: string;
  /** Default 10 000. */
  connectTimeoutMs?: number;
  /**
   * How long the broker keeps our session (and queues replies) across a dropped connection. Default
   * 120; close() ends it at once.
   */
  sessionExpirySec?: number;
  /** Default Date.now; also used for `receivedAt`. */
  now?: () => number;
}

export interface SendOptions {
  /** The command id, sent as Correlation Data. Default: the command's own `id` (an envelope has none). */
  id?: string;
  /** MQTT 5 Message Expiry Interval, seconds: a request the broker could not deliver in time is dropped. */
  expirySec?: number;
}

export interface CommandClient {
  readonly clientId: string;
  /** `pos-ops/{clientId}/replies`: outside every device root, so device ACLs need not grant it. */
  readonly replyTopic: string;
  /**
   * Publishes one request (QoS 1) with our reply topic and the id as Correlation Data; resolves on the
   * broker's PUBACK. `command` is a bare command or a signed envelope.
   */
  send(tenant: string, target: CommandTarget, command: object, options?: SendOptions): Promise<string>;
  /** Every valid response to a command this client sent, as it arrives. */
  onResponse(listener: (received: ReceivedResponse) => void): () => void;
  /** Messages on the reply topic that are not a response to one of our commands, described in a sentence. */
  onInvalid(listener: (problem: string) => void): () => void;
  /** The responses so far to command `id`, in arrival order (from every device, for a group). */
  responses(id: string): readonly ReceivedResponse[];
  /** Drops what is kept for `id`; later responses to it count as invalid. */
  forget(id: string): void;
  /**
   * Sends and resolves with the first terminal response from `deviceId` (default: the device target),
   * or undefined when none arrived within timeoutMs.
   */
  request(
    tenant: string,
    target: CommandTarget,
    command: object,
    options: SendOptions & { timeoutMs: number; deviceId?: string },
  ): Promise<ReceivedResponse | undefined>;
  /** Ends the session (nothing more is queued for us) and the connection. */
  close(): Promise<void>;
}

const CLOSE_GRACE_MS = 2_000;

/**
 * The fleet side of MQTT 5 request/response (CONTRACT 6): one connection, one private reply topic,
 * responses matched to requests by Correlation Data. Resolves once subscribed; rejects with one
 * sentence when the first connection or the subscription fails. Later drops are reconnected by
 * mqtt.js, and the broker keeps replies for the session meanwhile.
 */
export async function connectCommandClient(options: CommandClientOptions): Promise<CommandClient> {
  const now = options.now ?? Date.now;
  const clientId = options.clientId ?? `pos-ops-${randomBytes(6).toString("hex")}`;
  const replyTopic = `pos-ops/${clientId}/replies`;
  const byId = new Map<string, ReceivedResponse[]>();
  const responseListeners = new Set<(received: ReceivedResponse) => void>();
  const invalidListeners = new Set<(problem: string) => void>();

  const opts: IClientOptions = {
    clientId,
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: options.sessionExpirySec ?? 120 },
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    reconnectPeriod: 1_000,
    rejectUnauthorized: true,
  };
  if (options.tls?.ca !== undefined) opts.ca = options.tls.ca;
  if (options.tls?.cert !== undefined) opts.cert = options.tls.cert;
  if (options.tls?.key !== undefined) opts.key = options.tls.key;
  if (options.username !== undefined) opts.username = options.username;
  if (options.password !== undefined) opts.password = options.password;

  const client = mqtt.connect(options.url, opts);
  // Requests and answers are small and interactive: Nagle's algorithm would hold each write back
  // until the previous one is acknowledged (40 ms and more on Linux with delayed ACKs).
  client.on("connect", () => noDelay(client));
  await firstConnect(client, options.url);
  try {
    const grants = await client.subscribeAsync(replyTopic, { qos: 1 });
    const refused = grants.find((grant) => grant.qos >= 0x80);
    if (refused !== undefined) {
      throw new Error(`the broker refused the subscription to ${replyTopic} (reason ${refused.qos})`);
    }
  } catch (error) {
    client.end(true);
    throw new Error(`${options.url}: ${errorMessage(error)}`, { cause: error });
  }

  const invalid = (problem: string): void => {
    for (const listener of invalidListeners) listener(problem);
  };

  client.on("message", (topic, payload, packet) => {
    if (topic !== replyTopic) return;
    const correlation = packet.properties?.correlationData?.toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(payload.toString("utf8"));
    } catch {
      invalid(`a reply${correlation === undefined ? "" : ` to ${correlation}`} is not JSON`);
      return;
    }
    const parsed = FleetResponse.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue === undefined ? "" : `${issue.path.join(".") || "(root)"}: ${issue.message}`;
      invalid(`a reply${correlation === undefined ? "" : ` to ${correlation}`} is not a response (${where})`);
      return;
    }
    const id = correlation ?? parsed.data.id;
    const list = byId.get(id);
    if (list === undefined) {
      invalid(`a reply from ${parsed.data.deviceId} answers ${id}, which this client did not send`);
      return;
    }
    const received: ReceivedResponse = { id, response: parsed.data, receivedAt: now() };
    list.push(received);
    for (const listener of responseListeners) listener(received);
  });

  async function send(
    tenant: string,
    target: CommandTarget,
    command: object,
    sendOptions: SendOptions = {},
  ): Promise<string> {
    const ownId = (command as { id?: unknown }).id;
    const id = sendOptions.id ?? (typeof ownId === "string" ? ownId : undefined);
    if (id === undefined) throw new Error("the command has no id; pass one in the send options");
    if (!byId.has(id)) byId.set(id, []);
    const properties: NonNullable<IClientPublishOptions["properties"]> = {
      responseTopic: replyTopic,
      correlationData: Buffer.from(id, "utf8"),
      contentType: "application/json",
    };
    if (sendOptions.expirySec !== undefined) {
      properties.messageExpiryInterval = Math.max(1, Math.ceil(sendOptions.expirySec));
    }
    const topic = requestTopic(tenant, target);
    try {
      await client.publishAsync(topic, JSON.stringify(command), { qos: 1, retain: false, properties });
    } catch (error) {
      throw new Error(`publishing ${id} to ${topic} failed: ${errorMessage(error)}`, { cause: error });
    }
    return id;
  }

  function onResponse(listener: (received: ReceivedResponse) => void): () => void {
    responseListeners.add(listener);
    return () => responseListeners.delete(listener);
  }

  return {
    clientId,
    replyTopic,
    send,
    onResponse,
    onInvalid(listener) {
      invalidListeners.add(listener);
      return () => invalidListeners.delete(listener);
    },
    responses: (id) => byId.get(id) ?? [],
    forget(id) {
      byId.delete(id);
    },
    async request(tenant, target, command, requestOptions) {
      const deviceId = requestOptions.deviceId ?? (target.kind === "device" ? target.deviceId : undefined);
      let resolveTerminal: (received: ReceivedResponse | undefined) => void = () => {};
      const terminal = new Promise<ReceivedResponse | undefined>((resolve) => {
        resolveTerminal = resolve;
      });
      let id: string | undefined;
      const isAnswer = (received: ReceivedResponse): boolean =>
        received.id === id &&
        isTerminalStatus(received.response.status) &&
        (deviceId === undefined || received.response.deviceId === deviceId);
      const unsubscribe = onResponse((received) => {
        if (isAnswer(received)) resolveTerminal(received);
      });
      const timer = setTimeout(() => resolveTerminal(undefined), requestOptions.timeoutMs);
      try {
        const sendOptions: SendOptions = {};
        if (requestOptions.id !== undefined) sendOptions.id = requestOptions.id;
        if (requestOptions.expirySec !== undefined) sendOptions.expirySec = requestOptions.expirySec;
        id = await send(tenant, target, command, sendOptions);
        // An answer can beat the PUBACK here.
        const early = byId.get(id)?.find(isAnswer);
        if (early !== undefined) resolveTerminal(early);
        return await terminal;
      } finally {
        clearTimeout(timer);
        unsubscribe();
      }
    },
    async close() {
      responseListeners.clear();
      invalidListeners.clear();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          client.end(true);
          resolve();
        }, CLOSE_GRACE_MS);
        // Session expiry 0 in the DISCONNECT: the broker forgets us now instead of queueing replies.
        client.end(false, { properties: { sessionExpiryInterval: 0 } }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

function noDelay(client: MqttClient): void {
  const stream = client.stream as { setNoDelay?: (noDelay: boolean) => unknown } | undefined;
  stream?.setNoDelay?.(true);
}

/** Resolves on the first CONNACK; rejects, and stops retrying, if the connection fails first. */
function firstConnect(client: MqttClient, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError: string | undefined;
    const onError = (error: Error): void => {
      lastError = errorMessage(error);
    };
    const cleanup = (): void => {
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
    };
    const onConnect = (): void => {
      cleanup();
      // Later errors are reconnected by mqtt.js; a listener keeps them from being thrown.
      client.on("error", () => {});
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      client.on("error", () => {});
      client.end(true);
      reject(new Error(`cannot connect to the broker at ${url}: ${lastError ?? "the connection closed"}`));
    };
    client.on("connect", onConnect);
    client.on("error", onError);
    client.on("close", onClose);
  });
}
