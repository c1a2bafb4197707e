import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "agent.pid";

/**
 * One agent per data directory: a second one would share the database's writer, the sessionId and
 * the MQTT client id, and the two would knock each other off the broker. A pid file created with
 * O_EXCL; a file left by a process that is gone (SIGKILL, power loss) is taken over.
 */
export function acquireDataDirLock(dataDir: string, pid = process.pid): { release(): void } {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return {
        release() {
          try {
            if (readFileSync(path, "utf8").trim() === String(pid)) unlinkSync(path);
          } catch {
            // Already gone: nothing to release.
          }
        },
      };
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw error;
      const holder = Number(readFileSync(path, "utf8").trim());
      if (Number.isSafeInteger(holder) && holder !== pid && isAgentProcess(holder)) {
        throw new Error(`another pos-agent (pid ${holder}) is running with data directory ${dataDir}`);
      }
      unlinkSync(path);
    }
  }
  throw new Error(`could not take the lock ${path}`);
}

/** Alive, and (where /proc tells) a node process running pos-agent, not an unrelated reuse of the pid. */
export function isAgentProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as { code?: string }).code !== "EPERM") return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("pos-agent");
  } catch {
    return true;
  }
}
