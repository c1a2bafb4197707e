import { readlinkSync } from "node:fs";
import { basename, join } from "node:path";
import { compareVersions, VERSION_PATTERN } from "./manifest.js";
import type { InstalledState } from "./verify-release.js";

/** meta key: the newest issuedAt of a committed release, one part of the clock floor (REFERENCE 5). */
export const NEWEST_ISSUED_AT_KEY = "updatesNewestIssuedAt";

/**
 * The live version of a component is what its `current` link points at (releases/{version}), read
 * from the disk every time: after a power cut that is the truth, whatever a table says.
 */
export function readInstalledVersion(dataDir: string, component: string): string | undefined {
  let target: string;
  try {
    target = readlinkSync(join(dataDir, "components", component, "current"));
  } catch {
    return undefined;
  }
  const version = basename(target);
  return VERSION_PATTERN.test(version) ? version : undefined;
}

/** Live versions of the given components, for the birth message; absent ones are left out. */
export function installedVersions(dataDir: string, components: readonly string[]): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const name of components) {
    const version = readInstalledVersion(dataDir, name);
    if (version !== undefined) versions[name] = version;
  }
  return versions;
}

/**
 * What decideRelease compares with. The agent itself runs a version even where no `current` link
 * exists (installed from a package, or after a first self-update was rolled back): its own version
 * counts too, or an older signed agent release would pass as an upgrade.
 */
export function createInstalledState(
  dataDir: string,
  floors: { securityFloor(component: string): number },
  self: { component: string; version: string },
): InstalledState {
  return {
    installedVersion(component) {
      const linked = readInstalledVersion(dataDir, component);
      if (component !== self.component || !VERSION_PATTERN.test(self.version)) return linked;
      if (linked === undefined) return self.version;
      return compareVersions(linked, self.version) >= 0 ? linked : self.version;
    },
    securityFloor: (component) => floors.securityFloor(component),
  };
}
