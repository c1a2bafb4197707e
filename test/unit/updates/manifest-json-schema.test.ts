import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Manifest } from "../../../src/updates/manifest.js";
import {
  MANIFEST_SCHEMA_FILE,
  manifestJsonSchema,
  renderManifestJsonSchema,
} from "../../../src/updates/manifest-json-schema.js";

const ROOT = new URL("../../../", import.meta.url);
const EXAMPLES = new URL("firmware-manifests/examples/", ROOT);

describe("manifest JSON Schema", () => {
  it("matches the committed firmware-manifests/schema/manifest.schema.json", () => {
    const committed = readFileSync(new URL(MANIFEST_SCHEMA_FILE, ROOT), "utf8");
    // On failure: npm run build && npm run schema
    expect(committed).toBe(renderManifestJsonSchema());
  });

  it("requires the contract's fields, refuses unknown keys, and asks a delta for its base", () => {
    const schema = manifestJsonSchema() as {
      $id: string;
      required: string[];
      additionalProperties: boolean;
      properties: { artifact: { if: unknown; then: unknown } };
    };
    expect(schema.$id).toMatch(/manifest\.schema\.json$/);
    expect(schema.required).toEqual([
      "v",
      "component",
      "version",
      "securityVersion",
      "issuedAt",
      "expiresAt",
      "artifact",
      "files",
    ]);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.artifact.then).toEqual({ required: ["base"] });
  });

  it("has example manifests, a full and a delta, that the schema accepts", () => {
    const examples = readdirSync(EXAMPLES).filter((name) => name.endsWith(".manifest.json"));
    const types = examples.map((name) => {
      const parsed = Manifest.safeParse(JSON.parse(readFileSync(new URL(name, EXAMPLES), "utf8")));
      expect(parsed.error?.issues, name).toBeUndefined();
      return parsed.data?.artifact.type;
    });
    expect(types.sort()).toEqual(["delta", "full"]);
  });
});
