import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CONFIG_SCHEMA_FILE,
  configJsonSchema,
  renderConfigJsonSchema,
} from "../../../src/config/config-json-schema.js";

const ROOT = new URL("../../../", import.meta.url);

describe("config JSON Schema", () => {
  it("matches the committed firmware-manifests/schema/config.schema.json", () => {
    const committed = readFileSync(new URL(CONFIG_SCHEMA_FILE, ROOT), "utf8");
    // On failure: npm run build && npm run schema
    expect(committed).toBe(renderConfigJsonSchema());
  });

  it("requires only deviceId, tenant and mqtt, and refuses unknown keys", () => {
    const schema = configJsonSchema();
    expect(schema.$id).toMatch(/config\.schema\.json$/);
    expect(schema.required).toEqual(["deviceId", "tenant", "mqtt"]);
    expect(schema.additionalProperties).toBe(false);
  });
});
