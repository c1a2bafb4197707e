import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRootsPem } from "../../src/pki/verify-envelope.js";
import { systemClock } from "../../src/shared/clock.js";
import { silentLogger } from "../../src/shared/logger.js";
import { createUpdateJournal } from "../../src/store/update-journal.js";
import { downloadArtifact } from "../../src/updates/download.js";
import type { Precondition } from "../../src/updates/engine.js";
import { createUpdateEngine } from "../../src/updates/engine.js";
import { createInstalledState } from "../../src/updates/installed-state.js";
import { componentDir } from "../../src/updates/releases-dir.js";
import { stageRelease } from "../../src/updates/stage.js";
import { decideRelease } from "../../src/updates/verify-release.js";
import { publishRelease } from "../helpers/release-fixtures.js";
import { type ReleaseServer, startReleaseServer } from "../helpers/release-server.js";
import { openTestOutbox } from "../helpers/test-outbox.js";
import { makeUpdatePki, type UpdatePki } from "../helpers/update-pki.js";

/**
 * The engine in this process with every real part (journal in SQLite, HTTP download, staging, the
 * component directory, signature checks); only the preconditions are switched by the test, as a
 * payment lock or a maintenance window would switch them. Rows the agent-level suites cannot reach
 * without tampering with a running agent.
 */
describe("update engine: deferred jobs and restarts", () => {
  let server: ReleaseServer;
  let pki: UpdatePki;
  let workDir = "";
  const held: Precondition = {
    ok: false,
    reason: "lock_held",
    message: "a payment holds the lock",
    retryAfterMs: 3_600_000,
  };

  beforeAll(async () => {
    server = await startReleaseServer();
    workDir = mkdtempSync(join(tmpdir(), "engine-releases-"));
    pki = makeUpdatePki(workDir, "Engine");
  });
  afterAll(async () => {
    await server.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  function rig(dataDir: string, db: ReturnType<typeof openTestOutbox>["db"]) {
    let precondition: Precondition = { ok: true };
    const journal = createUpdateJournal(db);
    const installed = createInstalledState(dataDir, journal, { component: "pos-agent", version: "0.1.0" });
    const roots = loadRootsPem([pki.releaseRoots]);
    const events: string[] = [];
    const engine = createUpdateEngine({
      dataDir,
      components: {},
      journal,
      decide: (envelope) =>
        decideRelease(envelope, {
          releaseRootsPem: roots,
          threshold: 1,
          now: Date.now(),
          clockTrusted: true,
          clockFloor: 0,
          model: "TEST",
          agentVersion: "0.1.0",
          installed,
        }),
      preconditions: async () => precondition,
      download: downloadArtifact,
      stage: stageRelease,
      publishState: () => {},
      recordEvent: (event) => events.push(`${event.type} ${event.message ?? ""}`),
      noteIssuedAt: () => {},
      clock: systemClock,
      log: silentLogger,
    });
    return {
      engine,
      journal,
      events,
      hold: (on: boolean) => {
        precondition = on ? held : { ok: true };
      },
    };
  }

  const release = async (component: string, version: string) =>
    (
      await publishRelease({
        workDir,
        server,
        component,
        version,
        files: { VERSION: version, [`lib/${version}.txt`]: `release ${version}` },
        signers: [pki.releaser],
      })
    ).envelope;

  async function settled(engine: { busy(): boolean }): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (engine.busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  it("resumes every interrupted job at start, one component after another, not only the first", async () => {
    const { db, dir: dataDir } = openTestOutbox("engine-two");
    const first = rig(dataDir, db);
    first.hold(true);
    expect((await first.engine.apply(await release("app-a", "1.0.0"), undefined)).state).toBe("deferred");
    expect((await first.engine.apply(await release("app-b", "1.0.0"), undefined)).state).toBe("deferred");
    await first.engine.stop();

    // A restart: the locks are gone, both deferred jobs go on.
    const second = rig(dataDir, db);
    await second.engine.recoverAtStart();
    const deadline = Date.now() + 20_000;
    const states = () =>
      second.engine
        .status()
        .map((job) => `${job.component} ${job.state}`)
        .sort();
    while (Date.now() < deadline && states().join() !== "app-a committed,app-b committed") {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(states()).toEqual(["app-a committed", "app-b committed"]);
    expect(await componentDir(dataDir, "app-b").currentVersion()).toBe("1.0.0");
    await second.engine.stop();
  });

  it("cancels a deferred release when the operator rolls back, so it cannot install over the rollback", async () => {
    const { db, dir: dataDir } = openTestOutbox("engine-cancel");
    const { engine, hold, events } = rig(dataDir, db);
    await engine.apply(await release("app", "1.0.0"), undefined);
    await settled(engine);
    await engine.apply(await release("app", "2.0.0"), undefined);
    await settled(engine);
    hold(true);
    expect((await engine.apply(await release("app", "3.0.0"), undefined)).state).toBe("deferred");

    const back = await engine.rollback("app", "operator asked");
    expect(back).toMatchObject({ state: "rolled_back", fromVersion: "1.0.0", toVersion: "2.0.0" });
    expect(events).toContain("update.failed app 2.0.0 → 3.0.0: failed: cancelled by a rollback");
    hold(false);
    engine.poke();
    await new Promise((r) => setTimeout(r, 300));
    expect(await componentDir(dataDir, "app").currentVersion()).toBe("1.0.0");
    await engine.stop();
  });

  it("fails a deferred release whose live release changed while it waited, instead of installing against it", async () => {
    const { db, dir: dataDir } = openTestOutbox("engine-base");
    const { engine, hold, journal } = rig(dataDir, db);
    await engine.apply(await release("app", "1.0.0"), undefined);
    await settled(engine);
    await engine.apply(await release("app", "2.0.0"), undefined);
    await settled(engine);
    hold(true);
    const deferred = await engine.apply(await release("app", "3.0.0"), undefined);
    expect(deferred).toMatchObject({ state: "deferred", fromVersion: "2.0.0" });
    // A technician switches back by hand while the update waits.
    await componentDir(dataDir, "app").switchTo("1.0.0");
    hold(false);
    engine.poke();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && journal.latest("app")?.state === "deferred")
      await new Promise((r) => setTimeout(r, 20));
    expect(engine.status("app")[0]).toMatchObject({
      toVersion: "3.0.0",
      state: "failed",
      code: "INCOMPATIBLE",
    });
    expect(engine.status("app")[0]?.message).toContain("changed from 2.0.0 to 1.0.0");
    expect(await componentDir(dataDir, "app").currentVersion()).toBe("1.0.0");
    await engine.stop();
  });
});
