import si from "systeminformation";
import type { Logger } from "../../shared/logger.js";

/** What the fleet inventory wants to know about a terminal's platform, once per start. */
export interface SystemFacts {
  os: { platform: string; distro: string; release: string; kernel: string; arch: string };
  hardware: { manufacturer: string; model: string; serial: string };
}

const TIMEOUT_MS = 10_000;

/**
 * Reads OS and hardware identity with systeminformation. `osInfo` and `system` spawn several
 * processes (measured: about 18 ms and 8 spawns for osInfo on a 2-core VM; README, Host health), so
 * this runs once, after start, off the heartbeat path; the birth is republished when it resolves.
 * Anything unreadable (Android hides most of it) is an empty string; a failure or timeout is undefined.
 */
export async function readSystemFacts(log: Logger): Promise<SystemFacts | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), TIMEOUT_MS);
  });
  try {
    const read = Promise.all([si.osInfo(), si.system()]).then(([os, system]) => ({
      os: {
        platform: os.platform,
        distro: os.distro,
        release: os.release,
        kernel: os.kernel,
        arch: os.arch,
      },
      hardware: {
        manufacturer: system.manufacturer,
        model: system.model,
        serial: system.serial === "-" ? "" : system.serial,
      },
    }));
    const facts = await Promise.race([read, timeout]);
    if (facts === undefined) log.warn({ timeoutMs: TIMEOUT_MS }, "system facts took too long; left out");
    return facts;
  } catch (error) {
    log.warn({ err: error }, "could not read system facts; left out");
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
