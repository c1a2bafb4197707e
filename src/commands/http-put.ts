import { createReadStream } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AgentError, errorMessage } from "../shared/errors.js";

/** A link idle this long (nothing sent or received) fails the upload. */
const IDLE_TIMEOUT_MS = 30_000;

/** The URL as it may be shown: no user information, no query (a presigned URL's query is a credential). */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * PUTs a file with its length known up front (object stores refuse chunked uploads). TLS is checked
 * as Node does by default; redirects are not followed (a PUT body cannot be replayed safely).
 * Resolves with the HTTP status on 2xx; anything else is UPLOAD_FAILED naming the URL and status.
 */
export async function httpPutFile(options: {
  url: URL;
  file: string;
  bytes: number;
  contentType: string;
  signal: AbortSignal;
  onProgress?: (sent: number) => void;
}): Promise<{ status: number }> {
  const { url, bytes, signal } = options;
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const shown = displayUrl(url);
  const req = request(url, {
    method: "PUT",
    headers: { "content-type": options.contentType, "content-length": String(bytes) },
    signal,
    timeout: IDLE_TIMEOUT_MS,
  });
  req.on("timeout", () => req.destroy(new Error(`no progress for ${IDLE_TIMEOUT_MS / 1000} s`)));
  const answered = new Promise<number>((resolve, reject) => {
    req.once("response", (response) => {
      response.resume();
      response.once("end", () => resolve(response.statusCode ?? 0));
      response.once("error", reject);
    });
    req.once("error", reject);
  });
  answered.catch(() => undefined);
  let sent = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      options.onProgress?.(sent);
      done(null, chunk);
    },
  });
  try {
    await Promise.all([pipeline(createReadStream(options.file), meter, req), answered]);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    // A server may answer (e.g. 413) and close before reading the whole body: its status says more.
    const status = await Promise.race([answered, Promise.resolve(undefined)]).catch(() => undefined);
    if (status !== undefined) throw failed(shown, status);
    throw new AgentError("UPLOAD_FAILED", `upload to ${shown} failed: ${errorMessage(error)}`, {
      retryable: true,
      cause: error,
    });
  }
  const status = await answered;
  if (status < 200 || status > 299) throw failed(shown, status);
  return { status };
}

function failed(shown: string, status: number): AgentError {
  return new AgentError("UPLOAD_FAILED", `upload to ${shown} was answered HTTP ${status}`, {
    retryable: status >= 500 || status === 408 || status === 429,
    details: { status },
  });
}
