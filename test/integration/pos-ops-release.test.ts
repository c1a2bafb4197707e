import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBase64url } from "../../src/pki/envelope.js";
import { loadRootsPem, verifyEnvelope } from "../../src/pki/verify-envelope.js";
import { Manifest } from "../../src/updates/manifest.js";
import { type CliResult, runBin } from "../helpers/run-bin.js";

// Runs the built bin (npm run build first), as operators do; the archive is read back with the
// system's tar, so the artifact is checked against a reader we did not write.
const ops = (args: string[], cwd: string): Promise<CliResult> => runBin("pos-ops", args, { cwd });
const run = promisify(execFile);

async function tarList(file: string): Promise<string[]> {
  const { stdout } = await run("tar", ["-tzf", file]);
  return stdout.split("\n").filter((line) => line.length > 0);
}

function sha256(bytes: Buffer | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function readManifest(file: string): Manifest {
  return Manifest.parse(JSON.parse(readFileSync(file, "utf8")));
}

function build(dir: string, args: string[]): Promise<CliResult> {
  return ops(["release", "build", "--component", "pos-app", ...args], dir);
}

const TREE: Record<string, string> = {
  "bin/app.js": "#!/usr/bin/env node\nimport '../lib/main.js';\n",
  "lib/main.js": "console.log('till open');\n",
  "lib/deep/er/data.json": '{"a":1}\n',
  "assets/empty.txt": "",
  "README.txt": "release notes\n",
};

describe("pos-ops release build", () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "pos-ops-release-"));
    for (const [path, content] of Object.entries(TREE)) {
      mkdirSync(join(dir, "tree", path, ".."), { recursive: true });
      writeFileSync(join(dir, "tree", path), content);
      chmodSync(join(dir, "tree", path), path.startsWith("bin/") ? 0o755 : 0o644);
    }
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists every file with its size, sha256 and mode, and packs exactly those files", async () => {
    const result = await build(dir, [
      "--version",
      "2.4.1",
      "--from",
      "tree",
      "--out",
      "out",
      "--url",
      "https://cdn.example/pos-app/",
      "--security-version",
      "3",
      "--models",
      "A920,A80",
      "--expires-days",
      "30",
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe("");
    expect(result.stdout).toMatch(/^out\/pos-app-2\.4\.1\.tar\.gz: full: 5 files, /);
    expect(result.stdout).toMatch(/\nout\/pos-app-2\.4\.1\.manifest\.json: pos-app 2\.4\.1, 5 files, /);

    const manifest = readManifest(join(dir, "out/pos-app-2.4.1.manifest.json"));
    expect(manifest.files).toEqual(
      Object.keys(TREE)
        .sort()
        .map((path) => ({
          path,
          size: Buffer.byteLength(TREE[path] as string),
          sha256: sha256(TREE[path] as string),
          mode: path.startsWith("bin/") ? "0755" : "0644",
        })),
    );
    expect(manifest).toMatchObject({ securityVersion: 3, compatible: { models: ["A920", "A80"] } });
    expect(Date.parse(manifest.expiresAt) - Date.parse(manifest.issuedAt)).toBe(30 * 86_400_000);
    const artifact = readFileSync(join(dir, "out/pos-app-2.4.1.tar.gz"));
    expect(manifest.artifact).toEqual({
      url: "https://cdn.example/pos-app/pos-app-2.4.1.tar.gz",
      size: artifact.length,
      sha256: sha256(artifact),
      compression: "gzip",
      type: "full",
    });

    expect(await tarList(join(dir, "out/pos-app-2.4.1.tar.gz"))).toEqual(Object.keys(TREE).sort());
    mkdirSync(join(dir, "unpacked"));
    await run("tar", ["-xzf", join(dir, "out/pos-app-2.4.1.tar.gz"), "-C", join(dir, "unpacked")]);
    for (const file of manifest.files) {
      const unpacked = join(dir, "unpacked", file.path);
      expect(sha256(readFileSync(unpacked)), file.path).toBe(file.sha256);
      expect(statSync(unpacked).mode & 0o777, file.path).toBe(Number.parseInt(file.mode, 8));
    }
  });

  it("gives an identical artifact when the same tree is built again", async () => {
    cpSync(join(dir, "tree"), join(dir, "tree-copy"), { recursive: true });
    const result = await build(dir, ["--version", "2.4.1", "--from", "tree-copy", "--out", "out-again"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(
      /^warning: no --url given, so artifact\.url is the placeholder https:\/\/updates\.invalid\/pos-app-2\.4\.1\.tar\.gz/,
    );
    const first = readManifest(join(dir, "out/pos-app-2.4.1.manifest.json"));
    const again = readManifest(join(dir, "out-again/pos-app-2.4.1.manifest.json"));
    expect(again.artifact.sha256).toBe(first.artifact.sha256);
    expect(again.files).toEqual(first.files);
  });

  it("packs just the changed file of 1000 into a delta no bigger than the change", async () => {
    const base = join(dir, "many-1");
    for (let i = 0; i < 1000; i++) {
      const path = join(base, `d${i % 10}`, `f${i}.dat`);
      mkdirSync(join(path, ".."), { recursive: true });
      writeFileSync(path, randomBytes(200));
    }
    cpSync(base, join(dir, "many-2"), { recursive: true });
    const changed = randomBytes(64 * 1024); // incompressible: the artifact cannot be smaller than it
    writeFileSync(join(dir, "many-2/d7/f517.dat"), changed);

    const v1 = await build(dir, ["--version", "1.0.0", "--from", "many-1", "--out", "many-out"]);
    expect(v1.code, v1.stderr).toBe(0);
    const v2 = await build(dir, [
      "--version",
      "1.1.0",
      "--from",
      "many-2",
      "--out",
      "many-out",
      "--base",
      "many-out/pos-app-1.0.0.manifest.json",
    ]);
    expect(v2.code, v2.stderr).toBe(0);
    expect(v2.stdout).toMatch(/pos-app-1\.1\.0-from-1\.0\.0\.tar\.gz: delta from 1\.0\.0: 1 of 1000 files/);

    const manifest = readManifest(join(dir, "many-out/pos-app-1.1.0-from-1.0.0.manifest.json"));
    expect(manifest.files).toHaveLength(1000);
    expect(manifest.artifact).toMatchObject({ type: "delta", base: "1.0.0" });
    const artifactFile = join(dir, "many-out/pos-app-1.1.0-from-1.0.0.tar.gz");
    expect(await tarList(artifactFile)).toEqual(["d7/f517.dat"]);
    expect(statSync(artifactFile).size).toBe(manifest.artifact.size);
    expect(manifest.artifact.size).toBeLessThanOrEqual(1.05 * changed.length + 1024);
  });

  it("refuses a symbolic link in the tree with exit 1, naming it, and writes nothing", async () => {
    cpSync(join(dir, "tree"), join(dir, "linked"), { recursive: true });
    symlinkSync("/etc/passwd", join(dir, "linked/lib/passwd"));
    const result = await build(dir, ["--version", "2.4.2", "--from", "linked", "--out", "out-linked"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "error: linked/lib/passwd is a symbolic link; a release holds regular files only (copy the target in instead)\n",
    );
    expect(existsSync(join(dir, "out-linked"))).toBe(false);
  });

  it("collects two release signatures whose envelope carries the manifest unchanged", async () => {
    expect((await ops(["pki", "init", "--out", "ca", "--days", "2"], dir)).code).toBe(0);
    for (const cn of ["rel-a", "rel-b"]) {
      const issued = await ops(
        ["pki", "issue", "--ca", "ca", "--role", "release", "--cn", cn, "--out", "keys"],
        dir,
      );
      expect(issued.code, issued.stderr).toBe(0);
    }
    const manifestFile = "out/pos-app-2.4.1.manifest.json";
    const signed = "out/pos-app-2.4.1.signed.json";
    const first = await ops(
      ["sign", "--key", "keys/rel-a.key.pem", "--cert", "keys/rel-a.cert.pem", manifestFile, "--out", signed],
      dir,
    );
    expect(first.code, first.stderr).toBe(0);
    const second = await ops(
      ["sign", "--key", "keys/rel-b.key.pem", "--cert", "keys/rel-b.cert.pem", signed, "--out", signed],
      dir,
    );
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toBe(`${signed}: 2 signature(s)\n`);

    const envelope = JSON.parse(readFileSync(join(dir, signed), "utf8"));
    expect(envelope.signatures).toHaveLength(2);
    const payload = JSON.parse(fromBase64url(envelope.payload)?.toString("utf8") ?? "null");
    expect(payload).toEqual(JSON.parse(readFileSync(join(dir, manifestFile), "utf8")));
    const verified = verifyEnvelope(envelope, {
      typ: "pos-manifest+json",
      rootsPem: loadRootsPem([join(dir, "ca/ca.cert.pem")]),
      threshold: 2,
      now: Date.now(),
    });
    expect(verified.ok && verified.value.signers.map((signer) => signer.subject)).toEqual([
      "CN=rel-a",
      "CN=rel-b",
    ]);

    // A signed envelope serves as a delta's base as well.
    writeFileSync(join(dir, "tree/lib/main.js"), "console.log('till open v2');\n");
    const delta = await build(dir, [
      "--version",
      "2.5.0",
      "--from",
      "tree",
      "--out",
      "out",
      "--base",
      signed,
    ]);
    expect(delta.code, delta.stderr).toBe(0);
    expect(await tarList(join(dir, "out/pos-app-2.5.0-from-2.4.1.tar.gz"))).toEqual(["lib/main.js"]);
  });

  it("exits 1 naming the base when the base cannot be used", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--component", "other"], /^error: the base manifest is for component "pos-app", not "other"\n$/],
      [["--version", "2.4.1"], /^error: the base version 2\.4\.1 is not older than 2\.4\.1; /],
      [["--base", "nope.json"], /^error: nope\.json: cannot read the manifest \(ENOENT\)\n$/],
      [
        ["--base", "tree/lib/deep/er/data.json"],
        /^error: tree\/lib\/deep\/er\/data\.json: not a release manifest \(v: /,
      ],
    ];
    for (const [extra, message] of cases) {
      const args = ["release", "build", "--component", "pos-app", "--version", "3.0.0", "--from", "tree"];
      const result = await ops(
        [...args, "--out", "out-bad", "--base", "out/pos-app-2.4.1.manifest.json", ...extra],
        dir,
      );
      expect(result.code, extra.join(" ")).toBe(1);
      expect(result.stderr, extra.join(" ")).toMatch(message);
    }
    expect(readdirSync(dir)).not.toContain("out-bad");
  });

  it("exits 2 with one sentence naming the option when the usage is wrong", async () => {
    const ok = ["--component", "pos-app", "--version", "1.0.0", "--from", "tree", "--out", "o"];
    const cases: Array<[string[], RegExp]> = [
      [["release"], /Usage/],
      [["release", "publish"], /unknown subcommand "publish"/],
      [["release", "build", "--version", "1.0.0", "--from", "t", "--out", "o"], /--component C is required/],
      [["release", "build", ...ok, "--from", ""], /--from DIR is required/],
      [["release", "build", ...ok, "--version", "1.0"], /--version "1\.0" is not a version/],
      [
        ["release", "build", ...ok, "--version", "1.0.0+build"],
        /--version "1\.0\.0\+build" is not a version/,
      ],
      [["release", "build", ...ok, "--component", "pos app"], /--component "pos app" must be/],
      [["release", "build", ...ok, "--url", "ftp://x/"], /--url must be an http:\/\/ or https:\/\/ URL/],
      [["release", "build", ...ok, "--expires-days", "0"], /--expires-days must be a whole number from 1/],
      [["release", "build", ...ok, "--security-version", "1.5"], /--security-version must be a whole number/],
      [["release", "build", ...ok, "--models", "A920,,A80"], /--models must be/],
      [["release", "build", ...ok, "--min-agent-version", "x"], /--min-agent-version "x"/],
      [["release", "build", ...ok, "extra"], /unexpected argument "extra"/],
      [["release", "build", ...ok, "--bogus"], /bogus/],
    ];
    for (const [args, message] of cases) {
      const result = await ops(args, dir);
      expect(result.code, args.join(" ")).toBe(2);
      const text = args.length === 1 ? result.stdout : result.stderr;
      expect(text, args.join(" ")).toMatch(message);
      if (args.length > 1) expect(result.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
    expect(existsSync(join(dir, "o"))).toBe(false);
  });

  it("answers --help with exit 0", async () => {
    for (const [args, text] of [
      [["--help"], /pos-ops release build --component C/],
      [["release", "--help"], /pos-ops release build/],
      [["release", "build", "--help"], /--base MANIFEST/],
    ] as const) {
      const result = await ops([...args], dir);
      expect(result.code, args.join(" ")).toBe(0);
      expect(result.stdout, args.join(" ")).toMatch(text);
    }
    expect((await ops(["--help"], dir)).stdout).not.toMatch(/arrives with/);
  });
});
