import { mkdir, open, readdir, readlink, rename, rm, stat, statfs, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { compareVersions, VERSION_PATTERN } from "./manifest.js";

/**
 * A component's directory (CONTRACT 8): `releases/{version}/…` beside each other, `current` a
 * relative symbolic link to the live one, replaced by one atomic rename, and work areas for the
 * download and the tree being staged. Everything that must survive a power cut is followed by an
 * fsync of its directory.
 */
export interface ComponentDir {
  root: string;
  current: string;
  releaseDir(version: string): string;
  stagingDir(version: string): string;
  downloadFile(sha256: string): string;
  /** The live version, or undefined when `current` is absent or points somewhere unexpected. */
  currentVersion(): Promise<string | undefined>;
  /** Points `current` at releases/{version} (undefined: removes it) in one rename; durable on return. */
  switchTo(version: string | undefined): Promise<void>;
  /** Moves a staged tree into releases/{version} (replacing a leftover one); durable on return. */
  promote(version: string): Promise<void>;
  /** Versions in releases/, oldest first. */
  releases(): Promise<string[]>;
  removeRelease(version: string): Promise<void>;
  /** Empties the staging area. */
  clearStaging(): Promise<void>;
  removeDownload(sha256: string): Promise<void>;
}

export function componentDir(dataDir: string, component: string): ComponentDir {
  const root = join(dataDir, "components", component);
  const releases = join(root, "releases");
  const staging = join(root, ".staging");
  const downloads = join(root, ".download");
  const trash = join(root, ".trash");
  const current = join(root, "current");

  return {
    root,
    current,
    releaseDir: (version) => join(releases, version),
    stagingDir: (version) => join(staging, version),
    downloadFile: (sha256) => join(downloads, `${sha256}.artifact`),

    async currentVersion() {
      let target: string;
      try {
        target = await readlink(current);
      } catch {
        return undefined;
      }
      const version = basename(target);
      const expected = join("releases", version);
      if ((target !== expected && target !== join(releases, version)) || !VERSION_PATTERN.test(version)) {
        return undefined;
      }
      return version;
    },

    async switchTo(version) {
      if (version === undefined) {
        await rm(current, { force: true });
        await fsyncDir(root);
        return;
      }
      const temporary = join(root, ".current.tmp");
      await rm(temporary, { force: true });
      await symlink(join("releases", version), temporary);
      await rename(temporary, current);
      await fsyncDir(root);
    },

    async promote(version) {
      const target = join(releases, version);
      await mkdirp(releases);
      await rm(target, { recursive: true, force: true });
      await rename(join(staging, version), target);
      await fsyncDir(releases);
      await fsyncDir(staging);
    },

    async releases() {
      let names: string[];
      try {
        names = await readdir(releases);
      } catch {
        return [];
      }
      return names.filter((name) => VERSION_PATTERN.test(name)).sort(compareVersions);
    },

    // Renamed out of releases/ first: a kill half-way through the deletion must not leave a
    // half-deleted tree where a rollback would look for a whole one.
    async removeRelease(version) {
      await rm(trash, { recursive: true, force: true });
      await mkdirp(trash);
      try {
        await rename(join(releases, version), join(trash, version));
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return;
        throw error;
      }
      await fsyncDir(releases).catch(() => undefined);
      await rm(trash, { recursive: true, force: true });
    },

    async clearStaging() {
      await rm(staging, { recursive: true, force: true });
      await mkdirp(staging);
    },

    async removeDownload(sha256) {
      await rm(join(downloads, `${sha256}.artifact`), { force: true });
      await rm(join(downloads, `${sha256}.artifact.part`), { force: true });
    },
  };
}

async function mkdirp(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
}

/** A rename or unlink is durable only once its directory is synced. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Free bytes of the file system holding `dir` (or its nearest existing parent). */
export async function freeBytes(dir: string): Promise<number> {
  let at = dir;
  for (;;) {
    try {
      await stat(at);
      const info = await statfs(at);
      return info.bavail * info.bsize;
    } catch (error) {
      const parent = dirname(at);
      if (parent === at) throw error;
      at = parent;
    }
  }
}
