import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentError } from "../../src/shared/errors.js";
import { type DownloadOptions, type DownloadProgress, downloadArtifact } from "../../src/updates/download.js";
import {
  patternBody,
  type ReleaseServer,
  type RouteKnobs,
  sha256Of,
  startReleaseServer,
} from "../helpers/release-server.js";
import { createTestCa } from "../helpers/test-pki.js";
import { makeTmpDir } from "../helpers/tmp-dir.js";

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejection(promise: Promise<unknown>): Promise<AgentError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AgentError) return err;
    throw err;
  }
  throw new Error("expected the download to fail");
}

/** File descriptors of this process open on `path` (Linux; elsewhere the check is skipped). */
function fdsOpenOn(path: string): number {
  if (process.platform !== "linux") return 0;
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count += 1;
    } catch {
      // closed between readdir and readlink
    }
  }
  return count;
}

describe("downloadArtifact over http", () => {
  let server: ReleaseServer;
  let routeCount = 0;
  beforeAll(async () => {
    server = await startReleaseServer();
  });
  afterAll(() => server.close());

  /** Serves `content` at a fresh path and returns what a manifest would declare for it. */
  function serve(content: Buffer, knobs: RouteKnobs = {}) {
    routeCount += 1;
    const path = `/releases/${routeCount}.tar.gz`;
    server.put(path, content, knobs);
    return { path, url: server.url(path), size: content.length, sha256: sha256Of(content), content };
  }

  function target(name = "artifact") {
    const dir = makeTmpDir("download");
    const dest = join(dir, name);
    return { dest, part: `${dest}.part` };
  }

  const quick: Pick<DownloadOptions, "retryDelayMs"> = { retryDelayMs: () => 10 };

  it("writes dest with every byte and removes the .part when the download completes", async () => {
    const artifact = serve(randomBytes(MiB));
    const { dest, part } = target();
    const progress: DownloadProgress[] = [];

    const result = await downloadArtifact({ ...artifact, dest, onProgress: (p) => progress.push(p) });

    expect(result).toEqual({ bytes: MiB, sha256: artifact.sha256, resumedFrom: 0, attempts: 1 });
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
    expect(existsSync(part)).toBe(false);
    expect(progress.at(-1)).toEqual({ bytes: MiB, totalBytes: MiB });
    const seen = progress.map((p) => p.bytes);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(server.requestsFor(artifact.path)).toMatchObject([{ status: 200, range: undefined }]);
  });

  it("resumes with Range from the bytes it holds when the link drops mid-way", async () => {
    const artifact = serve(randomBytes(MiB), { dropAfter: 300_000, dropTimes: 2 });
    const { dest } = target();

    const result = await downloadArtifact({ ...artifact, dest, ...quick });

    expect(result.attempts).toBe(3);
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
    const requests = server.requestsFor(artifact.path);
    expect(requests.map((r) => r.status)).toEqual([200, 206, 206]);
    const starts = requests.slice(1).map((r) => Number(/^bytes=(\d+)-$/.exec(r.range ?? "")?.[1]));
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[0]).toBeLessThanOrEqual(300_000);
    expect(starts[1]).toBeGreaterThan(starts[0] ?? Number.POSITIVE_INFINITY);
  });

  it("resumes from the .part an earlier run left behind", async () => {
    const artifact = serve(randomBytes(MiB));
    const { dest, part } = target();
    writeFileSync(part, artifact.content.subarray(0, 400_000));

    const result = await downloadArtifact({ ...artifact, dest });

    expect(result).toMatchObject({ resumedFrom: 400_000, attempts: 1, sha256: artifact.sha256 });
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
    expect(server.requestsFor(artifact.path)).toMatchObject([
      { range: "bytes=400000-", status: 206, bytesSent: MiB - 400_000 },
    ]);
  });

  it("verifies without any request when an earlier run left the whole file in .part", async () => {
    const artifact = serve(randomBytes(200 * KiB));
    const { dest, part } = target();
    writeFileSync(part, artifact.content);

    const result = await downloadArtifact({ ...artifact, dest });

    expect(result).toMatchObject({ resumedFrom: 200 * KiB, attempts: 0 });
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
    expect(server.requestsFor(artifact.path)).toHaveLength(0);
  });

  it("restarts from zero when the server ignores Range and answers 200", async () => {
    const artifact = serve(randomBytes(MiB), { ignoreRange: true });
    const { dest, part } = target();
    // Not a prefix of the artifact: only a real restart (truncate, fresh hash) can still succeed.
    writeFileSync(part, randomBytes(400_000));

    const result = await downloadArtifact({ ...artifact, dest });

    expect(result).toMatchObject({ resumedFrom: 0, attempts: 1, sha256: artifact.sha256 });
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
    expect(server.requestsFor(artifact.path)).toMatchObject([{ range: "bytes=400000-", status: 200 }]);
  });

  it("refuses endless data with TOO_LARGE, never writing past the declared size, and removes the .part", async () => {
    const artifact = serve(randomBytes(256 * KiB), { extraBytes: "endless" });
    const { dest, part } = target();
    let most = 0;

    const err = await rejection(
      downloadArtifact({ ...artifact, dest, onProgress: (p) => (most = Math.max(most, p.bytes)) }),
    );

    expect(err.code).toBe("TOO_LARGE");
    expect(err.message).toContain(String(256 * KiB));
    expect(most).toBeLessThanOrEqual(256 * KiB);
    expect(existsSync(part)).toBe(false);
    expect(existsSync(dest)).toBe(false);
    // The server really did send past the size: the limit, not the server, ended it.
    expect(server.requestsFor(artifact.path)[0]?.bytesSent).toBeGreaterThan(256 * KiB);
  });

  it("refuses with TOO_LARGE before reading the body when Content-Length exceeds the declared size", async () => {
    const artifact = serve(randomBytes(MiB), { extraBytes: 1 });
    const { dest, part } = target();
    const progress: DownloadProgress[] = [];

    const err = await rejection(downloadArtifact({ ...artifact, dest, onProgress: (p) => progress.push(p) }));

    expect(err.code).toBe("TOO_LARGE");
    expect(err.message).toMatch(/offers 1048577 bytes, the manifest declares 1048576 bytes/);
    expect(progress).toEqual([]);
    expect(existsSync(part)).toBe(false);
    expect(server.requestsFor(artifact.path)).toHaveLength(1);
  });

  it("refuses extra bytes sent without a length (chunked) with TOO_LARGE", async () => {
    const artifact = serve(randomBytes(100 * KiB), { extraBytes: 10, chunked: true });
    const { dest, part } = target();

    const err = await rejection(downloadArtifact({ ...artifact, dest }));

    expect(err.code).toBe("TOO_LARGE");
    expect(existsSync(part)).toBe(false);
    expect(existsSync(dest)).toBe(false);
  });

  it("rejects a flipped byte with HASH_MISMATCH and leaves neither dest nor .part", async () => {
    const good = randomBytes(MiB);
    const bad = Buffer.from(good);
    bad[777_777] = (bad[777_777] ?? 0) ^ 0x01;
    const artifact = { ...serve(bad), sha256: sha256Of(good) };
    const { dest, part } = target();

    const err = await rejection(downloadArtifact({ ...artifact, dest }));

    expect(err.code).toBe("HASH_MISMATCH");
    expect(err.message).toContain(sha256Of(good));
    expect(err.message).toContain(sha256Of(bad));
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(part)).toBe(false);
  });

  it("fails with DOWNLOAD_FAILED naming the rate when the server is slower than the floor, keeping the .part", async () => {
    const artifact = serve(randomBytes(MiB), { bytesPerSec: 2 * KiB });
    const { dest, part } = target();
    const started = performance.now();

    const err = await rejection(
      downloadArtifact({
        ...artifact,
        dest,
        minRate: { bytesPerSec: 64 * KiB, periodSec: 1 },
        maxAttempts: 1,
      }),
    );

    expect(performance.now() - started).toBeLessThan(3000);
    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toMatch(/slower than 65536 B\/s for 1 s/);
    expect(err.retryable).toBe(true);
    // Kept so that a later call resumes instead of fetching again what did arrive.
    expect(statSync(part).size).toBeGreaterThan(0);
    expect(statSync(part).size).toBeLessThan(MiB);
    await server.waitForNoConnections();
  });

  it("counts a server that stalls after the headers as too slow and retries it up to maxAttempts", async () => {
    const artifact = serve(randomBytes(64 * KiB), { stall: true });
    const { dest } = target();

    const err = await rejection(
      downloadArtifact({
        ...artifact,
        dest,
        ...quick,
        minRate: { bytesPerSec: 1024, periodSec: 0.5 },
        maxAttempts: 2,
      }),
    );

    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toMatch(/slower than 1024 B\/s for 0.5 s.*gave up after 2 attempts/);
    expect(server.requestsFor(artifact.path)).toHaveLength(2);
    await server.waitForNoConnections();
  });

  it("fails at once on 404, without retrying and without the query string in the message", async () => {
    const artifact = serve(randomBytes(KiB), { status: 404 });
    const { dest } = target();

    const err = await rejection(
      downloadArtifact({ ...artifact, url: `${artifact.url}?token=s3cret`, dest, ...quick }),
    );

    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toContain(`${artifact.url} failed: HTTP 404`);
    expect(err.message).not.toContain("s3cret");
    expect(err.retryable).toBe(false);
    expect(server.requestsFor(artifact.path)).toHaveLength(1);
  });

  it("retries 503 until the server recovers", async () => {
    const artifact = serve(randomBytes(100 * KiB), { status: 503, statusTimes: 2 });
    const { dest } = target();

    const result = await downloadArtifact({ ...artifact, dest, ...quick });

    expect(result.attempts).toBe(3);
    expect(server.requestsFor(artifact.path).map((r) => r.status)).toEqual([503, 503, 200]);
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
  });

  it("rejects promptly when aborted, keeps the .part, closes socket and file, and a later call resumes", async () => {
    const artifact = serve(randomBytes(MiB), { bytesPerSec: 256 * KiB });
    const { dest, part } = target();
    const controller = new AbortController();
    let abortedAt = 0;
    let fdsWhileRunning = -1;

    const err = await rejection(
      downloadArtifact({
        ...artifact,
        dest,
        signal: controller.signal,
        onProgress: () => {
          if (abortedAt > 0) return;
          fdsWhileRunning = fdsOpenOn(part);
          abortedAt = performance.now();
          controller.abort();
        },
      }),
    );

    expect(performance.now() - abortedAt).toBeLessThan(500);
    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.details).toMatchObject({ aborted: true });
    expect(err.message).toMatch(/aborted at \d+ of 1048576 bytes/);
    const kept = statSync(part).size;
    expect(kept).toBeGreaterThan(0);
    await server.waitForNoConnections(1000);
    if (process.platform === "linux") {
      expect(fdsWhileRunning).toBe(1);
      expect(fdsOpenOn(part)).toBe(0);
    }

    server.configure(artifact.path, {});
    const result = await downloadArtifact({ ...artifact, dest });
    expect(result.resumedFrom).toBe(kept);
    expect(readFileSync(dest).equals(artifact.content)).toBe(true);
  });

  it("rejects at once without a request when the signal is already aborted", async () => {
    const artifact = serve(randomBytes(KiB));
    const { dest } = target();

    const err = await rejection(downloadArtifact({ ...artifact, dest, signal: AbortSignal.abort() }));

    expect(err.details).toMatchObject({ aborted: true });
    expect(server.requestsFor(artifact.path)).toHaveLength(0);
  });

  it("follows redirects, and refuses more than five", async () => {
    const artifact = serve(randomBytes(100 * KiB));
    server.put("/hop/1", Buffer.alloc(0), { redirectTo: "/hop/2" });
    server.put("/hop/2", Buffer.alloc(0), { redirectTo: artifact.path });
    server.put("/loop", Buffer.alloc(0), { redirectTo: "/loop" });

    const result = await downloadArtifact({ ...artifact, url: server.url("/hop/1"), dest: target().dest });
    expect(result.sha256).toBe(artifact.sha256);

    const err = await rejection(
      downloadArtifact({ ...artifact, url: server.url("/loop"), dest: target().dest, ...quick }),
    );
    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toMatch(/redirected more than 5 times/);
    expect(server.requestsFor("/loop")).toHaveLength(6);
  });

  it("keeps memory flat and reports progress at most about four times a second on a 256 MiB download", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const size = 256 * MiB;
    // Generated per slice by the server, so neither side of this process holds the artifact.
    const body = patternBody(size, 42);
    const sha256 = sha256Of(body);
    server.put("/big.tar", body);
    const { dest } = target();
    let progressCalls = 0;
    gc();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const started = performance.now();

    try {
      const result = await downloadArtifact({
        url: server.url("/big.tar"),
        dest,
        size,
        sha256,
        onProgress: () => {
          progressCalls += 1;
        },
      });
      expect(result.bytes).toBe(size);
    } finally {
      clearInterval(sampler);
    }

    const elapsedMs = performance.now() - started;
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(statSync(dest).size).toBe(size);
    // Measured growth is ~30-40 MiB for 64 MiB and 256 MiB alike (GC slack, not the artifact).
    expect(peak - baseline).toBeLessThan(size / 4);
    expect(progressCalls).toBeLessThanOrEqual(Math.ceil(elapsedMs / 250) + 2);
    rmSync(dest);
  });
});

describe("downloadArtifact over https", () => {
  const dir = mkdtempSync(join(tmpdir(), "download-tls-"));
  let tls: ReleaseServer;
  let plain: ReleaseServer;
  let caPem: string;
  const content = randomBytes(200 * KiB);
  const declared = { size: content.length, sha256: sha256Of(content) };

  beforeAll(async () => {
    const ca = createTestCa(join(dir, "ca"), "release-test-ca");
    const leaf = ca.issue("server", { cn: "127.0.0.1", san: "IP:127.0.0.1" });
    caPem = readFileSync(ca.cert, "utf8");
    tls = await startReleaseServer({ tls: { key: readFileSync(leaf.key), cert: readFileSync(leaf.cert) } });
    plain = await startReleaseServer();
    tls.put("/a.tar", content);
    tls.put("/untrusted.tar", content);
    plain.put("/a.tar", content);
    tls.put("/down", Buffer.alloc(0), { redirectTo: plain.url("/a.tar") });
    plain.put("/up", Buffer.alloc(0), { redirectTo: tls.url("/a.tar") });
  });
  afterAll(async () => {
    await tls.close();
    await plain.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("downloads over https when the server's CA is passed as ca", async () => {
    const dest = join(makeTmpDir("download-tls"), "a.tar");
    const result = await downloadArtifact({ url: tls.url("/a.tar"), dest, ...declared, ca: caPem });
    expect(result.sha256).toBe(declared.sha256);
  });

  it("refuses a certificate that does not chain to a trusted CA, without retrying", async () => {
    const dest = join(makeTmpDir("download-tls"), "a.tar");
    const started = performance.now();

    const err = await rejection(
      downloadArtifact({ url: tls.url("/untrusted.tar"), dest, ...declared, retryDelayMs: () => 2000 }),
    );

    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toMatch(/TLS refused by https:\/\/127\.0\.0\.1:\d+\/untrusted\.tar/);
    expect(err.retryable).toBe(false);
    // A retry would have waited 2 s first.
    expect(performance.now() - started).toBeLessThan(1500);
    expect(tls.requestsFor("/untrusted.tar")).toHaveLength(0);
  });

  it("follows a redirect from http to https", async () => {
    const dest = join(makeTmpDir("download-tls"), "a.tar");
    const result = await downloadArtifact({ url: plain.url("/up"), dest, ...declared, ca: caPem });
    expect(result.sha256).toBe(declared.sha256);
  });

  it("refuses a redirect from https to plain http", async () => {
    const dest = join(makeTmpDir("download-tls"), "a.tar");
    const before = plain.requestsFor("/a.tar").length;

    const err = await rejection(downloadArtifact({ url: tls.url("/down"), dest, ...declared, ca: caPem }));

    expect(err.code).toBe("DOWNLOAD_FAILED");
    expect(err.message).toMatch(/redirected from https to plain http/);
    expect(plain.requestsFor("/a.tar")).toHaveLength(before);
  });
});
