import { readFileSync } from "node:fs";

/** The agent's own version, read once from package.json beside dist/ or src/. */
export function readAgentVersion(): string {
  const raw = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  const version = (JSON.parse(raw) as { version?: unknown }).version;
  return typeof version === "string" ? version : "0.0.0";
}
