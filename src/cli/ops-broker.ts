import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { COMMAND_ID_PATTERN } from "../commands/command.js";
import type { Envelope } from "../pki/envelope.js";
import { signEnvelope } from "../pki/sign-envelope.js";
import { errorMessage } from "../shared/errors.js";
import {
  type CommandClient,
  type CommandClientOptions,
  connectCommandClient,
  FLEET_NAME_PATTERN,
} from "../transport/command-client.js";
import { UsageError } from "./args.js";

/** What `pos-ops cmd` and `pos-ops diag` share: broker options, --wait, --sign, and their I/O. */

/** Time, ids, output and the broker come in here so the commands can run against fakes. */
export interface OpsDeps {
  now(): number;
  newId(): string;
  /** One line (or block) to stdout, without its newline. */
  out(text: string): void;
  /** One line to stderr, without its newline. */
  err(text: string): void;
  /** Rewrites the live progress line on stderr; only called when `progressTty`. Empty text clears it. */
  progress(text: string): void;
  /** stderr is a terminal: show a progress line while waiting. */
  progressTty: boolean;
  connect(options: CommandClientOptions): Promise<CommandClient>;
}

export function processDeps(): OpsDeps {
  return {
    now: () => Date.now(),
    newId: () => `c-${randomBytes(8).toString("hex")}`,
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    progress: (text) => process.stderr.write(`\r\x1b[K${text}`),
    progressTty: process.stderr.isTTY === true,
    connect: connectCommandClient,
  };
}

export const BROKER_OPTIONS = {
  broker: { type: "string" },
  tenant: { type: "string" },
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  username: { type: "string" },
  "password-file": { type: "string" },
} as const;

export const BROKER_HELP = `Broker: --broker URL (mqtt://, mqtts://, ws://, wss://) and --tenant T are required.
--ca FILE trusts that CA for the broker's certificate (else the system's); --cert FILE --key FILE
present a client certificate (mTLS); --username U --password-file F log in. Certificates are always
checked. Replies come back on pos-ops/{clientId}/replies, so a broker ACL must let this client
subscribe there and publish to the command topics.`;

type BrokerValues = { [K in keyof typeof BROKER_OPTIONS]?: string | undefined };

export function readBrokerOptions(
  command: string,
  values: BrokerValues,
): { tenant: string; client: CommandClientOptions } {
  const url = required(command, "broker", values.broker, "URL");
  if (!/^(mqtts?|wss?):\/\/[^/]/.test(url)) {
    throw new UsageError(
      `${command}: --broker must be an mqtt://, mqtts://, ws:// or wss:// URL, not "${url}"`,
    );
  }
  const tenant = required(command, "tenant", values.tenant, "T");
  if (!FLEET_NAME_PATTERN.test(tenant)) {
    throw new UsageError(`${command}: --tenant "${tenant}" must be 1-64 characters of A-Z a-z 0-9 . _ -`);
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError(`${command}: --cert and --key go together (a client certificate and its key)`);
  }
  const client: CommandClientOptions = { url };
  const tls: NonNullable<CommandClientOptions["tls"]> = {};
  if (values.ca !== undefined) tls.ca = readText(values.ca, "the broker CA certificate");
  if (values.cert !== undefined) tls.cert = readText(values.cert, "the client certificate");
  if (values.key !== undefined) tls.key = readText(values.key, "the client key");
  if (Object.keys(tls).length > 0) client.tls = tls;
  if (values.username !== undefined) client.username = values.username;
  const passwordFile = values["password-file"];
  if (passwordFile !== undefined) {
    if (values.username === undefined) {
      throw new UsageError(`${command}: --password-file needs --username`);
    }
    client.password = readText(passwordFile, "the broker password").replace(/\r?\n$/, "");
  }
  return { tenant, client };
}

/** Seconds, whole or not, from 0.1 to a day. */
export function parseWait(command: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || seconds < 0.1 || seconds > 86_400) {
    throw new UsageError(`${command}: --wait must be a number of seconds from 0.1 to 86400, not "${value}"`);
  }
  return seconds;
}

export function checkCommandId(command: string, id: string): string {
  if (!COMMAND_ID_PATTERN.test(id)) {
    throw new UsageError(`${command}: --id "${id}" must be 1-128 characters of A-Z a-z 0-9 . _ : -`);
  }
  return id;
}

export type Signer = (command: object) => Envelope;

/** `--sign KEY,CERT`: an operator key and its certificate; undefined without the option. */
export function readSigner(command: string, value: string | undefined): Signer | undefined {
  if (value === undefined) return undefined;
  const files = value.split(",");
  const [keyFile, certFile] = files;
  if (files.length !== 2 || !keyFile || !certFile) {
    throw new UsageError(
      `${command}: --sign takes KEY,CERT (two files separated by a comma), not "${value}"`,
    );
  }
  const keyPem = readText(keyFile, "the signing key");
  const certPem = readText(certFile, "the signing certificate");
  const sign: Signer = (payload) =>
    signEnvelope({ payload, typ: "pos-command+json", keyPem, chainPem: [certPem] });
  try {
    // Once up front, so a wrong key or certificate stops us before anything is sent.
    sign({});
  } catch (error) {
    throw new Error(`--sign ${keyFile},${certFile}: ${errorMessage(error)}`, { cause: error });
  }
  return sign;
}

/** `{id, cmd, args, target, issuedAt, expiresAt}`; expiresAt covers the wait and at least a minute. */
export function buildCommand(options: {
  id: string;
  cmd: string;
  args: Record<string, unknown>;
  target: string;
  now: number;
  waitSec: number;
}): {
  id: string;
  cmd: string;
  args: Record<string, unknown>;
  target: string;
  issuedAt: number;
  expiresAt: number;
} {
  return {
    id: options.id,
    cmd: options.cmd,
    args: options.args,
    target: options.target,
    issuedAt: options.now,
    expiresAt: options.now + Math.max(60_000, Math.ceil(options.waitSec * 1000)),
  };
}

export function required(
  command: string,
  option: string,
  value: string | undefined,
  placeholder: string,
): string {
  if (value === undefined || value === "") {
    throw new UsageError(`${command}: --${option} ${placeholder} is required`);
  }
  return value;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
    throw new Error(`${file}: cannot read ${what} (${code})`, { cause: error });
  }
}

export async function closeQuietly(client: CommandClient, deps: OpsDeps): Promise<void> {
  try {
    await client.close();
  } catch (error) {
    deps.err(`warning: closing the broker connection failed: ${errorMessage(error)}`);
  }
}
