import type { KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import type { CommandClient, FleetResponse } from "../../src/transport/command-client.js";

/**
 * Sends one command to a device signed by `operator` (target, issuedAt and expiresAt as signed
 * commands need) and resolves with its terminal response; throws when none came in time.
 */
export async function sendSigned(options: {
  client: CommandClient;
  tenant: string;
  deviceId: string;
  operator: KeyAndCert;
  id: string;
  cmd: string;
  args: object;
  timeoutMs: number;
}): Promise<FleetResponse> {
  const now = Date.now();
  const request = signEnvelope({
    payload: {
      id: options.id,
      cmd: options.cmd,
      args: options.args,
      target: options.deviceId,
      issuedAt: now,
      expiresAt: now + 300_000,
    },
    typ: "pos-command+json",
    keyPem: options.operator.keyPem,
    chainPem: [options.operator.certPem],
  });
  const answer = await options.client.request(
    options.tenant,
    { kind: "device", deviceId: options.deviceId },
    request,
    { id: options.id, timeoutMs: options.timeoutMs },
  );
  if (answer === undefined)
    throw new Error(`no answer to ${options.cmd} ${options.id} within ${options.timeoutMs} ms`);
  return answer.response;
}
