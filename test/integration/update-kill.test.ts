import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto } from "../../scripts/lib/mosquitto.mjs";
import { fromBase64url } from "../../src/pki/envelope.js";
import type { KeyAndCert } from "../../src/pki/issue.js";
import { signEnvelope } from "../../src/pki/sign-envelope.js";
import { DATABASE_FILE } from "../../src/store/database.js";
import {
  nextState,
  TERMINAL_STATES,
  UPDATE_EVENTS,
  type UpdateState,
} from "../../src/updates/transitions.js";
import { verifyTree } from "../../src/updates/tree-verify.js";
import {
  type AgentConfigFile,
  type AgentProcess,
  startAgent,
  writeAgentConfig,
} from "../helpers/agent-process.js";
import { type PublishedRelease, publishRelease, type TreeSpec } from "../helpers/release-fixtures.js";
import { type ReleaseServer, startReleaseServer } from "../helpers/release-server.js";
import { suiteResources } from "../helpers/suite-resources.js";
import { makeUpdatePki } from "../helpers/update-pki.js";

/**
 * REFERENCE 6 and 7, "kill at every update state × repetitions": one row per state of the transition
 * table. Each row has its own agent (config, data dir, device id), installs 1.0.0 first so that an old
 * release exists, starts an update, SIGKILLs the agent whenever it is in the row's state (several
 * times where the state recurs after the restart), restarts it with the same config and lets it
 * finish. Then, for every row:
 *   (a) `current` is releases/{old} or releases/{new} and that tree is exactly its manifest's;
 *   (b) the final state (journal, retained update/state, last update event) matches the tree:
 *       committed ⇔ new; rolled_back or failed ⇔ old;
 *   (c) .staging is empty;
 *   (d) the state sequence (the agent's own "update state" and "resuming" log lines, across every
 *       process of the row) is allowed by the table, the reported statuses (retained update/state,
 *       events) follow it in order, and where a row is deterministic it is exactly the expected one.
 *
 * Every state is made to last long enough to be hit: a throttled artifact (downloading), a tree of
 * many small files (installing), a restart command that sleeps (activating, rolling_back), a health
 * check that sleeps (health_check), an unhealthy release (rolling_back), an intake lock (deferred).
 * `verifying` lasts one synchronous step (persisted, then left in the same tick) and `idle` one
 * precondition check: neither can be hit reliably from outside. The verifying row kills right after
 * the download ended (the pipe write of the log line often wakes the test first, so the kill lands in
 * verifying for real about as often as in installing) and, where it landed in installing, sets the
 * journal back to verifying as a kill there would have left it; the idle row writes the job as
 * update.apply creates it into the journal of a stopped agent.
 *
 * Rows marked "Was a bug" each caught an engine defect; the comment says what it was and the fix.
 */

const APP = "pos-app";
const TENANT = "acme";
/** Files of the release whose staging is killed (each is written and fsynced on its own). */
const INSTALL_FILES = 600;
/** Files of the old release pruned by a keep: 1 commit. */
const PRUNED_FILES = 600;
const BLOB_BYTES = 512 * 1024;
const THROTTLE_BYTES_PER_SEC = 512 * 1024;

/** A healthy release: the health check looks for `ready` in the live tree. */
const healthy = (version: string, extra: TreeSpec = {}): TreeSpec => ({
  ready: "yes",
  "bin/app.sh": { content: `#!/bin/sh\necho ${version}\n`, mode: 0o755 },
  VERSION: version,
  ...extra,
});

/** `count` small files under lib/, distinct contents. */
function manyFiles(count: number, tag: string): TreeSpec {
  const files: TreeSpec = {};
  for (let i = 0; i < count; i++) {
    files[`lib/m${String(i).padStart(4, "0")}.js`] = `// ${tag} ${i}\n${randomBytes(96).toString("hex")}\n`;
  }
  return files;
}

interface JobRow {
  id: number;
  state: string;
  from_version: string | null;
  to_version: string;
  code: string | null;
  message: string | null;
  restarts: number;
}

interface StatePayload {
  state: string;
  toVersion: string;
  fromVersion?: string;
  code?: string;
  message?: string;
  reason?: string;
}

interface EventRecord {
  seq: number;
  type: string;
  details?: { toVersion?: string; state?: string };
}

type LogLine = Record<string, unknown>;

const isMove = (toVersion: string, to?: string) => (line: LogLine) =>
  line.msg === "update state" && line.toVersion === toVersion && (to === undefined || line.to === to);
const isResume = (state?: string) => (line: LogLine) =>
  line.msg === "resuming an interrupted update" &&
  line.component === APP &&
  (state === undefined || line.state === state);
const isSubscribed = (line: LogLine) => line.msg === "subscribed";

async function until<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 20_000,
  pollMs = 5,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** Is `part` a subsequence of `whole` (same order, gaps allowed)? */
function isSubsequence(part: readonly string[], whole: readonly string[]): boolean {
  let at = 0;
  for (const item of part) {
    while (at < whole.length && whole[at] !== item) at++;
    if (at === whole.length) return false;
    at++;
  }
  return true;
}

const dedupe = (items: readonly string[]) => items.filter((item, i) => i === 0 || items[i - 1] !== item);

type Step = { state: string; how: "move" | "resume" | "injected" };

describe("SIGKILL at every update state, then restart: always wholly the old or the new release", () => {
  const { dir, cleanups } = suiteResources("pos-update-kill");
  let server: ReleaseServer;
  let brokerUrl = "";
  let watcher: MqttClient;
  let releaser: KeyAndCert;
  let operator: KeyAndCert;
  const trust = { releaseRoots: [join(dir, "trust", "releases.pem")], operatorRoots: [""] };
  const reported = new Map<string, StatePayload[]>();
  const events = new Map<string, Map<number, EventRecord>>();
  const summary: string[] = [];
  let commandSeq = 0;
  let probes = 0;

  const R: Record<"v1" | "v15" | "v2" | "slow" | "wide" | "bad" | "tampered", PublishedRelease> = {} as never;

  beforeAll(async () => {
    const setupStart = Date.now();
    // Cleanups run last-pushed first: this one after every agent, the broker and the server are down.
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const pki = makeUpdatePki(dir, "Kill");
    ({ releaser, operator } = pki);
    trust.operatorRoots = [pki.operatorRoots];

    server = await startReleaseServer();
    cleanups.push(() => server.close());
    const broker = await startMosquitto({ dir: join(dir, "broker") });
    cleanups.push(() => broker.kill());
    brokerUrl = broker.url;

    watcher = mqtt.connect(brokerUrl, { clientId: "update-kill-watcher", protocolVersion: 5 });
    await new Promise((resolve) => watcher.once("connect", resolve));
    cleanups.push(() => watcher.endAsync());
    watcher.on("message", (topic, payload) => {
      if (payload.length === 0) return;
      const [, , , deviceId = "", kind] = topic.split("/");
      const body = JSON.parse(payload.toString());
      if (kind === "update") {
        reported.set(deviceId, [...(reported.get(deviceId) ?? []), body as StatePayload]);
      } else if (kind === "events") {
        const byDevice = events.get(deviceId) ?? new Map<number, EventRecord>();
        for (const record of (body as { records: EventRecord[] }).records) byDevice.set(record.seq, record);
        events.set(deviceId, byDevice);
      }
    });
    await watcher.subscribeAsync([`pos/v1/${TENANT}/+/update/state`, `pos/v1/${TENANT}/+/events`], {
      qos: 1,
    });

    const release = (version: string, files: TreeSpec, securityVersion: number) =>
      publishRelease({
        workDir: dir,
        server,
        component: APP,
        version,
        files,
        signers: [releaser],
        models: ["A920"],
        securityVersion,
      });
    R.v1 = await release("1.0.0", healthy("1.0.0"), 1);
    R.v15 = await release("1.5.0", healthy("1.5.0", manyFiles(PRUNED_FILES, "old")), 1);
    R.v2 = await release("2.0.0", healthy("2.0.0"), 2);
    R.slow = await release("2.1.0", healthy("2.1.0", { "blob.bin": randomBytes(BLOB_BYTES) }), 2);
    server.configure(R.slow.artifactPath, { bytesPerSec: THROTTLE_BYTES_PER_SEC });
    R.wide = await release("2.2.0", healthy("2.2.0", manyFiles(INSTALL_FILES, "new")), 2);
    // Unhealthy: no `ready`.
    R.bad = await release("2.3.0", { VERSION: "2.3.0", "bin/app.sh": "exit 1" }, 2);
    R.tampered = await release("2.4.0", healthy("2.4.0"), 2);
    const bytes = Buffer.from(readFileSync(R.tampered.artifactFile));
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    server.put(R.tampered.artifactPath, bytes);
    summary.push(`setup (PKI, broker, 7 releases): ${((Date.now() - setupStart) / 1000).toFixed(1)} s`);
  }, 60_000);

  afterAll(() => {
    if (summary.length > 0) console.log(`update-kill rows:\n  ${summary.join("\n  ")}`);
  });

  /** One row: its own agent, data dir and device id; the processes it started, in order. */
  class Row {
    readonly startedAt = Date.now();
    readonly processes: AgentProcess[] = [];
    /** Processes and injected states in order: what the state sequence is built from. */
    readonly timeline: Array<{ agent: AgentProcess } | { injected: string }> = [];
    /** Persisted state found right after each kill (before any injection). */
    readonly kills: Array<{ target: string; persisted: string; injected?: string }> = [];
    agent: AgentProcess | undefined;

    constructor(
      readonly name: string,
      readonly dir: string,
      readonly config: AgentConfigFile,
    ) {}

    get appDir(): string {
      return join(this.config.dataDir, "components", APP);
    }
    get deviceId(): string {
      return this.config.deviceId;
    }
    /** Makes the component's restart or health check sleep from now on. */
    slow(name: "slow-restart" | "slow-health"): void {
      writeFileSync(join(this.dir, name), "");
    }
    /** Lines the component's restart command and health check wrote. */
    marks(file: "restarts.log" | "health.log", word: string): number {
      const path = join(this.dir, file);
      if (!existsSync(path)) return 0;
      return readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line === word).length;
    }
    live(): string | undefined {
      try {
        return readlinkSync(join(this.appDir, "current"));
      } catch {
        return undefined;
      }
    }

    async start(): Promise<AgentProcess> {
      const agent = await startAgent(this.config);
      this.processes.push(agent);
      this.timeline.push({ agent });
      this.agent = agent;
      await agent.waitForLog(isSubscribed, 15_000);
      return agent;
    }

    current(): AgentProcess {
      if (this.agent === undefined) throw new Error(`${this.name}: no agent running`);
      return this.agent;
    }

    waitLog(predicate: (line: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
      return this.current().waitForLog(predicate, timeoutMs);
    }

    /** SIGKILL now; returns the state the journal holds for the newest job. */
    async kill(target: string): Promise<string> {
      await this.current().kill("SIGKILL");
      this.agent = undefined;
      const persisted = this.job()?.state ?? "(no job)";
      this.kills.push({ target, persisted });
      return persisted;
    }

    /** Kill, optionally set the persisted state a kill there would have left, and start again. */
    async killAndRestart(
      target: string,
      inject?: (persisted: string) => string | undefined,
    ): Promise<string> {
      const persisted = await this.kill(target);
      const state = inject?.(persisted);
      if (state !== undefined) {
        this.setState(state);
        this.timeline.push({ injected: state });
        const last = this.kills.at(-1);
        if (last !== undefined) last.injected = state;
      }
      await this.start();
      return persisted;
    }

    job(): JobRow | undefined {
      const file = join(this.config.dataDir, DATABASE_FILE);
      if (!existsSync(file)) return undefined;
      const db = new Database(file, { readonly: true, fileMustExist: true });
      try {
        return db
          .prepare<[string], JobRow>(
            "SELECT id, state, from_version, to_version, code, message, restarts FROM update_jobs WHERE component = ? ORDER BY id DESC LIMIT 1",
          )
          .get(APP);
      } finally {
        db.close();
      }
    }

    floor(): number | undefined {
      const db = new Database(join(this.config.dataDir, DATABASE_FILE), {
        readonly: true,
        fileMustExist: true,
      });
      try {
        return db
          .prepare<[string], { security_floor: number }>(
            "SELECT security_floor FROM component_floors WHERE component = ?",
          )
          .get(APP)?.security_floor;
      } finally {
        db.close();
      }
    }

    /** Writes the newest job's state as the engine's journal.setState would (agent stopped). */
    setState(state: string): void {
      if (this.agent !== undefined) throw new Error("setState needs the agent stopped");
      const db = new Database(join(this.config.dataDir, DATABASE_FILE), { fileMustExist: true });
      try {
        const job = this.job();
        if (job === undefined) throw new Error("no job to set");
        db.prepare(
          "UPDATE update_jobs SET state = ?, code = NULL, message = NULL, progress = NULL, updated_at = ? WHERE id = ?",
        ).run(state, Date.now(), job.id);
      } finally {
        db.close();
      }
    }

    /** Sends a signed update.apply for `release` (the answer is not awaited: the agent may die first). */
    async apply(release: PublishedRelease): Promise<void> {
      commandSeq += 1;
      const now = Date.now();
      const id = `kill-${commandSeq}`;
      const request = signEnvelope({
        payload: {
          id,
          cmd: "update.apply",
          args: { manifest: release.envelope },
          target: this.deviceId,
          issuedAt: now,
          expiresAt: now + 300_000,
        },
        typ: "pos-command+json",
        keyPem: operator.keyPem,
        chainPem: [operator.certPem],
      });
      await watcher.publishAsync(`${this.config.root}/cmd/req`, JSON.stringify(request), { qos: 1 });
    }

    /** Applies and waits for it to commit (the first release of every row). */
    async install(release: PublishedRelease): Promise<void> {
      await this.apply(release);
      await this.waitLog(isMove(release.manifest.version, "committed"), 30_000);
    }

    reported(toVersion: string): StatePayload[] {
      return (reported.get(this.deviceId) ?? []).filter((payload) => payload.toVersion === toVersion);
    }

    events(toVersion: string): string[] {
      const records = [...(events.get(this.deviceId)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
      return records
        .filter((record) => record.type.startsWith("update.") && record.details?.toVersion === toVersion)
        .map((record) => record.details?.state ?? record.type.slice("update.".length));
    }

    /**
     * The state sequence of each job for `toVersion`, from every process's log lines in order: a job
     * starts at its move out of `idle`; a "resuming" line repeats the persisted state; an injected
     * state stands where the kill left it. Problems are lines that disagree with the table.
     */
    sequence(toVersion: string): { jobs: Step[][]; problems: string[] } {
      const jobs: Step[][] = [];
      const problems: string[] = [];
      for (const entry of this.timeline) {
        if ("injected" in entry) {
          jobs.at(-1)?.push({ state: entry.injected, how: "injected" });
          continue;
        }
        for (const line of entry.agent.logs) {
          if (isMove(toVersion)(line)) {
            const from = String(line.from);
            const to = String(line.to);
            if (from === "idle") jobs.push([{ state: "idle", how: "move" }]);
            const job = jobs.at(-1);
            if (job === undefined) {
              problems.push(`a move ${from} → ${to} before any job started`);
              continue;
            }
            if (nextState(from as UpdateState, line.event as never) !== to) {
              problems.push(`logged ${from} --${String(line.event)}--> ${to}, which the table does not have`);
            }
            const last = job.at(-1)?.state;
            if (last !== from) {
              problems.push(`a move from ${from} right after ${last}`);
            }
            job.push({ state: to, how: "move" });
          } else if (isResume()(line)) {
            const job = jobs.at(-1);
            if (job === undefined) problems.push(`resumed ${String(line.state)} before any job started`);
            else job.push({ state: String(line.state), how: "resume" });
          }
        }
      }
      return { jobs, problems };
    }

    /** Stops the agent for good (not counted as a kill of the row). */
    async stop(): Promise<void> {
      if (this.agent === undefined) return;
      await this.agent.kill("SIGKILL");
      this.agent = undefined;
    }
  }

  let rowSeq = 0;

  /** A row's agent, started, with 1.0.0 (or `old`) installed and committed. */
  async function setupRow(
    name: string,
    options: { old?: PublishedRelease; keep?: number; healthTimeoutSec?: number } = {},
  ): Promise<Row> {
    rowSeq += 1;
    const rowDir = join(dir, "rows", `${rowSeq}-${name}`);
    mkdirSync(rowDir, { recursive: true });
    const restartLog = join(rowDir, "restarts.log");
    const healthLog = join(rowDir, "health.log");
    const config = await writeAgentConfig({
      dir: rowDir,
      brokerUrl,
      deviceId: `KILL-${rowSeq}-${name}`,
      tenant: TENANT,
      extra: {
        model: "A920",
        trust,
        components: {
          [APP]: {
            // Runs with cwd = the component root; sleeps while the row's knob file exists.
            restart: [
              "sh",
              "-c",
              `echo begin >> '${restartLog}'; if [ -f '${join(rowDir, "slow-restart")}' ]; then sleep 1; fi; echo restarted >> '${restartLog}'`,
            ],
            // Runs with cwd = the live tree.
            healthCheck: {
              command: [
                "sh",
                "-c",
                `echo start >> '${healthLog}'; if [ -f '${join(rowDir, "slow-health")}' ]; then sleep 0.3; fi; test -f ready && echo pass >> '${healthLog}'`,
              ],
              timeoutSec: options.healthTimeoutSec ?? 3,
            },
            keep: options.keep ?? 2,
          },
        },
      },
    });
    const row = new Row(name, rowDir, config);
    cleanups.push(() => row.stop());
    await row.start();
    await row.install(options.old ?? R.v1);
    return row;
  }

  /** Settles the row, stops its agent and checks (a) to (d). */
  async function finish(
    row: Row,
    want: {
      old: PublishedRelease;
      neu: PublishedRelease;
      final: "committed" | "rolled_back" | "failed";
      /** The exact state sequence of each job, where the row makes it deterministic. */
      jobs?: string[][];
      code?: string;
      message?: RegExp;
      keep?: number;
    },
  ): Promise<void> {
    const oldVersion = want.old.manifest.version;
    const newVersion = want.neu.manifest.version;
    const settleStart = Date.now();
    const job = await until(
      `${row.name}: the ${newVersion} job to end and its state to be reported`,
      () => {
        const found = row.job();
        if (found === undefined || found.to_version !== newVersion) return undefined;
        if (!TERMINAL_STATES.has(found.state as UpdateState)) return undefined;
        return row.reported(newVersion).at(-1)?.state === found.state ? found : undefined;
      },
      30_000,
      20,
    );
    // The update event of the final state goes through the outbox: wait for it too (best effort).
    const { jobs, problems } = row.sequence(newVersion);
    if (jobs.length > 0)
      await until(
        `${row.name}: the update.${job.state} event`,
        () => row.events(newVersion).at(-1) === job.state,
        10_000,
        20,
      ).catch(() => undefined);
    const settleMs = Date.now() - settleStart;
    await row.stop();

    // (b) the retained state as a fresh subscriber sees it.
    const retained = await readRetained(`${row.config.root}/update/state`);

    const link = row.live();
    const oldLink = join("releases", oldVersion);
    const newLink = join("releases", newVersion);
    // (a) current is wholly the old or the new release.
    expect.soft([oldLink, newLink], `${row.name}: current → ${link}`).toContain(link);
    const manifest = link === newLink ? want.neu.manifest : want.old.manifest;
    const tree =
      link === undefined
        ? { ok: false, path: ".", reason: "no current" }
        : await verifyTree(join(row.appDir, link), manifest.files);
    expect
      .soft(tree, `${row.name}: the tree behind current (${link}) is its manifest's`)
      .toEqual({ ok: true });

    // (b) the final state matches the tree, in the journal, the retained state and the events.
    expect
      .soft(["committed", "rolled_back", "failed"], `${row.name}: final state ${job.state}`)
      .toContain(job.state);
    if (job.state === "committed")
      expect.soft(link, `${row.name}: committed, so current is new`).toBe(newLink);
    if (job.state === "rolled_back" || job.state === "failed") {
      expect.soft(link, `${row.name}: ${job.state}, so current is old`).toBe(oldLink);
    }
    expect.soft(job.state, `${row.name}: final state`).toBe(want.final);
    expect.soft(retained, `${row.name}: retained update/state`).toMatchObject({
      state: job.state,
      toVersion: newVersion,
    });
    if (want.code !== undefined) expect.soft(retained?.code, `${row.name}: code`).toBe(want.code);
    if (want.message !== undefined)
      expect.soft(retained?.message ?? "", `${row.name}: message`).toMatch(want.message);

    // (c) nothing staged is left; the releases kept are the ones the outcome implies.
    const staging = join(row.appDir, ".staging");
    expect.soft(existsSync(staging) ? readdirSync(staging) : [], `${row.name}: .staging`).toEqual([]);
    const releases = readdirSync(join(row.appDir, "releases")).sort();
    const keep = want.keep ?? 2;
    const expectedReleases =
      job.state === "committed" ? (keep === 1 ? [newVersion] : [oldVersion, newVersion]) : [oldVersion];
    expect.soft(releases, `${row.name}: releases/`).toEqual(expectedReleases);
    // The security floor rises only with a commit.
    const floor = row.floor();
    expect
      .soft(floor, `${row.name}: security floor`)
      .toBe(
        job.state === "committed" ? want.neu.manifest.securityVersion : want.old.manifest.securityVersion,
      );

    // (d) the sequence is the table's; statuses and events follow it.
    expect
      .soft(jobs.length, `${row.name}: states logged for the ${newVersion} job (it never left ${job.state})`)
      .toBeGreaterThan(0);
    if (jobs.length > 0) checkSequence(row, newVersion, job.state, jobs);
    expect.soft(problems, `${row.name}: log lines against the table`).toEqual([]);
    // Each kill left a state the next process resumed (or a terminal one it left alone).
    const resumes = row.processes.slice(1).map((agent) => agent.logs.find(isResume())?.state);
    for (const [i, kill] of row.kills.entries()) {
      const state = kill.injected ?? kill.persisted;
      const expected = TERMINAL_STATES.has(state as UpdateState) ? undefined : state;
      expect.soft(resumes[i], `${row.name}: kill ${i + 1} left ${state}`).toBe(expected);
    }
    if (want.jobs !== undefined) {
      expect
        .soft(
          jobs.map((steps) => steps.map((step) => step.state)),
          `${row.name}: exact state sequence`,
        )
        .toEqual(want.jobs);
    }

    const killed = row.kills.map((kill) => `${kill.persisted}${kill.injected ? `→${kill.injected}` : ""}`);
    summary.push(
      `${row.name}: ${row.kills.length} kills [${killed.join(", ")}], final ${job.state} (${link}), ` +
        `${((Date.now() - row.startedAt) / 1000).toFixed(1)} s (settle ${settleMs} ms)`,
    );
  }

  /** (d): the pairs of the state sequence, the reported statuses and the update events. */
  function checkSequence(row: Row, newVersion: string, final: string, jobs: Step[][]): void {
    for (const [index, steps] of jobs.entries()) {
      for (let i = 1; i < steps.length; i++) {
        const a = steps[i - 1] as Step;
        const b = steps[i] as Step;
        const allowed =
          b.how === "injected" ||
          (b.how === "resume" && a.state === b.state) ||
          UPDATE_EVENTS.some((event) => nextState(a.state as UpdateState, event) === b.state) ||
          b.state === "rolling_back";
        expect.soft(allowed, `${row.name}: job ${index + 1}: ${a.state} → ${b.state} (${b.how})`).toBe(true);
      }
    }
    const flat = jobs.flat().map((step) => step.state);
    expect.soft(flat.at(-1), `${row.name}: the last state logged is the journal's`).toBe(final);
    const statuses = dedupe(row.reported(newVersion).map((payload) => payload.state));
    expect.soft(isSubsequence(statuses, flat), `${row.name}: reported ${statuses} within ${flat}`).toBe(true);
    const moves = jobs.flatMap((steps) =>
      steps.filter((step) => step.how === "move").map((step) => step.state),
    );
    const eventStates = row.events(newVersion);
    expect
      .soft(isSubsequence(eventStates, moves), `${row.name}: events ${eventStates} within ${moves}`)
      .toBe(true);
    expect.soft(row.events(newVersion).at(-1), `${row.name}: last update event`).toBe(final);
  }

  async function readRetained(topic: string): Promise<StatePayload | undefined> {
    probes += 1;
    const client = await mqtt.connectAsync(brokerUrl, {
      clientId: `update-kill-probe-${probes}`,
      protocolVersion: 5,
    });
    try {
      const got = new Promise<StatePayload | undefined>((resolve) => {
        client.on("message", (_topic, payload, packet) => {
          if (packet.retain)
            resolve(payload.length > 0 ? (JSON.parse(payload.toString()) as StatePayload) : undefined);
        });
      });
      await client.subscribeAsync(topic, { qos: 1 });
      return await Promise.race([got, sleep(3_000).then(() => undefined)]);
    } finally {
      await client.endAsync();
    }
  }

  const happyPath = [
    "idle",
    "downloading",
    "verifying",
    "installing",
    "activating",
    "health_check",
    "committed",
  ];
  /** The happy path with `state` repeated `times` more (resumed after each kill). */
  const resumedIn = (state: string, times: number, path = happyPath) => {
    const at = path.indexOf(state);
    return [...path.slice(0, at + 1), ...Array<string>(times).fill(state), ...path.slice(at + 1)];
  };

  /** Takes an intake lock (held across restarts: it is a file), so that an update defers. */
  async function takeLock(row: Row): Promise<void> {
    const taken = await fetch(`http://127.0.0.1:${row.config.intakePort}/v1/locks/payment`, {
      method: "POST",
      body: JSON.stringify({ ttlSec: 120 }),
    });
    expect(taken.status).toBe(200);
  }

  /** Releases the lock, which pokes the deferred job, and waits until it goes on. */
  async function releaseLock(row: Row, toVersion: string): Promise<void> {
    const intake = `http://127.0.0.1:${row.config.intakePort}`;
    const released = await fetch(`${intake}/v1/locks/payment`, { method: "DELETE" });
    expect(await released.json()).toMatchObject({ released: true });
    // A poke that lands before the resumed job has scheduled its next check finds nothing to poke
    // (the next check is 30 s away): take and release another lock to poke again.
    for (let attempt = 0; !row.current().logs.some(isMove(toVersion, "downloading")); attempt++) {
      if (attempt > 20) throw new Error("the deferred update never went on");
      if (attempt > 0) {
        await fetch(`${intake}/v1/locks/poke`, { method: "POST", body: JSON.stringify({ ttlSec: 5 }) });
        await fetch(`${intake}/v1/locks/poke`, { method: "DELETE" });
      }
      await row.waitLog(isMove(toVersion, "downloading"), 1_000).catch(() => undefined);
    }
  }

  const deferredPath = ["idle", "deferred", ...happyPath.slice(1)];

  it("deferred ×3: killed while an intake lock defers the update; goes on once the lock is released", async () => {
    const row = await setupRow("deferred");
    await takeLock(row);
    await row.apply(R.v2);
    await row.waitLog(isMove("2.0.0", "deferred"));
    for (let i = 0; i < 3; i++) {
      if (i > 0) {
        await row.waitLog(isResume("deferred"));
        await row.waitLog(isSubscribed);
      }
      expect(await row.killAndRestart("deferred")).toBe("deferred");
    }
    await row.waitLog(isResume("deferred"));
    await releaseLock(row, "2.0.0");
    await finish(row, {
      old: R.v1,
      neu: R.v2,
      final: "committed",
      jobs: [resumedIn("deferred", 3, deferredPath)],
    });
  });

  // Was a bug (fixed: recoverAtStart() publishes every job's state): it re-published terminal jobs
  // only, and a resumed deferred job that defers again for the same reason does not move, so
  // nothing was published. A `deferred` the kill cut off before mqtt.js flushed it (it is written on
  // the next tick; a kill right after the move loses it, as the row above shows now and then), or a
  // broker that never had it, leaves update/state saying something older for as long as the lock is
  // held. Here the retained message is cleared while the agent is down, so it is deterministic.
  it("deferred, reported: after a restart the deferred job's state is published again", async () => {
    const row = await setupRow("deferred-reported");
    await takeLock(row);
    await row.apply(R.v2);
    await row.waitLog(isMove("2.0.0", "deferred"));
    await row.kill("deferred");
    await watcher.publishAsync(`${row.config.root}/update/state`, "", { qos: 1, retain: true });
    const before = row.reported("2.0.0").length;
    await row.start();
    await row.waitLog(isResume("deferred"));
    const republished = await until(
      "update/state to say deferred again",
      () =>
        row
          .reported("2.0.0")
          .slice(before)
          .find((payload) => payload.state === "deferred"),
      3_000,
      20,
    ).catch(() => undefined);
    expect
      .soft(republished, "retained update/state after a restart in deferred")
      .toMatchObject({ state: "deferred", toVersion: "2.0.0", reason: "lock_held" });
    await releaseLock(row, "2.0.0");
    await finish(row, {
      old: R.v1,
      neu: R.v2,
      final: "committed",
      jobs: [resumedIn("deferred", 1, deferredPath)],
    });
  });

  it("downloading ×3: killed with part of a throttled artifact in .part; each restart resumes with Range", async () => {
    const row = await setupRow("downloading");
    const { size, sha256 } = R.slow.manifest.artifact;
    const part = join(row.appDir, ".download", `${sha256}.artifact.part`);
    const partSize = () => (existsSync(part) ? statSync(part).size : 0);
    await row.apply(R.slow);
    const thresholds = [0.2, 0.45, 0.7].map((fraction) => Math.floor(size * fraction));
    for (const [i, threshold] of thresholds.entries()) {
      await row.waitLog(i === 0 ? isMove("2.1.0", "downloading") : isResume("downloading"));
      await until(`.part ≥ ${threshold} bytes`, () => partSize() >= threshold && partSize() < size);
      expect(await row.killAndRestart("downloading")).toBe("downloading");
    }
    await finish(row, { old: R.v1, neu: R.slow, final: "committed", jobs: [resumedIn("downloading", 3)] });
    const gets = server.requestsFor(R.slow.artifactPath).filter((request) => request.method === "GET");
    expect(gets).toHaveLength(4);
    expect(gets[0]?.range).toBeUndefined();
    const offsets = gets.slice(1).map((request) => Number(/^bytes=(\d+)-$/.exec(request.range ?? "")?.[1]));
    for (const [i, offset] of offsets.entries()) {
      expect(offset, `resume ${i + 1}`).toBeGreaterThanOrEqual(thresholds[i] as number);
      expect(gets[i + 1]?.status).toBe(206);
    }
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  });

  it("verifying ×2 (a single synchronous step: killed right after the download ended, then the journal set to verifying as a kill there leaves it)", async () => {
    const row = await setupRow("verifying");
    // Many files, so that installing (which follows at once) is still running when the kill lands.
    await row.apply(R.wide);
    const artifact = join(row.appDir, ".download", `${R.wide.manifest.artifact.sha256}.artifact`);
    /** A kill in verifying: the whole artifact is there, nothing is switched; only then rewind to verifying. */
    const asVerifying = (persisted: string) =>
      persisted === "installing" && existsSync(artifact) ? "verifying" : undefined;
    await row.waitLog(isMove("2.2.0", "verifying"));
    const first = await row.killAndRestart("verifying", asVerifying);
    await row.waitLog(isResume("verifying"));
    const second = await row.killAndRestart("verifying", asVerifying);
    for (const kill of row.kills) expect(kill.injected ?? kill.persisted).toBe("verifying");
    await finish(row, { old: R.v1, neu: R.wide, final: "committed" });
    expect(["verifying", "installing"]).toContain(first);
    expect(["verifying", "installing"]).toContain(second);
  });

  it(`installing ×3: killed while ${INSTALL_FILES} files are staged one by one; each restart restages`, async () => {
    const row = await setupRow("installing");
    const lib = join(row.appDir, ".staging", "2.2.0", "lib");
    /** The staging dir of this process: not the one a killed process left (restaged from scratch). */
    const identity = () => {
      try {
        const stats = statSync(lib);
        return `${stats.ino}:${stats.birthtimeMs}`;
      } catch {
        return undefined;
      }
    };
    const staged = () => {
      try {
        return readdirSync(lib).length;
      } catch {
        return 0;
      }
    };
    await row.apply(R.wide);
    let leftover: string | undefined;
    for (const [i, fraction] of [0.1, 0.3, 0.5].entries()) {
      await row.waitLog(i === 0 ? isMove("2.2.0", "installing") : isResume("installing"));
      const want = Math.floor(INSTALL_FILES * fraction);
      await until(`${want} files staged`, () => identity() !== leftover && staged() >= want, 20_000, 2);
      leftover = identity();
      expect(await row.killAndRestart("installing")).toBe("installing");
      expect(row.live()).toBe(join("releases", "1.0.0"));
    }
    await finish(row, { old: R.v1, neu: R.wide, final: "committed", jobs: [resumedIn("installing", 3)] });
  });

  it("activating ×3: killed inside the component's restart, after current was switched", async () => {
    const row = await setupRow("activating");
    row.slow("slow-restart");
    // Counted before each start: the resumed process may begin its restart before we look.
    let before = row.marks("restarts.log", "begin");
    await row.apply(R.v2);
    for (let i = 0; i < 3; i++) {
      await row.waitLog(i === 0 ? isMove("2.0.0", "activating") : isResume("activating"));
      await until("the restart command to run", () => row.marks("restarts.log", "begin") > before);
      expect(row.live()).toBe(join("releases", "2.0.0"));
      before = row.marks("restarts.log", "begin");
      expect(await row.killAndRestart("activating")).toBe("activating");
    }
    await finish(row, { old: R.v1, neu: R.v2, final: "committed", jobs: [resumedIn("activating", 3)] });
  });

  it("health_check ×3 (three updates: at its start, inside a check, between two passes): each restart rolls back", async () => {
    const row = await setupRow("health_check");
    row.slow("slow-health");
    const rolledBack = [
      "idle",
      "downloading",
      "verifying",
      "installing",
      "activating",
      "health_check",
      "health_check",
      "rolling_back",
      "rolled_back",
    ];
    const waits: Array<(before: { start: number; pass: number }) => Promise<unknown>> = [
      async () => undefined,
      (before) => until("a health check to start", () => row.marks("health.log", "start") > before.start),
      (before) => until("a health check to pass once", () => row.marks("health.log", "pass") > before.pass),
    ];
    for (const wait of waits) {
      const before = { start: row.marks("health.log", "start"), pass: row.marks("health.log", "pass") };
      await row.apply(R.v2);
      await row.waitLog(isMove("2.0.0", "health_check"));
      await wait(before);
      expect(await row.killAndRestart("health_check")).toBe("health_check");
      await row.waitLog(isMove("2.0.0", "rolled_back"));
      expect(row.live()).toBe(join("releases", "1.0.0"));
      await until("rolled_back to be reported", () => row.reported("2.0.0").at(-1)?.state === "rolled_back");
      expect(row.reported("2.0.0").at(-1)).toMatchObject({
        state: "rolled_back",
        code: "HEALTH_CHECK_FAILED",
        message: expect.stringContaining("restarted during the health check window"),
      });
    }
    await finish(row, {
      old: R.v1,
      neu: R.v2,
      final: "rolled_back",
      code: "HEALTH_CHECK_FAILED",
      jobs: [rolledBack, rolledBack, rolledBack],
    });
  });

  // Was a bug (fixed: committed and the floor are persisted in one transaction first, old releases
  // are renamed out of releases/ before deletion, and pruning is finished at start): the engine ran
  // commit() (raise the security floor, delete the artifact, prune old releases beyond `keep`) while
  // the journal still said health_check, and persisted committed only afterwards. A kill in that
  // window was recovered as "a restart during the health check window": rolled back, to an old
  // release already (partly) deleted, and the new one removed as well; the floor stayed raised.
  // With keep 1 and an old tree of PRUNED_FILES files the pruning takes tens of milliseconds and the
  // first deletion is seen (inotify) in time to kill inside it.
  it("health_check, late: killed after the check passed, while the commit prunes the old release (keep 1)", async () => {
    const row = await setupRow("health_check-late", { old: R.v15, keep: 1 });
    const oldLib = join(row.appDir, "releases", "1.5.0", "lib");
    await row.apply(R.v2);
    await row.waitLog(isMove("2.0.0", "health_check"));
    // Killed at the first file removed from the old release (the check passed, commit() runs), or at
    // the latest when the job leaves health_check.
    const agent = row.current();
    const pruning = watch(oldLib, () => agent.child.kill("SIGKILL"));
    let exited = false;
    void agent.exited.then(() => {
      exited = true;
    });
    const left = (line: LogLine) =>
      isMove("2.0.0", "committed")(line) || isMove("2.0.0", "rolling_back")(line);
    try {
      await until(
        "the kill in commit(), or the job to leave health_check",
        () => exited || agent.logs.some(left),
        20_000,
        2,
      );
    } finally {
      pruning.close();
    }
    const persisted = await row.killAndRestart("health_check (commit)");
    await finish(row, {
      old: R.v15,
      neu: R.v2,
      final: persisted === "committed" ? "committed" : "rolled_back",
      keep: 1,
    });
  });

  it("rolling_back ×3: an unhealthy release; killed inside the restart that brings the old release back", async () => {
    const row = await setupRow("rolling_back", { healthTimeoutSec: 2 });
    await row.apply(R.bad);
    await row.waitLog(isMove("2.3.0", "health_check"));
    row.slow("slow-restart");
    // Counted before each start: the resumed process may begin its restart before we look.
    let before = row.marks("restarts.log", "begin");
    for (let i = 0; i < 3; i++) {
      await row.waitLog(i === 0 ? isMove("2.3.0", "rolling_back") : isResume("rolling_back"));
      await until("the restart command to run", () => row.marks("restarts.log", "begin") > before);
      expect(row.live()).toBe(join("releases", "1.0.0"));
      before = row.marks("restarts.log", "begin");
      expect(await row.killAndRestart("rolling_back")).toBe("rolling_back");
    }
    // And once more in rolled_back: it stays there.
    await row.waitLog(isMove("2.3.0", "rolled_back"));
    expect(await row.killAndRestart("rolled_back")).toBe("rolled_back");
    await finish(row, {
      old: R.v1,
      neu: R.bad,
      final: "rolled_back",
      code: "HEALTH_CHECK_FAILED",
      message: /unhealthy for the whole 2 s window/,
      jobs: [
        resumedIn("rolling_back", 3, [
          "idle",
          "downloading",
          "verifying",
          "installing",
          "activating",
          "health_check",
          "rolling_back",
          "rolled_back",
        ]),
      ],
    });
  });

  it("committed ×3: killed right after the commit is reported, it stays committed", async () => {
    const row = await setupRow("committed");
    await row.apply(R.v2);
    await row.waitLog(isMove("2.0.0", "committed"));
    for (let i = 0; i < 3; i++) {
      if (i > 0) await row.waitLog(isSubscribed);
      expect(await row.killAndRestart("committed")).toBe("committed");
    }
    await finish(row, { old: R.v1, neu: R.v2, final: "committed", jobs: [happyPath] });
  });

  it("failed ×2: a tampered artifact fails the download; killed after, it stays failed", async () => {
    const row = await setupRow("failed");
    await row.apply(R.tampered);
    await row.waitLog(isMove("2.4.0", "failed"));
    for (let i = 0; i < 2; i++) {
      if (i > 0) await row.waitLog(isSubscribed);
      expect(await row.killAndRestart("failed")).toBe("failed");
    }
    await finish(row, {
      old: R.v1,
      neu: R.tampered,
      final: "failed",
      code: "HASH_MISMATCH",
      jobs: [["idle", "downloading", "failed"]],
    });
    expect(readdirSync(join(row.appDir, ".download"))).toEqual([]);
  });

  // Was a bug (fixed: preconditions are checked before the job is created, and a job found in idle
  // at start fails): update.apply persisted the job in `idle` (journal.create), then awaited the
  // precondition check before its first move. A kill in between left an `idle` job, which
  // recover() treats as terminal: `idle` was published as its final state, with no event. It must
  // end `failed` (nothing was changed) with its reason.
  it("idle (the job as update.apply creates it, before its preconditions are checked: written into the journal of a stopped agent)", async () => {
    const row = await setupRow("idle");
    await row.stop();
    const payload = fromBase64url(R.v2.envelope.payload)?.toString("utf8") ?? "";
    const db = new Database(join(row.config.dataDir, DATABASE_FILE), { fileMustExist: true });
    try {
      const now = Date.now();
      db.prepare(
        `INSERT INTO update_jobs (component, from_version, to_version, state, manifest, command_id, created_at, updated_at)
         VALUES (?, '1.0.0', '2.0.0', 'idle', ?, 'kill-idle', ?, ?)`,
      ).run(APP, payload, now, now);
    } finally {
      db.close();
    }
    row.kills.push({ target: "idle", persisted: "idle" });
    await row.start();
    await finish(row, { old: R.v1, neu: R.v2, final: "failed" });
  });
});
