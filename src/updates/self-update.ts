import { readFileSync } from "node:fs";
import { open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fsyncDir } from "./releases-dir.js";

/**
 * The agent updating itself (issue 6 item 8) talks to bin/pos-agent-launcher through three small
 * files in its component directory (the launcher's header comment is the other half):
 * - `pending` (`version=`, `previous=`, `maxBoots=`): written before `current` is switched; while it
 *   exists the launcher counts starts in `boot-count` and switches back after maxBoots;
 * - `rolled-back` (`version=`, `previous=`, `reason=`): written by the launcher when it did so;
 * - the agent commits by removing `pending` and `boot-count`.
 */
export const SELF_COMPONENT = "pos-agent";
export const DEFAULT_MAX_BOOTS = 3;

export interface SelfUpdateDeps {
  /** This agent's own version (package.json). */
  version: string;
  /** `POS_AGENT_LAUNCHER_HOME` as the launcher exported it; undefined when not started by it. */
  launcherHome: string | undefined;
  /** A clean stop after the response is out; the service manager starts the launcher again. */
  restart(): void;
  /** Connected to the broker and the database healthy, within the window; undefined when it is. */
  selfCheck(signal: AbortSignal): Promise<string | undefined>;
}

/** Why this agent cannot update itself, or undefined when it can. */
export function selfUpdateProblem(
  self: SelfUpdateDeps | undefined,
  componentRoot: string,
): string | undefined {
  if (self === undefined) return "this agent was not built to update itself";
  if (self.launcherHome === undefined) {
    return "the agent was not started by pos-agent-launcher, which is what switches back a release that does not start";
  }
  if (self.launcherHome !== componentRoot) {
    return `pos-agent-launcher looks in ${self.launcherHome}, but this agent installs into ${componentRoot} (set POS_AGENT_DATA_DIR to the config's dataDir)`;
  }
  return undefined;
}

export async function writePending(
  home: string,
  pending: { version: string; previous: string; maxBoots?: number },
): Promise<void> {
  const text = `version=${pending.version}\nprevious=${pending.previous}\nmaxBoots=${pending.maxBoots ?? DEFAULT_MAX_BOOTS}\n`;
  const temporary = join(home, ".pending.tmp");
  await writeFile(temporary, text, { mode: 0o644 });
  const handle = await open(temporary, "r");
  await handle.sync();
  await handle.close();
  await rename(temporary, join(home, "pending"));
  await fsyncDir(home);
}

/** The commit of a self-update, and the clean-up after a rollback. */
export async function clearPending(home: string): Promise<void> {
  await rm(join(home, "pending"), { force: true });
  await rm(join(home, "boot-count"), { force: true });
  await fsyncDir(home).catch(() => undefined);
}

/** The launcher's reason for switching back, once (the file is removed). */
export async function takeRolledBack(home: string): Promise<string | undefined> {
  const file = join(home, "rolled-back");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  await rm(file, { force: true });
  const reason = /^reason=(.*)$/m.exec(text)?.[1];
  return `pos-agent-launcher switched back: ${reason ?? "the new release did not start"}`;
}
