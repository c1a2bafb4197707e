import { readFile } from "node:fs/promises";
import { Envelope, fromBase64url } from "../pki/envelope.js";
import { AgentError, errorMessage } from "../shared/errors.js";
import { compareVersions, Manifest, type ManifestFile } from "./manifest.js";

/**
 * The base of a delta release: reading the base manifest, checking it fits the new release, and
 * choosing what the delta carries. The agent completes a delta by finding files in the installed
 * base by their SHA-256, so the choice is by content, not by path.
 */

/** The files a delta against `base` must carry: those whose content (by SHA-256) the base has nowhere. */
export function deltaFiles(files: readonly ManifestFile[], base: Manifest): ManifestFile[] {
  const baseHashes = new Set(base.files.map((file) => file.sha256));
  return files.filter((file) => !baseHashes.has(file.sha256));
}

/**
 * A manifest from a file: unsigned JSON, or a signed envelope whose payload is decoded without
 * verifying it (the operator's own release, used only to choose what a delta leaves out).
 */
export function parseManifestText(text: string, file: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AgentError("BAD_REQUEST", `${file}: not valid JSON (${errorMessage(error)})`, { cause: error });
  }
  if (typeof json === "object" && json !== null && "signatures" in json) {
    const envelope = Envelope.safeParse(json);
    if (!envelope.success) {
      throw new AgentError("BAD_REQUEST", `${file}: it has signatures but is not a well-formed envelope`);
    }
    const payload = fromBase64url(envelope.data.payload);
    try {
      json = JSON.parse(payload?.toString("utf8") ?? "");
    } catch (error) {
      throw new AgentError("BAD_REQUEST", `${file}: the envelope's payload is not base64url JSON`, {
        cause: error,
      });
    }
  }
  const parsed = Manifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? "" : `${issue.path.join(".")}: `;
    throw new AgentError("BAD_REQUEST", `${file}: not a release manifest (${where}${issue?.message})`);
  }
  return parsed.data;
}

export async function readManifestFile(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
    throw new AgentError("BAD_REQUEST", `${file}: cannot read the manifest (${code})`, { cause: error });
  }
  return parseManifestText(text, file);
}

/** A delta goes forward within one component, and never lowers the security floor. */
export function checkBase(manifest: Manifest, base: Manifest): void {
  if (base.component !== manifest.component) {
    throw new AgentError(
      "BAD_REQUEST",
      `the base manifest is for component "${base.component}", not "${manifest.component}"`,
    );
  }
  if (compareVersions(base.version, manifest.version) >= 0) {
    throw new AgentError(
      "BAD_REQUEST",
      `the base version ${base.version} is not older than ${manifest.version}; a delta goes from an older release to a newer one`,
    );
  }
  if (manifest.securityVersion < base.securityVersion) {
    throw new AgentError(
      "BAD_REQUEST",
      `securityVersion ${manifest.securityVersion} is below the base's ${base.securityVersion}; terminals that committed the base would refuse this release`,
    );
  }
}
