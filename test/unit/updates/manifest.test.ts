import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  compareVersions,
  Manifest,
  type ManifestInput,
  modeBits,
  pathProblem,
  VERSION_PATTERN,
} from "../../../src/updates/manifest.js";

const HASH = "ab".repeat(32);

function manifest(overrides: Partial<ManifestInput> = {}): ManifestInput {
  return {
    v: 1,
    component: "pos-app",
    version: "2.4.1",
    securityVersion: 3,
    issuedAt: "2026-11-20T00:00:00Z",
    expiresAt: "2027-02-20T00:00:00Z",
    compatible: { models: ["A920"], minAgentVersion: "0.1.0" },
    artifact: {
      url: "https://updates.example/pos-app-2.4.1.tar.gz",
      size: 1_048_576,
      sha256: HASH,
      compression: "gzip",
      type: "full",
    },
    files: [
      { path: "bin/app.js", size: 2048, sha256: HASH, mode: "0755" },
      { path: "lib/util.js", size: 10, sha256: HASH, mode: "0644" },
    ],
    ...overrides,
  };
}

function problems(input: unknown): string[] {
  const parsed = Manifest.safeParse(input);
  return parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
}

function withPaths(...paths: string[]): ManifestInput {
  return manifest({ files: paths.map((path) => ({ path, size: 1, sha256: HASH, mode: "0644" })) });
}

describe("Manifest", () => {
  it("accepts the contract's example and fills defaults", () => {
    expect(problems(manifest())).toEqual([]);
    const { compatible, ...noCompatible } = manifest();
    const parsed = Manifest.parse({
      ...noCompatible,
      artifact: { url: "http://u.example/a.tar.gz", size: 1, sha256: HASH },
    });
    expect(parsed.compatible).toEqual({});
    expect(parsed.artifact).toMatchObject({ compression: "gzip", type: "full" });
  });

  it("refuses each unsafe path, at the file's path", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /is empty/],
      ["/etc/passwd", /is absolute/],
      ["../evil", /contains "\.\."/],
      ["a/../../evil", /contains "\.\."/],
      ["./a", /empty or '\.' segment/],
      ["a//b", /empty or '\.' segment/],
      ["a/", /empty or '\.' segment/],
      ["a\\b", /contains a backslash/],
      ["a\u0000b", /control character/],
      ["a\nb", /control character/],
      ["a\u007fb", /control character/],
      [`${"x".repeat(1025)}`, /longer than 1024 bytes/],
      [`${"é".repeat(513)}`, /longer than 1024 bytes/],
    ];
    for (const [path, message] of cases) {
      expect(pathProblem(path), JSON.stringify(path)).toMatch(message);
      const found = problems(withPaths("ok.txt", path));
      expect(found, JSON.stringify(path)).toHaveLength(1);
      expect(found[0]).toMatch(/^files\.1\.path: path /);
    }
    expect(pathProblem("dir/sub/ünïcode name.txt")).toBeUndefined();
    expect(pathProblem("..a/b..")).toBeUndefined();
  });

  it("refuses a path listed twice and a file that is also another file's directory", () => {
    expect(problems(withPaths("a/b", "c", "a/b"))).toEqual(["files.2.path: a/b is listed twice"]);
    expect(problems(withPaths("a", "a/b/c"))).toEqual([
      "files: a is listed as a file and as a directory of a/b/c",
    ]);
    expect(problems(withPaths("x/y/z", "x/y"))).toEqual([
      "files: x/y is listed as a file and as a directory of x/y/z",
    ]);
    expect(problems(withPaths("a", "ab/c", "a.d/e"))).toEqual([]);
  });

  it("refuses unknown keys, a delta without its base, a bad mode, and expiry before issue", () => {
    expect(problems({ ...manifest(), signature: "x" })[0]).toMatch(/Unrecognized key/);
    expect(problems(manifest({ artifact: { ...manifest().artifact, type: "delta" } }))).toEqual([
      "artifact.base: a delta artifact names its base version",
    ]);
    expect(
      problems(manifest({ artifact: { ...manifest().artifact, type: "delta", base: "2.4.0" } })),
    ).toEqual([]);
    for (const mode of ["4755", "04755", "0800", "rwx", "75"]) {
      expect(problems(manifest({ files: [{ path: "a", size: 1, sha256: HASH, mode }] })), mode).toEqual([
        'files.0.mode: must be octal permissions such as "0644" or "0755"',
      ]);
    }
    expect(problems(manifest({ expiresAt: "2026-11-20T00:00:00Z" }))).toEqual([
      "expiresAt: must be later than issuedAt",
    ]);
    expect(problems(manifest({ artifact: { ...manifest().artifact, url: "ftp://x/a" } }))[0]).toMatch(
      /^artifact\.url: must be an http/,
    );
  });

  it("reads mode bits without ever returning setuid, setgid or sticky", () => {
    expect(modeBits("0755")).toBe(0o755);
    expect(modeBits("644")).toBe(0o644);
    expect(modeBits("7777")).toBe(0o777);
  });
});

describe("compareVersions", () => {
  it("orders the SemVer 2.0 example chain, numeric identifiers by value", () => {
    const chain = [
      "0.9.9",
      "1.0.0-0",
      "1.0.0-9",
      "1.0.0-10",
      "1.0.0-alpha",
      "1.0.0-alpha.1",
      "1.0.0-alpha.beta",
      "1.0.0-beta",
      "1.0.0-beta.2",
      "1.0.0-beta.11",
      "1.0.0-rc.1",
      "1.0.0",
      "1.0.1",
      "1.2.0",
      "1.10.0",
      "2.0.0",
      "10.0.0",
    ];
    for (let i = 0; i < chain.length; i++) {
      for (let j = 0; j < chain.length; j++) {
        expect(compareVersions(chain[i] as string, chain[j] as string), `${chain[i]} vs ${chain[j]}`).toBe(
          Math.sign(i - j),
        );
      }
    }
  });

  it("orders numeric prerelease identifiers past 2^53 exactly", () => {
    expect(compareVersions("1.0.0-9007199254740993", "1.0.0-9007199254740992")).toBe(1);
    expect(compareVersions("1.0.0-99999999999999999999", "1.0.0-100000000000000000000")).toBe(-1);
  });

  it("refuses build metadata and leading zeros, which would give one version two names", () => {
    for (const bad of ["1.0", "1.0.0+build.5", "01.0.0", "1.0.0-01", "1.0.0-rc.01", "1.0.0-", "v1.0.0"]) {
      expect(VERSION_PATTERN.test(bad), bad).toBe(false);
      expect(() => compareVersions(bad, "1.0.0"), bad).toThrow(/is not a version/);
    }
    for (const good of ["1.0.0-0", "1.0.0-0a", "1.0.0-00a", "1.0.0--", "1.0.0-x.7.z.92"]) {
      expect(VERSION_PATTERN.test(good), good).toBe(true);
    }
  });

  it("is a total order: reflexive, antisymmetric, transitive, and 0 only for equal strings", () => {
    const identifier = fc.oneof(
      fc.nat({ max: 12 }).map(String),
      fc.constantFrom("alpha", "beta", "rc", "0a", "a-b", "-", "Z", "z"),
    );
    const version = fc
      .tuple(
        fc.nat({ max: 3 }),
        fc.nat({ max: 3 }),
        fc.nat({ max: 3 }),
        fc.array(identifier, { maxLength: 3 }),
      )
      .map(([a, b, c, pre]) => `${a}.${b}.${c}${pre.length > 0 ? `-${pre.join(".")}` : ""}`);
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        expect(VERSION_PATTERN.test(a)).toBe(true);
        expect(compareVersions(a, a)).toBe(0);
        expect(compareVersions(a, b) + compareVersions(b, a)).toBe(0);
        expect(compareVersions(a, b) === 0).toBe(a === b);
        if (compareVersions(a, b) <= 0 && compareVersions(b, c) <= 0) {
          expect(compareVersions(a, c)).toBeLessThanOrEqual(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("matches the pattern in linear time on a long hostile string", () => {
    const started = performance.now();
    VERSION_PATTERN.test(`1.0.0-${"1".repeat(100_000)}!`);
    VERSION_PATTERN.test(`1.0.0-${"1a".repeat(50_000)}.!`);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
