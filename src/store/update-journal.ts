import type { Database } from "better-sqlite3";
import { z } from "zod";

/**
 * The update jobs, the security floors and the file lists of installed releases (migration step 4).
 * Every write is its own durable transaction (synchronous=FULL): the engine persists a state before
 * the step that could break something, so a power cut leaves a state that says what to do next.
 */

export interface UpdateJob {
  id: number;
  component: string;
  fromVersion: string | undefined;
  toVersion: string;
  state: string;
  /** The verified manifest payload, JSON. */
  manifest: string;
  commandId: string | undefined;
  restarts: number;
  code: string | undefined;
  message: string | undefined;
  progress: JobProgress | undefined;
  createdAt: number;
  updatedAt: number;
}

export const JobProgress = z.object({
  progress: z.number().optional(),
  bytes: z.number().optional(),
  totalBytes: z.number().optional(),
  /** deferred: lock_held, outside_window, battery_low, disk_low. */
  reason: z.string().optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

interface JobRow {
  id: number;
  component: string;
  from_version: string | null;
  to_version: string;
  state: string;
  manifest: string;
  command_id: string | null;
  restarts: number;
  code: string | null;
  message: string | null;
  progress: string | null;
  created_at: number;
  updated_at: number;
}

export const ManifestFiles = z.array(
  z.object({ path: z.string(), size: z.number(), sha256: z.string(), mode: z.string() }),
);

export type UpdateJournal = ReturnType<typeof createUpdateJournal>;

export function createUpdateJournal(db: Database) {
  const insertJob = db.prepare(`
    INSERT INTO update_jobs (component, from_version, to_version, state, manifest, command_id, created_at, updated_at)
    VALUES (@component, @fromVersion, @toVersion, @state, @manifest, @commandId, @now, @now)`);
  const updateJob = db.prepare(`
    UPDATE update_jobs SET state = @state, code = @code, message = @message, progress = @progress,
      updated_at = @now WHERE id = @id`);
  const bumpRestarts = db.prepare<[number, number]>(
    "UPDATE update_jobs SET restarts = restarts + 1, updated_at = ? WHERE id = ?",
  );
  const byId = db.prepare<[number], JobRow>("SELECT * FROM update_jobs WHERE id = ?");
  const latestOf = db.prepare<[string], JobRow>(
    "SELECT * FROM update_jobs WHERE component = ? ORDER BY id DESC LIMIT 1",
  );
  const latestAll = db.prepare<[], JobRow>(
    "SELECT * FROM update_jobs WHERE id IN (SELECT MAX(id) FROM update_jobs GROUP BY component) ORDER BY id",
  );
  const floorOf = db.prepare<[string], { security_floor: number }>(
    "SELECT security_floor FROM component_floors WHERE component = ?",
  );
  const raiseFloor = db.prepare<[string, number]>(`
    INSERT INTO component_floors (component, security_floor) VALUES (?, ?)
    ON CONFLICT (component) DO UPDATE SET security_floor = MAX(security_floor, excluded.security_floor)`);
  const putRelease = db.prepare<[string, string, string, number]>(`
    INSERT INTO component_releases (component, version, files, installed_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (component, version) DO UPDATE SET files = excluded.files, installed_at = excluded.installed_at`);
  const releaseFiles = db.prepare<[string, string], { files: string }>(
    "SELECT files FROM component_releases WHERE component = ? AND version = ?",
  );
  const dropRelease = db.prepare<[string, string]>(
    "DELETE FROM component_releases WHERE component = ? AND version = ?",
  );
  const pruneJobs = db.prepare<[number]>(`
    DELETE FROM update_jobs WHERE updated_at < ?
      AND id NOT IN (SELECT MAX(id) FROM update_jobs GROUP BY component)`);

  return {
    create(job: {
      component: string;
      fromVersion: string | undefined;
      toVersion: string;
      state: string;
      manifest: string;
      commandId: string | undefined;
      now: number;
    }): UpdateJob {
      const { lastInsertRowid } = insertJob.run({
        ...job,
        fromVersion: job.fromVersion ?? null,
        commandId: job.commandId ?? null,
      });
      return this.get(Number(lastInsertRowid)) as UpdateJob;
    },

    /** Persists a new state (durable when this returns). */
    setState(
      id: number,
      state: string,
      now: number,
      extra: { code?: string; message?: string; progress?: JobProgress } = {},
    ): void {
      updateJob.run({
        id,
        state,
        now,
        code: extra.code ?? null,
        message: extra.message ?? null,
        progress: extra.progress === undefined ? null : JSON.stringify(extra.progress),
      });
    },

    /** Runs `fn` in one durable transaction (a state and the floor it raises commit together). */
    atomically<T>(fn: () => T): T {
      return db.transaction(fn)();
    },

    /** Counts one more start of the agent inside this job; returns the new count. */
    countRestart(id: number, now: number): number {
      bumpRestarts.run(now, id);
      return this.get(id)?.restarts ?? 0;
    },

    get(id: number): UpdateJob | undefined {
      const row = byId.get(id);
      return row === undefined ? undefined : toJob(row);
    },

    latest(component: string): UpdateJob | undefined {
      const row = latestOf.get(component);
      return row === undefined ? undefined : toJob(row);
    },

    /** The newest job of each component. */
    latestAll(): UpdateJob[] {
      return latestAll.all().map(toJob);
    },

    securityFloor(component: string): number {
      return floorOf.get(component)?.security_floor ?? 0;
    },

    /** Never lowers it. */
    raiseSecurityFloor(component: string, floor: number): void {
      raiseFloor.run(component, floor);
    },

    recordRelease(component: string, version: string, files: unknown, now: number): void {
      putRelease.run(component, version, JSON.stringify(files), now);
    },

    /** The installed release's file list, or undefined when unknown (or unreadable: a trust boundary). */
    releaseFiles(component: string, version: string): z.infer<typeof ManifestFiles> | undefined {
      const row = releaseFiles.get(component, version);
      if (row === undefined) return undefined;
      try {
        const parsed = ManifestFiles.safeParse(JSON.parse(row.files));
        return parsed.success ? parsed.data : undefined;
      } catch {
        return undefined;
      }
    },

    forgetRelease(component: string, version: string): void {
      dropRelease.run(component, version);
    },

    /** Drops finished jobs older than `before`, keeping each component's newest. */
    prune(before: number): number {
      return pruneJobs.run(before).changes;
    },
  };
}

function toJob(row: JobRow): UpdateJob {
  let progress: JobProgress | undefined;
  if (row.progress !== null) {
    try {
      const parsed = JobProgress.safeParse(JSON.parse(row.progress));
      progress = parsed.success ? parsed.data : undefined;
    } catch {
      progress = undefined;
    }
  }
  return {
    id: row.id,
    component: row.component,
    fromVersion: row.from_version ?? undefined,
    toVersion: row.to_version,
    state: row.state,
    manifest: row.manifest,
    commandId: row.command_id ?? undefined,
    restarts: row.restarts,
    code: row.code ?? undefined,
    message: row.message ?? undefined,
    progress,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
