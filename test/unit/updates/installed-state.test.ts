import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createInstalledState } from "../../../src/updates/installed-state.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const floors = { securityFloor: () => 0 };
const self = { component: "pos-agent", version: "0.4.0" };

function link(dataDir: string, component: string, version: string): void {
  const dir = join(dataDir, "components", component);
  mkdirSync(join(dir, "releases", version), { recursive: true });
  symlinkSync(join("releases", version), join(dir, "current"));
}

describe("createInstalledState", () => {
  it("reads a component's live version from its current link, and none without one", () => {
    const dataDir = makeTmpDir("installed");
    link(dataDir, "pos-app", "2.4.1");
    const installed = createInstalledState(dataDir, floors, self);
    expect(installed.installedVersion("pos-app")).toBe("2.4.1");
    expect(installed.installedVersion("other")).toBeUndefined();
  });

  it("counts the running agent's own version when no release of it is linked (no downgrade past it)", () => {
    const dataDir = makeTmpDir("installed");
    expect(createInstalledState(dataDir, floors, self).installedVersion("pos-agent")).toBe("0.4.0");
  });

  it("takes the newer of the linked agent release and the running one", () => {
    const older = makeTmpDir("installed");
    link(older, "pos-agent", "0.3.0");
    expect(createInstalledState(older, floors, self).installedVersion("pos-agent")).toBe("0.4.0");
    const newer = makeTmpDir("installed");
    link(newer, "pos-agent", "0.5.0");
    expect(createInstalledState(newer, floors, self).installedVersion("pos-agent")).toBe("0.5.0");
  });
});
