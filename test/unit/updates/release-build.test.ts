import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract } from "tar-stream";
import { describe, expect, it } from "vitest";
import { toBase64url } from "../../../src/pki/envelope.js";
import { AgentError } from "../../../src/shared/errors.js";
import { Manifest } from "../../../src/updates/manifest.js";
import { deltaFiles, parseManifestText } from "../../../src/updates/release-base.js";
import {
  artifactUrl,
  type BuildReleaseOptions,
  buildRelease,
  releaseFileNames,
} from "../../../src/updates/release-build.js";
import { manifestMode, scanTree } from "../../../src/updates/release-tree.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

const NOW = Date.UTC(2026, 10, 20, 12, 0, 0, 345);

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  size: number;
  mtime: number;
  uid: number;
  gid: number;
  uname: string;
  sha256: string;
}

/** Every entry of a tar.gz, read with tar-stream (the agent's reader). */
async function readTarball(file: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const reader = extract();
  const done = pipeline(Readable.from([readFileSync(file)]), createGunzip(), reader);
  for await (const entry of reader) {
    const hash = createHash("sha256");
    for await (const chunk of entry) hash.update(chunk as Buffer);
    const h = entry.header;
    entries.push({
      name: h.name,
      type: h.type,
      mode: h.mode,
      size: h.size,
      mtime: h.mtime.getTime(),
      uid: h.uid,
      gid: h.gid,
      uname: h.uname,
      sha256: hash.digest("hex"),
    });
  }
  await done;
  return entries;
}

function sha256(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function writeTree(root: string, files: Record<string, string | Buffer>, modes: Record<string, number> = {}) {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), content);
    chmodSync(join(root, path), modes[path] ?? 0o644);
  }
}

function options(
  from: string,
  outDir: string,
  extra: Partial<BuildReleaseOptions> = {},
): BuildReleaseOptions {
  return { component: "pos-app", version: "2.4.1", from, outDir, expiresDays: 90, ...extra };
}

async function refusal(promise: Promise<unknown>): Promise<AgentError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AgentError);
  return error as AgentError;
}

const TREE = {
  "bin/app.js": "#!/usr/bin/env node\nconsole.log('hi')\n",
  "lib/util.js": "export const x = 1;\n",
  "lib/deep/data.bin": Buffer.alloc(200_000, 7),
  "README.txt": "read me\n",
  "empty.txt": "",
  [`${"long-directory-name/".repeat(8)}file-with-a-long-name.txt`]: "long path\n",
  "ünïcode/ñame.txt": "utf-8\n",
};

describe("scanTree", () => {
  it("lists regular files sorted by path with their permission bits", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, TREE, { "bin/app.js": 0o755, "README.txt": 0o600 });
    mkdirSync(join(root, "var/empty"), { recursive: true });
    const tree = await scanTree(root);
    const paths = Object.keys(TREE).sort((a, b) => (a < b ? -1 : 1));
    expect(tree.files.map((file) => file.path)).toEqual(paths);
    expect(tree.files.find((file) => file.path === "bin/app.js")?.mode).toBe("0755");
    expect(tree.files.find((file) => file.path === "README.txt")?.mode).toBe("0600");
    expect(tree.files.find((file) => file.path === "lib/deep/data.bin")?.size).toBe(200_000);
    expect(tree.emptyDirectories).toEqual(["var/empty"]);
  });

  it("drops setuid, setgid and sticky bits from the mode", async () => {
    expect(manifestMode(0o104755)).toBe("0755");
    expect(manifestMode(0o102750)).toBe("0750");
    expect(manifestMode(0o101644)).toBe("0644");
    const root = makeTmpDir("tree");
    writeTree(root, { "bin/su": "x" }, { "bin/su": 0o4755 });
    expect((await scanTree(root)).files[0]?.mode).toBe("0755");
  });

  it("refuses a symbolic link, naming it, even when it points inside the tree", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "lib/a.js": "a" });
    symlinkSync("a.js", join(root, "lib/link.js"));
    const error = await refusal(scanTree(root));
    expect(error.code).toBe("BAD_PATH");
    expect(error.message).toBe(
      `${join(root, "lib/link.js")} is a symbolic link; a release holds regular files only (copy the target in instead)`,
    );
  });

  it("refuses a symbolic link to a directory instead of following it", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "lib/a.js": "a" });
    symlinkSync("lib", join(root, "lib2"));
    expect((await refusal(scanTree(root))).message).toMatch(/lib2 is a symbolic link/);
  });

  it("refuses a FIFO and a socket, naming each", async () => {
    const root = makeTmpDir("tree");
    execFileSync("mkfifo", [join(root, "pipe")]);
    expect((await refusal(scanTree(root))).message).toMatch(/pipe is a FIFO \(named pipe\); a release holds/);

    const other = makeTmpDir("tree");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(other, "sock"), resolve));
    try {
      expect((await refusal(scanTree(other))).message).toMatch(/sock is a socket;/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("refuses names that pathProblem refuses and names that are not UTF-8", async () => {
    for (const [name, problem] of [
      ["back\\slash.txt", /the path contains a backslash/],
      ["bell\u0007.txt", /the path contains a control character/],
    ] as const) {
      const root = makeTmpDir("tree");
      writeTree(root, { [`dir/${name}`]: "x" });
      const error = await refusal(scanTree(root));
      expect(error.code).toBe("BAD_PATH");
      expect(error.message).toMatch(problem);
      expect(error.message).toContain(join(root, "dir"));
    }
    const root = makeTmpDir("tree");
    writeFileSync(Buffer.from(`${root}/caf\xe9.txt`, "latin1"), "x");
    expect((await refusal(scanTree(root))).message).toMatch(/holds a name that is not UTF-8 \("caf/);
  });

  it("refuses a tree that is missing or is a file", async () => {
    const root = makeTmpDir("tree");
    expect((await refusal(scanTree(join(root, "nope")))).message).toMatch(
      /nope: cannot read the release tree \(ENOENT\)/,
    );
    writeFileSync(join(root, "file"), "x");
    expect((await refusal(scanTree(join(root, "file")))).message).toMatch(/file is not a directory/);
  });
});

describe("buildRelease", () => {
  it("writes a manifest listing every file and a tar.gz holding exactly those files", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, TREE, { "bin/app.js": 0o755 });
    const out = makeTmpDir("out");
    const built = await buildRelease(options(root, out, { url: "https://cdn.example/pos/" }), {
      now: () => NOW,
    });

    expect(built.artifactFile).toBe(join(out, "pos-app-2.4.1.tar.gz"));
    expect(built.manifestFile).toBe(join(out, "pos-app-2.4.1.manifest.json"));
    expect(readdirSync(out).sort()).toEqual(["pos-app-2.4.1.manifest.json", "pos-app-2.4.1.tar.gz"]);
    const manifest = JSON.parse(readFileSync(built.manifestFile, "utf8"));
    expect(manifest).toEqual(built.manifest);
    expect(Manifest.safeParse(manifest).success).toBe(true);
    expect(manifest).toMatchObject({
      v: 1,
      component: "pos-app",
      version: "2.4.1",
      securityVersion: 0,
      issuedAt: "2026-11-20T12:00:00Z",
      expiresAt: "2027-02-18T12:00:00Z",
      compatible: {},
    });
    const expected = Object.entries(TREE)
      .map(([path, content]) => ({
        path,
        size: Buffer.byteLength(content),
        sha256: sha256(content),
        mode: path === "bin/app.js" ? "0755" : "0644",
      }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(manifest.files).toEqual(expected);

    const artifactBytes = readFileSync(built.artifactFile);
    expect(manifest.artifact).toEqual({
      url: "https://cdn.example/pos/pos-app-2.4.1.tar.gz",
      size: artifactBytes.length,
      sha256: sha256(artifactBytes),
      compression: "gzip",
      type: "full",
    });
    const entries = await readTarball(built.artifactFile);
    expect(entries.map(({ name, size, sha256, mode }) => ({ path: name, size, sha256, mode }))).toEqual(
      expected.map((file) => ({ ...file, mode: Number.parseInt(file.mode, 8) })),
    );
    for (const entry of entries) {
      expect(entry).toMatchObject({ type: "file", mtime: 0, uid: 0, gid: 0, uname: "" });
    }
  });

  it("gives the same artifact bytes for the same tree, wherever and whenever it is built", async () => {
    const first = makeTmpDir("tree");
    writeTree(first, TREE);
    const second = makeTmpDir("tree");
    cpSync(first, second, { recursive: true }); // new inodes and mtimes, same content
    const a = await buildRelease(options(first, makeTmpDir("out")), { now: () => NOW });
    const b = await buildRelease(options(second, makeTmpDir("out")), { now: () => NOW + 86_400_000 });
    expect(b.manifest.artifact.sha256).toBe(a.manifest.artifact.sha256);
    expect(readFileSync(b.artifactFile).equals(readFileSync(a.artifactFile))).toBe(true);
    expect(b.manifest.files).toEqual(a.manifest.files);
  });

  it("makes a delta holding only files whose content the base lacks", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, TREE);
    const out = makeTmpDir("out");
    const v1 = await buildRelease(options(root, out, { version: "2.4.0", securityVersion: 3 }), {
      now: () => NOW,
    });
    writeTree(root, {
      "lib/util.js": "export const x = 2;\n",
      "lib/new.js": "new\n",
      "moved/README.txt": "read me\n",
    });
    const v2 = await buildRelease(options(root, out, { base: v1.manifest }), { now: () => NOW });

    expect(releaseFileNames("pos-app", "2.4.1", "2.4.0")).toEqual({
      artifact: "pos-app-2.4.1-from-2.4.0.tar.gz",
      manifest: "pos-app-2.4.1-from-2.4.0.manifest.json",
    });
    expect(v2.artifactFile).toBe(join(out, "pos-app-2.4.1-from-2.4.0.tar.gz"));
    expect(v2.manifest.artifact).toMatchObject({ type: "delta", base: "2.4.0" });
    expect(v2.manifest.securityVersion).toBe(3); // carried from the base
    expect(v2.manifest.files).toHaveLength(Object.keys(TREE).length + 2);
    // A moved file's content is in the base, so it does not travel; the agent finds it by hash.
    expect(v2.packed.map((file) => file.path)).toEqual(["lib/new.js", "lib/util.js"]);
    expect((await readTarball(v2.artifactFile)).map((entry) => entry.name)).toEqual([
      "lib/new.js",
      "lib/util.js",
    ]);
    expect(deltaFiles(v2.manifest.files, v2.manifest)).toEqual([]);
  });

  it("refuses a base of another component, a base not older, and a lower securityVersion", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "a.txt": "a" });
    const out = makeTmpDir("out");
    const base = (await buildRelease(options(root, out, { securityVersion: 2 }), { now: () => NOW }))
      .manifest;
    const cases: Array<[Partial<BuildReleaseOptions>, RegExp]> = [
      [{ component: "other", version: "3.0.0" }, /base manifest is for component "pos-app", not "other"/],
      [{ version: "2.4.1" }, /base version 2.4.1 is not older than 2.4.1/],
      [{ version: "2.4.1-rc.1" }, /base version 2.4.1 is not older than 2.4.1-rc.1/],
      [{ version: "3.0.0", securityVersion: 1 }, /securityVersion 1 is below the base's 2/],
    ];
    for (const [extra, message] of cases) {
      const error = await refusal(buildRelease(options(root, out, { ...extra, base }), { now: () => NOW }));
      expect(error.message).toMatch(message);
    }
  });

  it("refuses to overwrite outputs unless forced, and checks options before reading the tree", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "a.txt": "a" });
    const out = makeTmpDir("out");
    await buildRelease(options(root, out), { now: () => NOW });
    const again = await refusal(buildRelease(options(root, out), { now: () => NOW }));
    expect(again.message).toBe(
      `${join(out, "pos-app-2.4.1.tar.gz")} already exists; pass --force to replace it`,
    );
    await buildRelease(options(root, out, { force: true }), { now: () => NOW });

    const inside = await refusal(buildRelease(options(root, join(root, "out")), { now: () => NOW }));
    expect(inside.message).toBe(
      `the output directory ${join(root, "out")} is inside the release tree ${root}`,
    );

    const bad = await refusal(
      buildRelease(options(join(root, "missing"), out, { models: [""], force: true }), { now: () => NOW }),
    );
    expect(bad.message).toMatch(/^the manifest would be invalid \(compatible\.models\.0: /);
  });

  it("fails with HASH_MISMATCH and leaves no output when a file changes between hashing and packing", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "a.bin": Buffer.alloc(10_000, 1), "z.bin": Buffer.alloc(10_000, 2) });
    const out = makeTmpDir("out");
    let edited = false;
    const error = await refusal(
      buildRelease(options(root, out), {
        now: () => NOW,
        onProgress: (progress) => {
          if (progress.phase === "packing" && !edited) {
            edited = true;
            writeFileSync(join(root, "z.bin"), Buffer.alloc(10_000, 3)); // same size, new bytes
          }
        },
      }),
    );
    expect(error.code).toBe("HASH_MISMATCH");
    expect(error.message).toMatch(/z\.bin changed after it was hashed/);
    expect(readdirSync(out)).toEqual([]);
  });

  it("fails naming the artifact, without hanging, when the artifact cannot be written", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "a.bin": Buffer.alloc(3_000_000, 1), "b.bin": Buffer.alloc(3_000_000, 2) });
    const out = makeTmpDir("out");
    mkdirSync(join(out, "pos-app-2.4.1.tar.gz.partial"));
    const error = await refusal(buildRelease(options(root, out), { now: () => NOW }));
    expect(error.message).toBe(`${join(out, "pos-app-2.4.1.tar.gz")}: cannot write (EISDIR)`);
    expect(existsSync(join(out, "pos-app-2.4.1.manifest.json"))).toBe(false);
  });

  it("reports progress up to the tree's total in both passes", async () => {
    const root = makeTmpDir("tree");
    writeTree(root, { "a.bin": Buffer.alloc(600_000, 1), "b.txt": "b" });
    const seen: string[] = [];
    await buildRelease(options(root, makeTmpDir("out")), {
      now: () => NOW,
      onProgress: (p) => seen.push(`${p.phase} ${p.files}/${p.totalFiles} ${p.bytes}/${p.totalBytes}`),
    });
    expect(seen.length).toBeGreaterThan(4);
    expect(seen).toContain("hashing 2/2 600001/600001");
    expect(seen.at(-1)).toBe("packing 2/2 600001/600001");
  });
});

describe("artifactUrl", () => {
  it("appends the file name to a URL ending in /, takes any other as is, and falls back to a placeholder", () => {
    expect(artifactUrl("https://cdn.example/rel/", "a-1.0.0.tar.gz")).toEqual({
      url: "https://cdn.example/rel/a-1.0.0.tar.gz",
      placeholder: false,
    });
    expect(artifactUrl("https://cdn.example/x?sig=1", "a-1.0.0.tar.gz").url).toBe(
      "https://cdn.example/x?sig=1",
    );
    expect(artifactUrl(undefined, "a-1.0.0.tar.gz")).toEqual({
      url: "https://updates.invalid/a-1.0.0.tar.gz",
      placeholder: true,
    });
  });
});

describe("parseManifestText", () => {
  const manifest = {
    v: 1,
    component: "pos-app",
    version: "2.4.0",
    securityVersion: 0,
    issuedAt: "2026-11-20T00:00:00Z",
    expiresAt: "2027-02-20T00:00:00Z",
    artifact: { url: "https://u.example/a.tar.gz", size: 10, sha256: "a".repeat(64) },
    files: [{ path: "a", size: 1, sha256: "b".repeat(64), mode: "0644" }],
  };

  it("reads an unsigned manifest and the payload of a signed envelope without verifying it", () => {
    expect(parseManifestText(JSON.stringify(manifest), "m.json").version).toBe("2.4.0");
    const envelope = {
      payload: toBase64url(JSON.stringify(manifest)),
      signatures: [{ protected: "e30", signature: "AAAA" }],
    };
    expect(parseManifestText(JSON.stringify(envelope), "m.env.json").files).toHaveLength(1);
  });

  it("refuses, naming the file and the field, what is not a manifest", () => {
    expect(() => parseManifestText("{", "m.json")).toThrow(/^m\.json: not valid JSON/);
    expect(() => parseManifestText(JSON.stringify({ ...manifest, version: "two" }), "m.json")).toThrow(
      /^m\.json: not a release manifest \(version: must be a version/,
    );
    expect(() => parseManifestText(JSON.stringify({ payload: "!", signatures: [] }), "e.json")).toThrow(
      /^e\.json: it has signatures but is not a well-formed envelope/,
    );
    const badPayload = { payload: "!!", signatures: [{ protected: "e30", signature: "AAAA" }] };
    expect(() => parseManifestText(JSON.stringify(badPayload), "e.json")).toThrow(
      /payload is not base64url JSON/,
    );
  });

  it("writes nothing outside the output directory", () => {
    expect(existsSync(join(process.cwd(), "pos-app-2.4.1.tar.gz"))).toBe(false);
  });
});
