import { z } from "zod";
import { Peripheral } from "./peripheral-schema.js";
import { Config, MqttTls } from "./schema.js";

export const CONFIG_SCHEMA_ID = "https://pos-agent.local/schema/config.schema.json";

/** Where the generated schema is committed, relative to the repository root. */
export const CONFIG_SCHEMA_FILE = "firmware-manifests/schema/config.schema.json";

/** The JSON Schema of the config file as operators write it (defaults shown, nothing required that has one). */
export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(Config, {
    io: "input",
    // Refinements have no JSON Schema form; these two are simple enough to spell out for editors.
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema === Peripheral) jsonSchema.oneOf = [{ required: ["path"] }, { required: ["match"] }];
      if (zodSchema === MqttTls) jsonSchema.dependentRequired = { cert: ["key"], key: ["cert"] };
    },
  });
  const { $schema, ...rest } = generated;
  return { $schema, $id: CONFIG_SCHEMA_ID, title: "pos-agent configuration", ...rest };
}

/** The exact bytes committed: 2-space JSON and a trailing newline. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
