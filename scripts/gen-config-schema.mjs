#!/usr/bin/env node
// Writes the JSON Schemas in firmware-manifests/schema/ from the zod schemas in the build output:
// config.schema.json (the agent's config) and manifest.schema.json (a release manifest).
// Run `npm run build` first. With --check, only compares and exits 1 when a file is stale.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");

async function load(module) {
  try {
    return await import(`../dist/${module}`);
  } catch (error) {
    console.error(`cannot load dist/${module} (run \`npm run build\` first): ${error.message}`);
    process.exit(1);
  }
}

const config = await load("config/config-json-schema.js");
const manifest = await load("updates/manifest-json-schema.js");
const schemas = [
  { file: config.CONFIG_SCHEMA_FILE, text: config.renderConfigJsonSchema() },
  { file: manifest.MANIFEST_SCHEMA_FILE, text: manifest.renderManifestJsonSchema() },
];

let stale = false;
for (const { file, text } of schemas) {
  const target = join(root, file);
  if (check) {
    const current = await readFile(target, "utf8").catch(() => undefined);
    if (current === text) {
      console.log(`${file} is up to date`);
    } else {
      console.error(`${file} is out of date: run \`npm run build && npm run schema\``);
      stale = true;
    }
  } else {
    await writeFile(target, text);
    console.log(`wrote ${file}`);
  }
}
if (stale) process.exit(1);
