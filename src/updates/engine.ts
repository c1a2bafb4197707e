import { rm } from "node:fs/promises";
import type { Clock } from "../shared/clock.js";
import { AgentError, errorMessage, isAgentError } from "../shared/errors.js";
import type { AgentEvent } from "../shared/events.js";
import type { Logger } from "../shared/logger.js";
import type { Result } from "../shared/result.js";
import type { UpdateJob, UpdateJournal } from "../store/update-journal.js";
import { awaitHealthy } from "./component-control.js";
import type { DownloadOptions, DownloadResult } from "./download.js";
import { createJobReporter, type JobOutcome, type UpdateStatePayload } from "./job-report.js";
import { type Component, createJobSteps } from "./job-steps.js";
import { compareVersions, Manifest } from "./manifest.js";
import { type ComponentDir, componentDir } from "./releases-dir.js";
import {
  clearPending,
  SELF_COMPONENT,
  type SelfUpdateDeps,
  selfUpdateProblem,
  takeRolledBack,
  writePending,
} from "./self-update.js";
import type { StageOptions, StageResult } from "./stage.js";
import { MAX_RESTARTS, nextState, recover, TERMINAL_STATES, type UpdateState } from "./transitions.js";
import { verifyTree } from "./tree-verify.js";
import type { AcceptedRelease } from "./verify-release.js";

/**
 * A job needs a manifest; a manual rollback of a release installed before the journal knew it has
 * none, and rolling back reads only its component and version.
 */
function placeholderManifest(component: string, version: string): Manifest {
  return {
    v: 1,
    component,
    version,
    securityVersion: 0,
    issuedAt: "2000-01-01T00:00:00Z",
    expiresAt: "2000-01-02T00:00:00Z",
    compatible: {},
    artifact: {
      url: "https://unknown.invalid/",
      size: 1,
      sha256: "0".repeat(64),
      compression: "none",
      type: "full",
    },
    files: [],
  };
}

/** What preconditions.ts answers: go, or wait with a reason (CONTRACT 9 deferred reasons). */
export type Precondition =
  | { ok: true }
  | { ok: false; reason: string; message: string; retryAfterMs: number };

/** Free disk needed: the artifact and the tree, twice over (REFERENCE 6). */
function neededBytes(manifest: Manifest): number {
  return 2 * (manifest.artifact.size + manifest.files.reduce((sum, file) => sum + file.size, 0));
}

export interface UpdateEngineDeps {
  dataDir: string;
  components: Readonly<Record<string, Component>>;
  journal: UpdateJournal;
  /** Signature, chain, threshold, clock, compatibility, version and floor (verify-release.ts). */
  decide(envelope: unknown): Result<AcceptedRelease, AgentError>;
  /** Lock files, window, battery, disk (preconditions.ts) for `neededBytes` of work under `workDir`. */
  preconditions(neededBytes: number, workDir: string): Promise<Precondition>;
  download(options: DownloadOptions): Promise<DownloadResult>;
  stage(options: StageOptions): Promise<StageResult>;
  publishState(payload: UpdateStatePayload): void;
  recordEvent(event: AgentEvent): void;
  /** After a commit: raise what the clock floor knows (newest issuedAt of an accepted release). */
  noteIssuedAt(ms: number): void;
  clock: Clock;
  log: Logger;
  /** Health polling interval; tests shorten it. */
  healthPollMs?: number;
  /** How the agent updates itself (component "pos-agent"); absent: it cannot. */
  self?: SelfUpdateDeps;
}

/** A deferred job whose check falls while another update runs looks again this much later. */
const BUSY_RETRY_MS = 5_000;

/**
 * Runs one update at a time through the transition table, persisting each state before the step
 * that could change something, so that recoverAtStart() can finish or undo whatever a power cut,
 * SIGKILL or crash interrupted (REFERENCE 6).
 */
export function createUpdateEngine(deps: UpdateEngineDeps) {
  const { journal, clock, log } = deps;
  const { publish, move, outcome, codeAndMessage } = createJobReporter(deps);
  const { download, install, restart, tidyAfterCommit } = createJobSteps({ ...deps, publish });
  let running: { job: UpdateJob; abort: AbortController; done: Promise<JobOutcome> } | undefined;
  const retryTimers = new Map<number, NodeJS.Timeout>();
  let stopped = false;
  /** An apply() between its checks and its job: a second one must wait its turn. */
  let applying = false;

  function manifestOf(job: UpdateJob): Manifest {
    return Manifest.parse(JSON.parse(job.manifest));
  }

  /** Runs the job from its persisted state until it is terminal or deferred. */
  async function drive(job: UpdateJob, signal: AbortSignal): Promise<JobOutcome> {
    const manifest = manifestOf(job);
    const dir = componentDir(deps.dataDir, job.component);
    const component = deps.components[job.component] ?? { keep: 2 };
    const artifact = dir.downloadFile(manifest.artifact.sha256);
    const needed = neededBytes(manifest);

    for (;;) {
      signal.throwIfAborted();
      const state = journal.get(job.id)?.state as UpdateState;
      if (TERMINAL_STATES.has(state)) return outcome(job);
      try {
        switch (state) {
          case "deferred": {
            const check = await deps.preconditions(needed, dir.root);
            if (!check.ok) {
              deferAgain(job, check);
              return outcome(job);
            }
            // It was decided against what was live then (version, delta base): not against a release
            // installed or rolled back to while it waited.
            const live = await dir.currentVersion();
            if (!isSelf(job) && live !== job.fromVersion) {
              move(job, "error", {
                code: "INCOMPATIBLE",
                message: `${job.component} changed from ${job.fromVersion ?? "(none)"} to ${live ?? "(none)"} while this update waited; send it again`,
              });
              break;
            }
            move(job, "proceed");
            break;
          }
          case "downloading":
            await download(job, manifest, artifact, signal);
            move(job, "downloaded");
            break;
          case "verifying":
            move(job, "verified");
            break;
          case "installing": {
            await install(job, manifest, dir, artifact, signal);
            const check = await deps.preconditions(0, dir.root);
            if (!check.ok) {
              move(job, "defer", { reason: check.reason, message: check.message });
              scheduleRetry(job.id, check.retryAfterMs);
              return outcome(job);
            }
            move(job, "installed");
            break;
          }
          case "activating":
            if (isSelf(job)) {
              await activateSelf(job, dir);
              return outcome(job);
            }
            await dir.switchTo(job.toVersion);
            await restart(job, component, dir, signal);
            move(job, "activated");
            break;
          case "health_check": {
            const unhealthy = isSelf(job)
              ? await deps.self?.selfCheck(signal)
              : component.healthCheck === undefined
                ? undefined
                : await awaitHealthy(component.healthCheck, {
                    cwd: dir.current,
                    signal,
                    monotonic: clock.monotonic,
                    ...(deps.healthPollMs === undefined ? {} : { pollMs: deps.healthPollMs }),
                  });
            if (unhealthy === undefined) {
              if (isSelf(job)) await clearPending(dir.root);
              // The state and the floor commit together; only then is anything old deleted.
              move(job, "healthy", {
                alongside: () => journal.raiseSecurityFloor(job.component, manifest.securityVersion),
              });
              await tidyAfterCommit(job, manifest, dir, component);
            } else {
              move(job, "unhealthy", { code: "HEALTH_CHECK_FAILED", message: unhealthy });
            }
            break;
          }
          case "rolling_back": {
            // A first self-update has no previous release under releases/: the launcher then starts
            // the agent installed beside it.
            const back =
              job.fromVersion !== undefined && (await dir.releases()).includes(job.fromVersion)
                ? job.fromVersion
                : undefined;
            const target = isSelf(job) ? back : job.fromVersion;
            if (target !== undefined && target !== back) {
              // Never point current at nothing: the abandoned release stays live, and says why.
              log.error({ component: job.component, target }, "the release to go back to is missing");
              journal.setState(job.id, "rolling_back", clock.now(), {
                code: journal.get(job.id)?.code ?? "HEALTH_CHECK_FAILED",
                message: `${journal.get(job.id)?.message ?? ""}; release ${target} to go back to is missing, so ${job.toVersion} stays live`,
              });
              move(job, "reverted", { ...codeAndMessage(job) });
              break;
            }
            await dir.switchTo(target);
            if (isSelf(job)) await clearPending(dir.root);
            else {
              await restart(job, component, dir, signal).catch((error: unknown) => {
                log.error({ err: error, component: job.component }, "restart after rollback failed");
              });
            }
            if ((await dir.currentVersion()) !== job.toVersion) await dir.removeRelease(job.toVersion);
            await dir.removeDownload(manifest.artifact.sha256).catch(() => undefined);
            journal.forgetRelease(job.component, job.toVersion);
            move(job, "reverted", { ...codeAndMessage(job) });
            // This process is the release just abandoned: start again as the one switched back to.
            if (isSelf(job) && deps.self?.version === job.toVersion) deps.self.restart();
            break;
          }
          default:
            throw new AgentError("INTERNAL", `update state ${state} has no step`);
        }
      } catch (error) {
        if (signal.aborted) throw error;
        const failure = isAgentError(error)
          ? error
          : new AgentError("INTERNAL", errorMessage(error), { cause: error });
        log.warn({ err: failure, component: job.component, state }, "update step failed");
        if (state === "rolling_back") {
          // Nowhere safer to go: try again, a little later.
          journal.setState(job.id, "rolling_back", clock.now(), {
            code: failure.code,
            message: failure.message,
          });
          await new Promise((resolve) => setTimeout(resolve, 1000));
          continue;
        }
        if (state !== "activating" && state !== "health_check") {
          // Nothing was switched: drop the staged tree and a verified artifact; a partial download
          // (.part) stays, so the next attempt at this artifact resumes it.
          await dir.clearStaging().catch(() => undefined);
          await rm(artifact, { force: true }).catch(() => undefined);
        }
        move(job, "error", { code: failure.code, message: failure.message });
      }
    }
  }

  /** The component's newest job when it is not finished. */
  function openJob(component: string): UpdateJob | undefined {
    const job = journal.latest(component);
    return job !== undefined && !TERMINAL_STATES.has(job.state as UpdateState) ? job : undefined;
  }

  /** A deferred job that will not go on: failed (nothing was changed), and said so. */
  function abandon(job: UpdateJob, why: string): void {
    cancelRetry(job.id);
    move(job, "error", { code: "DEFERRED", message: why });
  }

  /** A job already committed or rolled back may still be tidying up (deleting old releases): wait for it. */
  async function settleFinished(): Promise<void> {
    const current = running;
    if (current === undefined) return;
    if (TERMINAL_STATES.has(journal.get(current.job.id)?.state as UpdateState)) await current.done;
  }

  function isSelf(job: UpdateJob): boolean {
    return job.component === SELF_COMPONENT;
  }

  /**
   * The agent cannot restart itself into the new release and stay to watch it: it leaves `pending`
   * for the launcher, switches, records health_check and stops; the new agent checks itself at start
   * (recoverAtStart), and a release that never gets that far is switched back by the launcher.
   */
  async function activateSelf(job: UpdateJob, dir: ComponentDir): Promise<void> {
    const self = deps.self;
    const problem = selfUpdateProblem(self, dir.root);
    if (self === undefined || problem !== undefined) throw new AgentError("INCOMPATIBLE", problem ?? "");
    await writePending(dir.root, { version: job.toVersion, previous: job.fromVersion ?? self.version });
    await dir.switchTo(job.toVersion);
    move(job, "activated");
    log.info({ toVersion: job.toVersion }, "restarting into the new agent release");
    self.restart();
  }

  /**
   * At start, a self-update left in activating or health_check: this process is either the new
   * release (check itself, then commit) or the old one again (the launcher switched back, or the
   * switch never happened): roll back with the launcher's reason.
   */
  async function recoverSelf(job: UpdateJob): Promise<void> {
    const dir = componentDir(deps.dataDir, job.component);
    if (deps.self?.version === job.toVersion) {
      if (job.state === "activating") move(job, "activated");
      return;
    }
    const launcherReason = await takeRolledBack(dir.root);
    // Not switched yet (a power cut before the switch): activation is redone.
    if (
      job.state === "activating" &&
      launcherReason === undefined &&
      (await dir.currentVersion()) !== job.toVersion
    ) {
      return;
    }
    const reason = launcherReason ?? "the new agent release did not start";
    if (job.state === "activating") move(job, "error", { code: "HEALTH_CHECK_FAILED", message: reason });
    else move(job, "unhealthy", { code: "HEALTH_CHECK_FAILED", message: reason });
  }

  /** At start: finish, resume or undo one job a restart interrupted (transitions.ts recover()). */
  async function recoverJob(job: UpdateJob): Promise<void> {
    // The retained state may have lost its last publish to the kill: say it again, whatever it is.
    publish(job);
    if (job.state === "idle") {
      // Created, then stopped before its first step: nothing was changed, so it failed.
      move(job, "error", { code: "INTERNAL", message: "interrupted by a restart before it started" });
      return;
    }
    if (job.state === "committed") {
      // A kill while the old releases were being deleted leaves some: finish that.
      const component = deps.components[job.component] ?? { keep: 2 };
      await tidyAfterCommit(job, manifestOf(job), componentDir(deps.dataDir, job.component), component);
      return;
    }
    if (TERMINAL_STATES.has(job.state as UpdateState)) return;
    // Waiting for a lock or a window risks nothing: those restarts do not count towards giving up.
    const restarts = job.state === "deferred" ? job.restarts : journal.countRestart(job.id, clock.now());
    if (
      isSelf(job) &&
      (job.state === "activating" || job.state === "health_check") &&
      restarts <= MAX_RESTARTS
    ) {
      await recoverSelf(job);
    } else {
      const plan = recover(job.state, restarts);
      log.warn(
        { component: job.component, state: job.state, restarts, plan },
        "resuming an interrupted update",
      );
      if (plan.action === "rollback") {
        // An unknown state has no row in the table: treat it as the riskiest known one.
        if (nextState(job.state as UpdateState, "error") !== "rolling_back") {
          journal.setState(job.id, "health_check", clock.now());
        }
        move(job, "error", { code: "HEALTH_CHECK_FAILED", message: plan.reason });
      } else if (plan.action === "fail") {
        move(job, "error", { code: "INTERNAL", message: plan.reason });
        return;
      }
    }
    // One job runs at a time; the others (another component's) are started as soon as it is done.
    if (running === undefined) void start(job);
    else scheduleRetry(job.id, BUSY_RETRY_MS);
  }

  function deferAgain(job: UpdateJob, check: Extract<Precondition, { ok: false }>): void {
    const current = journal.get(job.id);
    const same = current?.progress?.reason === check.reason;
    if (!same) move(job, "defer", { reason: check.reason, message: check.message });
    scheduleRetry(job.id, check.retryAfterMs);
  }

  /** Checks a deferred job again after `afterMs` (or on poke()); later still if another job is running. */
  function scheduleRetry(id: number, afterMs: number): void {
    clearTimeout(retryTimers.get(id));
    const timer = setTimeout(() => {
      retryTimers.delete(id);
      if (stopped) return;
      if (running !== undefined) {
        scheduleRetry(id, BUSY_RETRY_MS);
        return;
      }
      const job = journal.get(id);
      if (job !== undefined && !TERMINAL_STATES.has(job.state as UpdateState)) void start(job);
    }, afterMs);
    timer.unref();
    retryTimers.set(id, timer);
  }

  function cancelRetry(id: number): void {
    clearTimeout(retryTimers.get(id));
    retryTimers.delete(id);
  }

  function start(job: UpdateJob): Promise<JobOutcome> {
    const abort = new AbortController();
    const done = drive(job, abort.signal)
      .catch((error: unknown) => {
        log.warn({ err: error, component: job.component }, "update interrupted");
        return outcome(job);
      })
      .finally(() => {
        if (running?.job.id === job.id) running = undefined;
      });
    running = { job, abort, done };
    return done;
  }

  return {
    /**
     * Accepts a signed manifest envelope and runs the update; resolves when it is committed, rolled
     * back, failed or deferred (a deferred job goes on by itself). A refused manifest throws its code
     * and creates no job.
     */
    async apply(envelope: unknown, commandId: string | undefined): Promise<JobOutcome> {
      if (stopped) throw new AgentError("BUSY", "the agent is stopping");
      if (applying) throw new AgentError("BUSY", "another update is being accepted", { retryable: true });
      // Held from the first await to the job's creation: two update.apply commands run in parallel.
      applying = true;
      try {
        await settleFinished();
        if (running !== undefined) {
          throw new AgentError(
            "BUSY",
            `an update of ${running.job.component} to ${running.job.toVersion} is in progress`,
            { retryable: true },
          );
        }
        const decision = deps.decide(envelope);
        if (!decision.ok) throw decision.error;
        const { manifest } = decision.value;
        if (manifest.component === SELF_COMPONENT) {
          const problem = selfUpdateProblem(deps.self, componentDir(deps.dataDir, SELF_COMPONENT).root);
          if (problem !== undefined) throw new AgentError("INCOMPATIBLE", problem);
        }
        const open = openJob(manifest.component);
        if (open !== undefined && open.state !== "deferred") {
          throw new AgentError("BUSY", `an update of ${manifest.component} is ${open.state}`, {
            retryable: true,
          });
        }
        // Checked before the job exists, so that creating it and its first state follow each other
        // with nothing awaited between: a job never rests in idle.
        const check = await deps.preconditions(
          neededBytes(manifest),
          componentDir(deps.dataDir, manifest.component).root,
        );
        if (stopped || running !== undefined) {
          throw new AgentError("BUSY", "another update started meanwhile", { retryable: true });
        }
        // A new release replaces one still waiting for its preconditions.
        if (open !== undefined) abandon(open, `superseded by ${manifest.version}`);
        const job = journal.create({
          component: manifest.component,
          fromVersion: decision.value.installedVersion,
          toVersion: manifest.version,
          state: "idle",
          manifest: decision.value.payloadBytes.toString("utf8"),
          commandId,
          now: clock.now(),
        });
        if (!check.ok) {
          move(job, "defer", { reason: check.reason, message: check.message });
          scheduleRetry(job.id, check.retryAfterMs);
          return outcome(job);
        }
        move(job, "start");
        return start(job);
      } finally {
        applying = false;
      }
    },

    /**
     * Goes back to the release before the live one (update.rollback, pos-agent rollback): the live one
     * is switched away from, its component restarted and its tree removed. Below the security floor
     * too: the operator who signs this decides.
     */
    async rollback(component: string, reason: string, commandId?: string): Promise<JobOutcome> {
      if (applying) throw new AgentError("BUSY", "an update is being accepted", { retryable: true });
      await settleFinished();
      if (running !== undefined) {
        throw new AgentError("BUSY", `an update of ${running.job.component} is in progress`, {
          retryable: true,
        });
      }
      // A release still waiting would otherwise install itself over the one gone back to.
      const waiting = openJob(component);
      if (waiting !== undefined && waiting.state !== "deferred") {
        throw new AgentError("BUSY", `an update of ${component} is ${waiting.state}`, { retryable: true });
      }
      if (waiting !== undefined) abandon(waiting, "cancelled by a rollback");
      const dir = componentDir(deps.dataDir, component);
      const live = await dir.currentVersion();
      if (live === undefined) throw new AgentError("BAD_REQUEST", `${component} has no installed release`);
      const older = (await dir.releases()).filter((version) => compareVersions(version, live) < 0);
      const previous = older.at(-1);
      if (previous === undefined) {
        throw new AgentError("BAD_REQUEST", `${component} has no release older than ${live} to go back to`);
      }
      const files = journal.releaseFiles(component, previous);
      if (files !== undefined) {
        const tree = await verifyTree(dir.releaseDir(previous), files);
        if (!tree.ok) {
          throw new AgentError(
            "HASH_MISMATCH",
            `release ${previous} of ${component} is damaged (${tree.path}: ${tree.reason}); not switching to it`,
          );
        }
      }
      const known = journal.latest(component);
      const job = journal.create({
        component,
        fromVersion: previous,
        toVersion: live,
        state: "health_check",
        manifest:
          known?.toVersion === live ? known.manifest : JSON.stringify(placeholderManifest(component, live)),
        commandId,
        now: clock.now(),
      });
      move(job, "rollback", { message: reason });
      return start(job);
    },

    /** The newest job of each component (or of one). */
    status(component?: string): JobOutcome[] {
      const jobs = component === undefined ? journal.latestAll() : [journal.latest(component)];
      return jobs.filter((job): job is UpdateJob => job !== undefined).map(outcome);
    },

    /** At start: finish or undo what a restart interrupted (transitions.ts recover()). */
    async recoverAtStart(): Promise<void> {
      for (const job of journal.latestAll()) {
        try {
          await recoverJob(job);
        } catch (error) {
          // One unreadable job must not keep the agent from starting (a crash loop would follow).
          log.error(
            { err: error, component: job.component, state: job.state },
            "could not recover an update",
          );
        }
      }
    },

    /** A precondition may have changed (an app released its lock): check deferred jobs now. */
    poke(): void {
      for (const id of [...retryTimers.keys()]) scheduleRetry(id, 0);
    },

    /** Stops the running step; its persisted state is resumed at the next start. */
    async stop(): Promise<void> {
      stopped = true;
      for (const timer of retryTimers.values()) clearTimeout(timer);
      if (running === undefined) return;
      running.abort.abort(new AgentError("INTERNAL", "the agent is stopping"));
      await running.done;
    },

    /** For tests and update.status: is a job running now. */
    busy: (): boolean => running !== undefined,
  };
}

export type UpdateEngine = ReturnType<typeof createUpdateEngine>;
export type { JobOutcome, UpdateStatePayload };
