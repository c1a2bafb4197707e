import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { z } from "zod";
import type { Component as ComponentSchema } from "../config/component-schema.js";
import type { Clock } from "../shared/clock.js";
import { AgentError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { UpdateJob, UpdateJournal } from "../store/update-journal.js";
import { runArgv } from "./component-control.js";
import type { DownloadOptions, DownloadResult } from "./download.js";
import { compareVersions, type Manifest } from "./manifest.js";
import type { ComponentDir } from "./releases-dir.js";
import type { StageOptions, StageResult } from "./stage.js";
import { verifyTree } from "./tree-verify.js";

export type Component = z.infer<typeof ComponentSchema>;

export type JobSteps = ReturnType<typeof createJobSteps>;

/**
 * The file-system work of an update job, each step safe to run again after a restart: fetch the
 * artifact, build and promote the tree, restart the component, tidy up after a commit.
 */
export function createJobSteps(deps: {
  journal: UpdateJournal;
  download(options: DownloadOptions): Promise<DownloadResult>;
  stage(options: StageOptions): Promise<StageResult>;
  noteIssuedAt(ms: number): void;
  /** Publishes the job's retained state (download progress). */
  publish(job: UpdateJob): void;
  clock: Clock;
  log: Logger;
}) {
  const { journal, clock, log, publish } = deps;
  /** Jobs whose artifact this process downloaded and hashed (staging need not hash it again). */
  const downloadedThisRun = new Set<number>();

  async function download(
    job: UpdateJob,
    manifest: Manifest,
    dest: string,
    signal: AbortSignal,
  ): Promise<void> {
    let lastPublished = 0;
    await mkdir(dirname(dest), { recursive: true });
    // Killed after the download finished but before that was recorded: the whole artifact is there.
    // Staging hashes it again (it was not hashed by this process), so nothing unverified is used.
    const existing = await stat(dest).catch(() => undefined);
    if (existing?.size === manifest.artifact.size) return;
    await deps.download({
      url: manifest.artifact.url,
      dest,
      size: manifest.artifact.size,
      sha256: manifest.artifact.sha256,
      signal,
      log: log.child({ component: "download" }),
      onProgress: ({ bytes, totalBytes }) => {
        const at = clock.monotonic();
        if (at - lastPublished < 1000 && bytes < totalBytes) return;
        lastPublished = at;
        const progress = Math.floor((bytes / totalBytes) * 100);
        journal.setState(job.id, "downloading", clock.now(), { progress: { progress, bytes, totalBytes } });
        publish(job);
      },
    });
    downloadedThisRun.add(job.id);
  }

  async function install(
    job: UpdateJob,
    manifest: Manifest,
    dir: ComponentDir,
    artifact: string,
    signal: AbortSignal,
  ): Promise<void> {
    const target = dir.releaseDir(job.toVersion);
    // Resumed after the tree was promoted: keep it if it is whole.
    if ((await verifyTree(target, manifest.files, { signal }).catch(() => ({ ok: false }))).ok) {
      journal.recordRelease(job.component, job.toVersion, manifest.files, clock.now());
      return;
    }
    await dir.clearStaging();
    await dir.removeRelease(job.toVersion);
    const base = job.fromVersion;
    const baseFiles = base === undefined ? undefined : journal.releaseFiles(job.component, base);
    await deps.stage({
      manifest,
      artifactPath: artifact,
      stagingDir: dir.stagingDir(job.toVersion),
      // Only when this very process downloaded it: a resumed job re-hashes what it finds on disk.
      artifactVerified: downloadedThisRun.has(job.id),
      ...(base === undefined ? {} : { baseDir: dir.releaseDir(base) }),
      ...(baseFiles === undefined ? {} : { baseFiles }),
      signal,
    });
    await dir.promote(job.toVersion);
    journal.recordRelease(job.component, job.toVersion, manifest.files, clock.now());
  }

  async function restart(job: UpdateJob, component: Component, dir: ComponentDir, signal: AbortSignal) {
    if (component.restart === undefined) return;
    const result = await runArgv(component.restart, { timeoutMs: 120_000, signal, cwd: dir.root });
    if (result.code !== 0) {
      throw new AgentError(
        "HEALTH_CHECK_FAILED",
        `restart command of ${job.component} ${result.timedOut ? "timed out" : `exited ${result.code ?? result.signal}`}${result.output ? `: ${result.output.slice(-200)}` : ""}`,
      );
    }
  }

  async function tidyAfterCommit(
    job: UpdateJob,
    manifest: Manifest,
    dir: ComponentDir,
    component: Component,
  ) {
    deps.noteIssuedAt(Date.parse(manifest.issuedAt));
    await dir.removeDownload(manifest.artifact.sha256).catch(() => undefined);
    const keep = Math.max(1, component.keep);
    const all = (await dir.releases()).filter((version) => version !== job.toVersion);
    // Newer than the live one: a tree an abandoned update left behind.
    const stale = all.filter((version) => compareVersions(version, job.toVersion) > 0);
    // Older, newest first: the previous release is the first kept.
    const older = all.filter((version) => compareVersions(version, job.toVersion) < 0).reverse();
    for (const version of [...stale, ...older.slice(keep - 1)]) {
      await dir.removeRelease(version);
      journal.forgetRelease(job.component, version);
    }
  }

  return { download, install, restart, tidyAfterCommit };
}
