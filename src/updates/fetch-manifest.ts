import { AgentError, errorMessage } from "../shared/errors.js";

/** A signed manifest is a few KiB; a megabyte is generous and bounds what an endless server costs. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

/** GETs a manifest envelope (update.apply {"manifestUrl"}): JSON, at most 1 MiB, TLS checked. */
export async function fetchManifest(url: string, signal: AbortSignal): Promise<unknown> {
  const shown = (() => {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  })();
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) });
  } catch (error) {
    throw new AgentError("DOWNLOAD_FAILED", `fetching the manifest ${shown} failed: ${errorMessage(error)}`, {
      retryable: true,
      cause: error,
    });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new AgentError(
      "DOWNLOAD_FAILED",
      `fetching the manifest ${shown} was answered HTTP ${response.status}`,
    );
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > MAX_MANIFEST_BYTES) {
      await response.body?.cancel();
      throw new AgentError("TOO_LARGE", `the manifest ${shown} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch (error) {
    throw new AgentError("BAD_REQUEST", `the manifest ${shown} is not JSON`, { cause: error });
  }
}
