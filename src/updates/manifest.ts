import { z } from "zod";

/**
 * A release manifest (CONTRACT.md 8): the payload of a `pos-manifest+json` envelope. Strict, so a
 * misspelt field is refused instead of silently meaning nothing. Paths are checked here, by shape;
 * the artifact's own entries are held to this list when it is unpacked.
 */

export const COMPONENT_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/**
 * Semantic versions: MAJOR.MINOR.PATCH with an optional -prerelease; build metadata is refused (it never
 * orders). A numeric prerelease identifier has no leading zero (SemVer 2.0 item 9): otherwise "rc.01" and
 * "rc.1" would be two names for one place in the order.
 */
export const VERSION_PATTERN =
  /^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** Largest artifact or file we accept: 4 GiB. */
export const MAX_RELEASE_BYTES = 4 * 1024 ** 3;
export const MAX_FILES = 100_000;
const MAX_PATH_BYTES = 1024;

/**
 * Why a manifest or archive path is unsafe, or undefined when it is a plain relative path: no
 * absolute path, no `.`/`..` or empty segment, no backslash (a Windows-made tar), no control character.
 */
export function pathProblem(path: string): string | undefined {
  if (path.length === 0) return "is empty";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.startsWith("/")) return "is absolute";
  if (path.includes("\\")) return "contains a backslash";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(path)) return "contains a control character";
  for (const segment of path.split("/")) {
    if (segment === "..") return 'contains ".."';
    if (segment === "." || segment === "") return "has an empty or '.' segment";
  }
  return undefined;
}

const RelativePath = z.string().superRefine((path, ctx) => {
  const problem = pathProblem(path);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: `path ${problem}` });
});

const Sha256 = z.string().regex(SHA256_PATTERN, "must be 64 lowercase hex digits (SHA-256)");
const Size = z.int().min(0).max(MAX_RELEASE_BYTES);
const IsoTime = z.iso.datetime({
  offset: true,
  error: "must be an ISO 8601 time, e.g. 2026-11-20T00:00:00Z",
});

export const ManifestFile = z.strictObject({
  path: RelativePath,
  size: Size,
  sha256: Sha256,
  /** Octal permission bits, e.g. "0644"; setuid, setgid and sticky are refused. */
  mode: z.string().regex(/^0?[0-7]{3}$/, 'must be octal permissions such as "0644" or "0755"'),
});
export type ManifestFile = z.infer<typeof ManifestFile>;

export const Artifact = z
  .strictObject({
    url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
    size: Size.min(1),
    sha256: Sha256,
    compression: z.enum(["gzip", "none"]).default("gzip"),
    type: z.enum(["full", "delta"]).default("full"),
    /** For a delta: the version whose files complete the tree. */
    base: z.string().regex(VERSION_PATTERN, "must be a version such as 2.4.0").exactOptional(),
  })
  .refine((artifact) => artifact.type === "full" || artifact.base !== undefined, {
    message: "a delta artifact names its base version",
    path: ["base"],
  });
export type Artifact = z.infer<typeof Artifact>;

export const Manifest = z
  .strictObject({
    v: z.literal(1),
    component: z
      .string()
      .regex(COMPONENT_NAME_PATTERN, "must be 1-64 characters of A-Z a-z 0-9 . _ -")
      .refine((name) => name !== "." && name !== "..", 'must not be "." or ".." (it names a directory)'),
    version: z.string().regex(VERSION_PATTERN, "must be a version such as 2.4.1"),
    securityVersion: z.int().min(0).max(1_000_000),
    issuedAt: IsoTime,
    expiresAt: IsoTime,
    compatible: z
      .strictObject({
        models: z.array(z.string().min(1).max(64)).min(1).max(256).exactOptional(),
        minAgentVersion: z.string().regex(VERSION_PATTERN, "must be a version such as 0.1.0").exactOptional(),
      })
      .prefault({}),
    artifact: Artifact,
    files: z.array(ManifestFile).max(MAX_FILES),
  })
  .superRefine((manifest, ctx) => {
    if (Date.parse(manifest.expiresAt) <= Date.parse(manifest.issuedAt)) {
      ctx.addIssue({ code: "custom", path: ["expiresAt"], message: "must be later than issuedAt" });
    }
    const seen = new Set<string>();
    manifest.files.forEach((file, index) => {
      if (seen.has(file.path)) {
        ctx.addIssue({
          code: "custom",
          path: ["files", index, "path"],
          message: `${file.path} is listed twice`,
        });
      }
      seen.add(file.path);
    });
    // A file may not also be a directory of another file ("a" and "a/b").
    for (const path of seen) {
      const slash = path.lastIndexOf("/");
      for (let at = slash; at > 0; at = path.lastIndexOf("/", at - 1)) {
        if (seen.has(path.slice(0, at))) {
          ctx.addIssue({
            code: "custom",
            path: ["files"],
            message: `${path.slice(0, at)} is listed as a file and as a directory of ${path}`,
          });
          break;
        }
      }
    }
  });
export type Manifest = z.infer<typeof Manifest>;
export type ManifestInput = z.input<typeof Manifest>;

/** The permission bits of a manifest mode string. */
export function modeBits(mode: string): number {
  return Number.parseInt(mode, 8) & 0o777;
}

/** Orders semantic versions (SemVer 2.0 section 11): <0, 0, >0. Throws on a malformed version. */
export function compareVersions(a: string, b: string): number {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  for (let i = 0; i < 3; i++) {
    const diff = (pa.core[i] ?? 0) - (pb.core[i] ?? 0);
    if (diff !== 0) return Math.sign(diff);
  }
  // A release outranks its own prereleases: 1.0.0-rc.1 < 1.0.0.
  if (pa.pre.length === 0 && pb.pre.length === 0) return 0;
  if (pa.pre.length === 0) return 1;
  if (pb.pre.length === 0) return -1;
  for (let i = 0; i < Math.max(pa.pre.length, pb.pre.length); i++) {
    const x = pa.pre[i];
    const y = pb.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny) {
      // By length, then digits: no leading zeros, and Number() would round identifiers past 2^53.
      if (x.length !== y.length) return x.length < y.length ? -1 : 1;
      if (x !== y) return x < y ? -1 : 1;
    } else if (nx !== ny) {
      return nx ? -1 : 1;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

function parseVersion(version: string): { core: number[]; pre: string[] } {
  const match = VERSION_PATTERN.exec(version);
  if (match === null) throw new Error(`${JSON.stringify(version)} is not a version such as 2.4.1`);
  return {
    core: [Number(match[1]), Number(match[2]), Number(match[3])],
    pre: match[4] === undefined ? [] : match[4].split("."),
  };
}
