#!/usr/bin/env node
// Writes firmware-manifests/schema/config.schema.json from the zod schema in the build output.
// Run `npm run build` first. With --check, only compares and exits 1 when the file is stale.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");

let schemaModule;
try {
  schemaModule = await import("../dist/config/config-json-schema.js");
} catch (error) {
  console.error(
    `cannot load dist/config/config-json-schema.js (run \`npm run build\` first): ${error.message}`,
  );
  process.exit(1);
}
const { CONFIG_SCHEMA_FILE, renderConfigJsonSchema } = schemaModule;
const target = join(root, CONFIG_SCHEMA_FILE);
const wanted = renderConfigJsonSchema();

if (check) {
  const current = await readFile(target, "utf8").catch(() => undefined);
  if (current !== wanted) {
    console.error(`${CONFIG_SCHEMA_FILE} is out of date: run \`npm run build && npm run schema\``);
    process.exit(1);
  }
  console.log(`${CONFIG_SCHEMA_FILE} is up to date`);
} else {
  await writeFile(target, wanted);
  console.log(`wrote ${CONFIG_SCHEMA_FILE}`);
}
