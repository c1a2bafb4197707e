import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

/**
 * A temp directory for one integration suite and a list of things to stop after it (brokers, agent
 * processes, proxies), stopped in reverse order even if a test failed half-way.
 */
export function suiteResources(prefix: string): { dir: string; cleanups: Array<() => Promise<unknown>> } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });
  return { dir, cleanups };
}
