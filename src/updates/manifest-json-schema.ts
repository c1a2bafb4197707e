import { z } from "zod";
import { Artifact, Manifest } from "./manifest.js";

export const MANIFEST_SCHEMA_ID = "https://pos-agent.local/schema/manifest.schema.json";

/** Where the generated schema is committed, relative to the repository root. */
export const MANIFEST_SCHEMA_FILE = "firmware-manifests/schema/manifest.schema.json";

const PATH_RULES =
  "A relative path: no leading /, no . or .. or empty segment, no backslash, no control character, at most 1024 bytes.";

/**
 * The JSON Schema of an unsigned release manifest (the payload of a pos-manifest+json envelope).
 * Refinements have no JSON Schema form; the ones an editor can show are spelt out, the rest
 * (unique paths, no file that is also a directory, expiresAt after issuedAt) live in descriptions.
 */
export function manifestJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(Manifest, {
    io: "input",
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema === Artifact) {
        jsonSchema.if = { properties: { type: { const: "delta" } }, required: ["type"] };
        // biome-ignore lint/suspicious/noThenProperty: "then" is the JSON Schema keyword, not a thenable
        jsonSchema.then = { required: ["base"] };
      }
      if (zodSchema === Manifest) {
        jsonSchema.description =
          "files lists the complete release tree: each path once, and no path that is also a directory of another; expiresAt is later than issuedAt.";
      }
    },
  });
  const files = (generated.properties as Record<string, { items?: { properties?: Record<string, object> } }>)
    .files;
  const path = files?.items?.properties?.path;
  if (path !== undefined) Object.assign(path, { minLength: 1, description: PATH_RULES });
  const { $schema, ...rest } = generated;
  return { $schema, $id: MANIFEST_SCHEMA_ID, title: "pos-agent release manifest", ...rest };
}

/** The exact bytes committed: 2-space JSON and a trailing newline. */
export function renderManifestJsonSchema(): string {
  return `${JSON.stringify(manifestJsonSchema(), null, 2)}\n`;
}
