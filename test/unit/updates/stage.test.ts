import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentError, type ErrorCode } from "../../../src/shared/errors.js";
import { Manifest, type ManifestFile } from "../../../src/updates/manifest.js";
import { type StageOptions, stageRelease } from "../../../src/updates/stage.js";
import { verifyTree } from "../../../src/updates/tree-verify.js";
import { prng } from "../../helpers/prng.js";
import {
  buildTar,
  END_OF_ARCHIVE,
  gzip,
  rawFile,
  rawHeader,
  sha256,
  type TarEntry,
} from "../../helpers/tar-builder.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

interface ReleaseFile {
  path: string;
  data: Buffer;
  mode: string;
}

function releaseFile(path: string, data: string | Buffer, mode = "0644"): ReleaseFile {
  return { path, data: Buffer.from(data), mode };
}

function listed(file: ReleaseFile): ManifestFile {
  return { path: file.path, size: file.data.length, sha256: sha256(file.data), mode: file.mode };
}

function randomBytes(seed: number, size: number): Buffer {
  const next = prng(seed);
  return Buffer.from(Array.from({ length: size }, () => Math.floor(next() * 256)));
}

const APP = releaseFile("bin/app.js", "#!/usr/bin/env node\nconsole.log('2.4.1');\n", "0755");
const README = releaseFile("README", "hello", "0644");
const DATA = releaseFile("lib/deep/nested/data.bin", randomBytes(7, 300_000), "0600");
const EMPTY = releaseFile("empty", "", "0644");
/** A segment over 100 bytes: only a pax (or GNU long-name) header can carry this path. */
const LONG = releaseFile(`share/${"l".repeat(120)}/${"n".repeat(110)}.txt`, "long name", "0640");
const GOOD = [APP, README, DATA];

/** Archive modes the stager must ignore: setuid and world-writable. */
function entriesOf(files: readonly ReleaseFile[]): TarEntry[] {
  return files.map((file) => ({ name: file.path, data: file.data, mode: 0o4777 }));
}

function manifestFor(
  files: readonly ReleaseFile[] | readonly ManifestFile[],
  artifact: Buffer,
  options: { compression?: "gzip" | "none"; type?: "full" | "delta" } = {},
): Manifest {
  const type = options.type ?? "full";
  return Manifest.parse({
    v: 1,
    component: "pos-app",
    version: "2.4.1",
    securityVersion: 1,
    issuedAt: "2026-11-20T00:00:00Z",
    expiresAt: "2027-02-20T00:00:00Z",
    artifact: {
      url: "https://updates.example/pos-app-2.4.1.tar.gz",
      size: artifact.length,
      sha256: sha256(artifact),
      compression: options.compression ?? "gzip",
      type,
      ...(type === "delta" ? { base: "2.4.0" } : {}),
    },
    files: files.map((file) => ("data" in file ? listed(file) : file)),
  });
}

interface Env {
  root: string;
  sentinel: string;
  staging: string;
  artifactPath: string;
}

function setup(): Env {
  const root = makeTmpDir("stage");
  const sentinel = join(root, "sentinel");
  mkdirSync(sentinel);
  return { root, sentinel, staging: join(root, "staging"), artifactPath: join(root, "artifact") };
}

/** Every path under dir with its type, size and permission bits: "nothing else changed" in one value. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const stats = lstatSync(path);
    const kind = stats.isSymbolicLink() ? "link" : stats.isDirectory() ? "dir" : "file";
    out.push(`${path.slice(dir.length + 1)} ${kind} ${stats.size} ${(stats.mode & 0o7777).toString(8)}`);
    if (kind === "dir") out.push(...snapshot(path).map((line) => `${name}/${line}`));
  }
  return out;
}

async function failure(run: Promise<unknown>): Promise<AgentError> {
  const outcome = await run.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(AgentError);
  return outcome as AgentError;
}

/** Refused with `code`, the staging dir gone, and not one byte changed anywhere else under root. */
async function expectRefused(env: Env, options: StageOptions, code: ErrorCode, message: RegExp) {
  const before = snapshot(env.root);
  const error = await failure(stageRelease(options));
  expect({ code: error.code, message: error.message }).toMatchObject({
    code,
    message: expect.stringMatching(message),
  });
  expect(existsSync(env.staging)).toBe(false);
  expect(snapshot(env.root)).toEqual(before);
  return error;
}

function expectStaged(staging: string, files: readonly ReleaseFile[]): void {
  for (const file of files) {
    const path = join(staging, file.path);
    expect(readFileSync(path).equals(file.data), file.path).toBe(true);
    expect((statSync(path).mode & 0o7777).toString(8).padStart(4, "0"), file.path).toBe(file.mode);
  }
  const regular = snapshot(staging).filter((line) => line.split(" ")[1] === "file");
  expect(regular.map((line) => line.split(" ")[0]).sort()).toEqual(files.map((file) => file.path).sort());
}

function flip(data: Buffer, at: number): Buffer {
  const copy = Buffer.from(data);
  copy[at] = (copy[at] ?? 0) ^ 0x40;
  return copy;
}

describe("stageRelease with a full artifact", () => {
  it("stages every file with its bytes and the manifest's mode when the gzip artifact is good", async () => {
    const env = setup();
    const files = [...GOOD, EMPTY, LONG];
    const archive = gzip(
      await buildTar([
        { name: "bin", type: "directory" },
        ...entriesOf(files),
        { name: "share/", type: "directory" },
      ]),
    );
    writeFileSync(env.artifactPath, archive);
    const manifest = manifestFor(files, archive);

    const result = await stageRelease({ manifest, artifactPath: env.artifactPath, stagingDir: env.staging });

    const bytes = files.reduce((sum, file) => sum + file.data.length, 0);
    expect(result).toEqual({ files: files.length, bytes, fromBase: 0 });
    expectStaged(env.staging, files);
    expect(await verifyTree(env.staging, manifest.files)).toEqual({ ok: true });
  });

  it("stages an uncompressed artifact when compression is none", async () => {
    const env = setup();
    const archive = await buildTar(entriesOf(GOOD));
    writeFileSync(env.artifactPath, archive);
    const manifest = manifestFor(GOOD, archive, { compression: "none" });

    await stageRelease({ manifest, artifactPath: env.artifactPath, stagingDir: env.staging });

    expectStaged(env.staging, GOOD);
  });

  it('stages an archive made by GNU tar when names start with "./" and directories are listed', async () => {
    const env = setup();
    const source = join(env.root, "source");
    const files = [...GOOD, EMPTY, LONG];
    for (const file of files) {
      mkdirSync(dirname(join(source, file.path)), { recursive: true });
      writeFileSync(join(source, file.path), file.data);
      chmodSync(join(source, file.path), 0o777);
    }
    execFileSync("tar", ["-czf", env.artifactPath, "-C", source, "."]);
    rmSync(source, { recursive: true });
    const manifest = manifestFor(files, readFileSync(env.artifactPath));

    await stageRelease({ manifest, artifactPath: env.artifactPath, stagingDir: env.staging });

    expectStaged(env.staging, files);
  });

  it("stages into the staging dir when it already exists and is empty", async () => {
    const env = setup();
    mkdirSync(env.staging);
    const archive = gzip(await buildTar(entriesOf(GOOD)));
    writeFileSync(env.artifactPath, archive);

    await stageRelease({
      manifest: manifestFor(GOOD, archive),
      artifactPath: env.artifactPath,
      stagingDir: env.staging,
    });

    expectStaged(env.staging, GOOD);
  });

  it("refuses a staging dir that holds anything and leaves it as it was", async () => {
    const env = setup();
    mkdirSync(env.staging);
    writeFileSync(join(env.staging, "leftover"), "from a crash");
    const archive = gzip(await buildTar(entriesOf(GOOD)));
    writeFileSync(env.artifactPath, archive);
    const before = snapshot(env.root);

    const error = await failure(
      stageRelease({
        manifest: manifestFor(GOOD, archive),
        artifactPath: env.artifactPath,
        stagingDir: env.staging,
      }),
    );

    expect(error.code).toBe("INTERNAL");
    expect(error.message).toMatch(/not an empty directory/);
    expect(snapshot(env.root)).toEqual(before);
  });
});

interface Attack {
  name: string;
  code: ErrorCode;
  message: RegExp | ((env: Env) => RegExp);
  /** `signed` is what the manifest describes; `onDisk` (default: the same) is what was downloaded. */
  build: (env: Env) => Promise<{
    files?: readonly ReleaseFile[] | readonly ManifestFile[];
    signed: Buffer;
    onDisk?: Buffer;
    compression?: "gzip" | "none";
  }>;
}

const tarOf = (entries: TarEntry[]) => buildTar(entries);
const GOOD_TAR = () => tarOf(entriesOf(GOOD));
/** One good file first, so the refusal has something on disk to clean up. */
const afterReadme = (entry: TarEntry) => tarOf([...entriesOf([README]), entry, ...entriesOf([APP, DATA])]);

const ATTACKS: Attack[] = [
  {
    name: "a byte of the gzip artifact is flipped",
    code: "HASH_MISMATCH",
    message: /corrupt|sha256/,
    build: async () => {
      const signed = gzip(await GOOD_TAR());
      return { signed, onDisk: flip(signed, Math.floor(signed.length / 2)) };
    },
  },
  {
    name: "a byte of a file's data is flipped in an uncompressed artifact",
    code: "HASH_MISMATCH",
    message: /"bin\/app\.js": expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}/,
    build: async () => {
      const signed = await GOOD_TAR();
      return { signed, onDisk: flip(signed, signed.indexOf(APP.data) + 3), compression: "none" };
    },
  },
  {
    name: "a byte of tar padding is flipped, so only the artifact hash differs",
    code: "HASH_MISMATCH",
    message: /artifact .* expected \d+ bytes with sha256/,
    build: async () => {
      const signed = await GOOD_TAR();
      const at = signed.indexOf(README.data) + README.data.length + 10;
      return { signed, onDisk: flip(signed, at), compression: "none" };
    },
  },
  {
    name: "the downloaded artifact is truncated",
    code: "HASH_MISMATCH",
    message: /truncated: \d+ of the \d+ bytes/,
    build: async () => {
      const signed = gzip(await GOOD_TAR());
      return { signed, onDisk: signed.subarray(0, signed.length - 100) };
    },
  },
  {
    name: "the signed archive itself ends inside a file",
    code: "HASH_MISMATCH",
    message: /corrupt or truncated/,
    build: async () => {
      const full = await GOOD_TAR();
      return { signed: gzip(full.subarray(0, full.indexOf(DATA.data) + 1000)) };
    },
  },
  {
    name: "an entry's header claims more bytes than follow",
    code: "HASH_MISMATCH",
    message: /corrupt or truncated/,
    build: async () => {
      const lying = releaseFile("README", Buffer.alloc(5000, 0x61));
      return {
        files: [lying],
        signed: Buffer.concat([
          rawHeader({ name: "README", size: 5000 }),
          Buffer.from("aaaaaaaaaa"),
          END_OF_ARCHIVE,
        ]),
        compression: "none",
      };
    },
  },
  {
    name: "the artifact is extended past its declared size",
    code: "TOO_LARGE",
    message: /the manifest allows/,
    build: async () => {
      const signed = gzip(await GOOD_TAR());
      return { signed, onDisk: Buffer.concat([signed, Buffer.alloc(100, 0x61)]) };
    },
  },
  {
    name: "a gzip bomb pads the archive with megabytes of zeros",
    code: "TOO_LARGE",
    message: /unpacks to more than \d+ bytes/,
    build: async () => ({ signed: gzip(Buffer.concat([await GOOD_TAR(), Buffer.alloc(16 * 1024 * 1024)])) }),
  },
  {
    name: "entries follow the end-of-archive blocks",
    code: "BAD_PATH",
    message: /"evil\.txt" is not in the manifest/,
    build: async () => ({
      signed: gzip(Buffer.concat([await GOOD_TAR(), await tarOf([{ name: "evil.txt", data: "x" }])])),
    }),
  },
  {
    name: "garbage follows the end-of-archive blocks",
    code: "HASH_MISMATCH",
    message: /corrupt or truncated/,
    build: async () => ({
      signed: Buffer.concat([await GOOD_TAR(), Buffer.from("garbage!".repeat(200))]),
      compression: "none",
    }),
  },
  {
    name: "an entry is not in the manifest",
    code: "BAD_PATH",
    message: /"bin\/extra\.sh" is not in the manifest/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "bin/extra.sh", data: "rm -rf /" })) }),
  },
  {
    name: 'an entry climbs out with ".."',
    code: "BAD_PATH",
    message: /"\.\.\/sentinel\/evil\.txt" contains "\.\."/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "../sentinel/evil.txt", data: "x" })) }),
  },
  {
    name: "an entry has an absolute path",
    code: "BAD_PATH",
    message: /is absolute/,
    build: async (env) => ({
      signed: gzip(await afterReadme({ name: `${env.sentinel}/evil.txt`, data: "x" })),
    }),
  },
  {
    name: 'a pax header overrides a listed name with ".."',
    code: "BAD_PATH",
    message: /"\.\.\/sentinel\/evil\.txt" contains "\.\."/,
    build: async () => ({
      signed: gzip(
        await afterReadme({ name: "bin/app.js", data: APP.data, pax: { path: "../sentinel/evil.txt" } }),
      ),
    }),
  },
  {
    name: "a listed path is a symlink",
    code: "BAD_PATH",
    message: /"bin\/app\.js" is a symbolic link/,
    build: async () => ({
      signed: gzip(await afterReadme({ name: "bin/app.js", type: "symlink", linkname: "/etc/passwd" })),
    }),
  },
  {
    name: "a listed path is a hard link",
    code: "BAD_PATH",
    message: /"bin\/app\.js" is a hard link/,
    build: async () => ({
      signed: gzip(await afterReadme({ name: "bin/app.js", type: "link", linkname: "README" })),
    }),
  },
  {
    name: "a listed path is a character device",
    code: "BAD_PATH",
    message: /is a character device/,
    build: async () => ({
      signed: gzip(await afterReadme({ name: "bin/app.js", type: "character-device" })),
    }),
  },
  {
    name: "a listed path is a block device",
    code: "BAD_PATH",
    message: /is a block device/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "bin/app.js", type: "block-device" })) }),
  },
  {
    name: "a listed path is a fifo",
    code: "BAD_PATH",
    message: /is a fifo/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "bin/app.js", type: "fifo" })) }),
  },
  {
    name: "an entry has a typeflag tar does not define",
    code: "BAD_PATH",
    message: /"bin\/app\.js" is of an unknown type/,
    build: async () => ({
      signed: Buffer.concat([
        rawFile("README", README.data),
        rawHeader({ name: "bin/app.js", size: 0, typeflag: "X" }),
      ]),
      compression: "none",
    }),
  },
  {
    name: 'a directory entry climbs out with ".."',
    code: "BAD_PATH",
    message: /directory entry "\.\.\/" contains "\.\."/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "../", type: "directory" })) }),
  },
  {
    name: "a file is in the archive twice",
    code: "BAD_PATH",
    message: /"README" appears twice/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "README", data: README.data })) }),
  },
  {
    name: 'a file is in the archive twice, once as "./"',
    code: "BAD_PATH",
    message: /"README" appears twice/,
    build: async () => ({ signed: gzip(await afterReadme({ name: "./README", data: README.data })) }),
  },
  {
    name: "a file is larger than the manifest lists",
    code: "TOO_LARGE",
    message: /"README" is 6 bytes in the artifact, the manifest lists 5/,
    build: async () => ({
      signed: gzip(await tarOf([...entriesOf([APP, DATA]), { name: "README", data: "hello!" }])),
    }),
  },
  {
    name: "a file is smaller than the manifest lists",
    code: "HASH_MISMATCH",
    message: /"README" is 4 bytes in the artifact, the manifest lists 5/,
    build: async () => ({
      signed: gzip(await tarOf([...entriesOf([APP, DATA]), { name: "README", data: "hell" }])),
    }),
  },
  {
    name: "a listed file is missing from a full artifact",
    code: "HASH_MISMATCH",
    message: /"README" is missing/,
    build: async () => ({ signed: gzip(await tarOf(entriesOf([APP, DATA]))) }),
  },
];

describe("stageRelease refusing a hostile or damaged artifact", () => {
  it.each(ATTACKS)("refuses with $code and leaves nothing behind when $name", async (attack) => {
    const env = setup();
    const built = await attack.build(env);
    writeFileSync(env.artifactPath, built.onDisk ?? built.signed);
    const manifest = manifestFor(built.files ?? GOOD, built.signed, {
      compression: built.compression ?? "gzip",
    });
    const message = typeof attack.message === "function" ? attack.message(env) : attack.message;

    await expectRefused(
      env,
      { manifest, artifactPath: env.artifactPath, stagingDir: env.staging },
      attack.code,
      message,
    );
  });
});

describe("stageRelease with a delta artifact", () => {
  const KEPT = releaseFile("lib/kept.js", "module.exports = 1;\n", "0644");
  const MOVED_OLD = releaseFile("old/name.txt", "moved content", "0644");
  const MOVED_NEW = releaseFile("new/place/name.txt", "moved content", "0755");
  const ADDED = releaseFile("bin/added.js", "new in 2.4.1", "0755");
  const DROPPED = releaseFile("old/dropped.txt", "only in 2.4.0", "0644");

  function installBase(env: Env, files: readonly ReleaseFile[]): string {
    const baseDir = join(env.root, "base");
    for (const file of files) {
      mkdirSync(dirname(join(baseDir, file.path)), { recursive: true });
      writeFileSync(join(baseDir, file.path), file.data, { mode: 0o644 });
    }
    return baseDir;
  }

  async function deltaSetup() {
    const env = setup();
    const baseFiles = [KEPT, MOVED_OLD, DROPPED];
    const baseDir = installBase(env, baseFiles);
    const archive = gzip(await tarOf(entriesOf([ADDED])));
    writeFileSync(env.artifactPath, archive);
    const manifest = manifestFor([KEPT, MOVED_NEW, ADDED], archive, { type: "delta" });
    const options: StageOptions = {
      manifest,
      artifactPath: env.artifactPath,
      stagingDir: env.staging,
      baseDir,
      baseFiles: baseFiles.map(listed),
    };
    return { env, baseDir, options };
  }

  it("copies base files found by hash, also from a different path, and gives them the new mode", async () => {
    const { env, options } = await deltaSetup();

    const result = await stageRelease(options);

    expect(result).toEqual({ files: 3, bytes: expect.any(Number), fromBase: 2 });
    expectStaged(env.staging, [KEPT, MOVED_NEW, ADDED]);
  });

  it("refuses with HASH_MISMATCH and removes the staging dir when a base file was tampered with", async () => {
    const { env, baseDir, options } = await deltaSetup();
    writeFileSync(join(baseDir, KEPT.path), "module.exports = 2;\n");

    await expectRefused(env, options, "HASH_MISMATCH", /"lib\/kept\.js": expected sha256 .* in base file/);
  });

  it("refuses with HASH_MISMATCH when a base file grew", async () => {
    const { env, baseDir, options } = await deltaSetup();
    writeFileSync(join(baseDir, KEPT.path), `${KEPT.data.toString()}// more\n`);

    await expectRefused(env, options, "HASH_MISMATCH", /holds more than the \d+ bytes listed/);
  });

  it("refuses with BAD_PATH when a base file was replaced by a symlink", async () => {
    const { env, baseDir, options } = await deltaSetup();
    writeFileSync(join(env.sentinel, "same.js"), KEPT.data);
    rmSync(join(baseDir, KEPT.path));
    symlinkSync(join(env.sentinel, "same.js"), join(baseDir, KEPT.path));

    await expectRefused(env, options, "BAD_PATH", /symbolic link/);
  });

  it("refuses with HASH_MISMATCH when a file is neither in the delta nor in the base", async () => {
    const { env, options } = await deltaSetup();
    const baseFiles = options.baseFiles?.filter((file) => file.path !== MOVED_OLD.path) ?? [];

    await expectRefused(
      env,
      { ...options, baseFiles },
      "HASH_MISMATCH",
      /"new\/place\/name\.txt" is missing/,
    );
  });

  it("refuses with INCOMPATIBLE and creates nothing when the base release is not given", async () => {
    const { env, options } = await deltaSetup();
    const { baseDir: _baseDir, baseFiles: _baseFiles, ...withoutBase } = options;

    await expectRefused(env, withoutBase, "INCOMPATIBLE", /needs the installed base release/);
  });
});

describe("stageRelease progress and abort", () => {
  async function bigSetup() {
    const env = setup();
    const archive = gzip(await tarOf(entriesOf(GOOD)));
    writeFileSync(env.artifactPath, archive);
    return { env, manifest: manifestFor(GOOD, archive) };
  }

  it("reports progress at most every 250 ms and once at the end", async () => {
    const { env, manifest } = await bigSetup();
    let now = 0;
    const reports: { bytes: number; at: number }[] = [];

    await stageRelease({
      manifest,
      artifactPath: env.artifactPath,
      stagingDir: env.staging,
      monotonic: () => {
        now += 100;
        return now;
      },
      onProgress: ({ bytes, totalBytes }) => {
        expect(totalBytes).toBe(manifest.files.reduce((sum, file) => sum + file.size, 0));
        reports.push({ bytes, at: now });
      },
    });

    expect(reports.length).toBeGreaterThan(1);
    const throttled = reports.slice(0, -1);
    for (let i = 1; i < throttled.length; i++) {
      expect((throttled[i]?.at ?? 0) - (throttled[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(250);
    }
    expect(reports.at(-1)?.bytes).toBe(manifest.files.reduce((sum, file) => sum + file.size, 0));
  });

  it("throws the abort's reason and leaves no staging dir when aborted mid-way", async () => {
    const { env, manifest } = await bigSetup();
    const controller = new AbortController();
    const reason = new AgentError("DEFERRED", "maintenance window closed");
    let reports = 0;
    let now = 0;

    const error = await expectRefused(
      env,
      {
        manifest,
        artifactPath: env.artifactPath,
        stagingDir: env.staging,
        signal: controller.signal,
        monotonic: () => {
          now += 1000;
          return now;
        },
        onProgress: () => {
          reports++;
          controller.abort(reason);
        },
      },
      "DEFERRED",
      /maintenance window closed/,
    );

    expect(error).toBe(reason);
    expect(reports).toBe(1);
  });

  it("throws a retryable INTERNAL error when aborted without an AgentError reason", async () => {
    const { env, manifest } = await bigSetup();
    const controller = new AbortController();
    controller.abort();

    const error = await expectRefused(
      env,
      { manifest, artifactPath: env.artifactPath, stagingDir: env.staging, signal: controller.signal },
      "INTERNAL",
      /aborted/,
    );

    expect(error.retryable).toBe(true);
  });
});

describe("verifyTree", () => {
  async function staged() {
    const env = setup();
    const archive = gzip(await tarOf(entriesOf(GOOD)));
    writeFileSync(env.artifactPath, archive);
    const manifest = manifestFor(GOOD, archive);
    await stageRelease({ manifest, artifactPath: env.artifactPath, stagingDir: env.staging });
    return { dir: env.staging, files: manifest.files };
  }

  it("answers ok when the tree matches the manifest", async () => {
    const { dir, files } = await staged();
    expect(await verifyTree(dir, files)).toEqual({ ok: true });
  });

  it("answers not ok naming the file when a file the manifest lacks is present", async () => {
    const { dir, files } = await staged();
    writeFileSync(join(dir, "bin/extra.sh"), "x");
    expect(await verifyTree(dir, files)).toEqual({
      ok: false,
      path: "bin/extra.sh",
      reason: "is not in the manifest",
    });
  });

  it("answers not ok naming the directory when an unneeded directory is present", async () => {
    const { dir, files } = await staged();
    mkdirSync(join(dir, "lib/deep/cache"));
    expect(await verifyTree(dir, files)).toMatchObject({ ok: false, path: "lib/deep/cache" });
  });

  it("answers not ok naming the file when one byte changed and the size stayed the same", async () => {
    const { dir, files } = await staged();
    writeFileSync(join(dir, APP.path), flip(APP.data, 5));
    expect(await verifyTree(dir, files)).toMatchObject({
      ok: false,
      path: "bin/app.js",
      reason: expect.stringMatching(/^has sha256 /),
    });
  });

  it("answers not ok naming the file when its mode changed", async () => {
    const { dir, files } = await staged();
    chmodSync(join(dir, APP.path), 0o644);
    expect(await verifyTree(dir, files)).toEqual({
      ok: false,
      path: "bin/app.js",
      reason: "has mode 0644, expected 0755",
    });
  });

  it("answers not ok naming the file when it was replaced by a symlink to identical content", async () => {
    const { dir, files } = await staged();
    const outside = join(dirname(dir), "sentinel", "app.js");
    writeFileSync(outside, APP.data, { mode: 0o755 });
    rmSync(join(dir, APP.path));
    symlinkSync(outside, join(dir, APP.path));
    expect(await verifyTree(dir, files)).toEqual({
      ok: false,
      path: "bin/app.js",
      reason: "is a symbolic link",
    });
  });

  it("answers not ok naming the file when it is missing", async () => {
    const { dir, files } = await staged();
    rmSync(join(dir, README.path));
    expect(await verifyTree(dir, files)).toEqual({ ok: false, path: "README", reason: "is missing" });
  });

  it("answers not ok when the directory does not exist", async () => {
    const env = setup();
    expect(await verifyTree(env.staging, [listed(README)])).toEqual({
      ok: false,
      path: ".",
      reason: "is not a directory",
    });
  });
});
