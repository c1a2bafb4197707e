import { readFileSync } from "node:fs";

/** The agent's own version, read once from package.json beside dist/ or src/. */
export function readAgentVersion(): string {
  const raw = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  const version = (JSON.parse(raw) as { version?: unknown }).version;
  return typeof version === "string" ? version : "0.0.0";
}

/** Before any build of this agent existed; the floor when dist/build-info.json is missing (running from src). */
const SOURCE_FLOOR_MS = Date.UTC(2026, 0, 1);

/** When this agent was built (dist/build-info.json, written by scripts/stamp-build.mjs). */
export function readBuildTime(): number {
  try {
    const raw = readFileSync(new URL("../build-info.json", import.meta.url), "utf8");
    const builtAt = (JSON.parse(raw) as { builtAt?: unknown }).builtAt;
    return typeof builtAt === "number" && Number.isFinite(builtAt) ? builtAt : SOURCE_FLOOR_MS;
  } catch {
    return SOURCE_FLOOR_MS;
  }
}
