import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Envelope } from "../../src/pki/envelope.js";
import type { KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import type { Manifest } from "../../src/updates/manifest.js";
import { buildRelease } from "../../src/updates/release-build.js";
import type { ReleaseServer } from "./release-server.js";

/** A release tree: path → content (string or bytes), optional mode per path. */
export type TreeSpec = Record<string, string | Buffer | { content: string | Buffer; mode: number }>;

export function writeTree(root: string, files: TreeSpec): void {
  for (const [path, spec] of Object.entries(files)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    const content = typeof spec === "string" || Buffer.isBuffer(spec) ? spec : spec.content;
    const mode = typeof spec === "string" || Buffer.isBuffer(spec) ? 0o644 : spec.mode;
    writeFileSync(full, content, { mode });
  }
}

export interface PublishedRelease {
  manifest: Manifest;
  envelope: Envelope;
  artifactFile: string;
  artifactPath: string;
}

/**
 * Builds a release with the real `pos-ops release build` code, serves its artifact from `server`
 * and signs the manifest with each signer: what an operator does, end to end.
 */
export async function publishRelease(options: {
  workDir: string;
  server: ReleaseServer;
  component: string;
  version: string;
  files: TreeSpec;
  signers: readonly KeyAndCert[];
  securityVersion?: number;
  models?: string[];
  base?: Manifest;
  /** Changes the manifest after building (before signing): for attack rows. */
  edit?: (manifest: Manifest) => Manifest;
}): Promise<PublishedRelease> {
  const tree = join(
    options.workDir,
    `tree-${options.component}-${options.version}-${Math.random().toString(36).slice(2)}`,
  );
  writeTree(tree, options.files);
  const out = join(options.workDir, "out");
  const built = await buildRelease(
    {
      component: options.component,
      version: options.version,
      from: tree,
      outDir: out,
      url: options.server.url("/artifacts/"),
      expiresDays: 30,
      force: true,
      ...(options.securityVersion === undefined ? {} : { securityVersion: options.securityVersion }),
      ...(options.models === undefined ? {} : { models: options.models }),
      ...(options.base === undefined ? {} : { base: options.base }),
    },
    { now: Date.now },
  );
  const artifactPath = new URL(built.manifest.artifact.url).pathname;
  options.server.put(artifactPath, readFileSync(built.artifactFile));
  const manifest = options.edit ? options.edit(built.manifest) : built.manifest;
  let envelope: Envelope | undefined;
  for (const signer of options.signers) {
    envelope = signEnvelope({
      payload: manifest,
      typ: "pos-manifest+json",
      keyPem: signer.keyPem,
      chainPem: [signer.certPem],
      ...(envelope === undefined ? {} : { existing: envelope }),
    });
  }
  if (envelope === undefined) throw new Error("publishRelease needs at least one signer");
  return { manifest, envelope, artifactFile: built.artifactFile, artifactPath };
}
