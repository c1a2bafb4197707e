// Installing a signed-update release, against copying and hashing the same tree with coreutils in the
// same run. A seeded tree of FILES files of mixed sizes (incompressible bytes: the worst case for
// gzip) is built into a full release with dist/updates/release-build.js and served over HTTP from
// this process on 127.0.0.1 (streamed from disk). Each install runs in a fresh Node process
// (bench-install-child.mjs): download → stage into .staging/{v} → promote → switch `current`, as the
// engine chains them. Baseline: `cp -r TREE DEST && (cd DEST && find . -type f -exec sha256sum {} +)`.
// Both read warm page cache (the build has just read the tree and written the artifact); before each
// timed run the previous output is removed and `sync` runs, untimed, so no run pays for another's
// writeback. Rounds alternate the order, and each figure is the best of its rounds. Also: peak RSS
// growth of the install of a tree 1/16 the size (16 MiB for 256), and the size of a delta for one
// changed file. Needs `npm run build` first. Prints nothing: the caller prints `lines`.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { basename, dirname, join, resolve } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { killOnExit } from "./kill-on-exit.mjs";
import { prng } from "./prng.mjs";

const DIST = resolve(import.meta.dirname, "../../dist/updates");
const CHILD = resolve(import.meta.dirname, "bench-install-child.mjs");
const MiB = 1024 * 1024;
const COMPONENT = "bench-app";
const BASELINE = 'cp -r "$1" "$2" && (cd "$2" && find . -type f -exec sha256sum {} +) > /dev/null';
/** What may follow the baseline: durability like the agent's, in one flush or per entry as it does it. */
const DURABLE = {
  none: "",
  sync: " && sync",
  fsync: ' && (cd "$2" && find . -depth -exec sync {} +)',
};
const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const sec = (s) => `${s.toFixed(2)} s`;

/** Where a release tree's files go, by kind; bin/ is executable. */
const KINDS = [
  { dir: "bin", ext: "", mode: 0o755 },
  { dir: "lib", ext: ".so", mode: 0o644 },
  { dir: "app/js", ext: ".js", mode: 0o644 },
  { dir: "app/assets/img", ext: ".png", mode: 0o644, fanout: 8 },
  { dir: "share/locale", ext: ".mo", mode: 0o644, fanout: 12 },
  { dir: "firmware", ext: ".bin", mode: 0o644 },
];

/**
 * Sizes spread log-uniformly from 512 B to 16 MiB (many small files, a few large), then scaled so
 * they add up to exactly `totalBytes`; the seed makes the same tree on every machine.
 */
function planTree(totalBytes, count, seed) {
  const random = prng(seed);
  const low = Math.log(512);
  const high = Math.log(16 * MiB);
  const raw = Array.from({ length: count }, () => Math.exp(low + random() * (high - low)));
  const scale = totalBytes / raw.reduce((sum, size) => sum + size, 0);
  const sizes = raw.map((size) => Math.max(1, Math.floor(size * scale)));
  const largest = sizes.indexOf(Math.max(...sizes));
  sizes[largest] += totalBytes - sizes.reduce((sum, size) => sum + size, 0);
  return sizes.map((size, i) => {
    const kind = KINDS[i % KINDS.length];
    const sub = kind.fanout === undefined ? "" : `/${String(i % kind.fanout).padStart(2, "0")}`;
    return { path: `${kind.dir}${sub}/f${String(i).padStart(4, "0")}${kind.ext}`, size, mode: kind.mode };
  });
}

/** Incompressible bytes from a seeded PRNG, 4 at a time. */
function content(size, seed) {
  const words = new Uint32Array(Math.ceil(size / 4));
  const random = prng(seed);
  for (let i = 0; i < words.length; i++) words[i] = random() * 4294967296;
  return Buffer.from(words.buffer, 0, size);
}

function writeTree(root, plan, seed) {
  plan.forEach((file, i) => {
    const path = join(root, file.path);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content(file.size, seed * 100_003 + i), { mode: file.mode });
  });
}

/** Serves the files added to it, streamed from disk; no Range (every download here starts fresh). */
async function startServer() {
  const files = new Map();
  const server = createServer((req, res) => {
    const file = files.get(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname.slice(1)));
    if (file === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-length": statSync(file).size, "content-type": "application/octet-stream" });
    pipeline(createReadStream(file), res).catch(() => undefined);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    base: `http://127.0.0.1:${server.address().port}/`,
    serve: (path) => files.set(basename(path), path),
    close: () => new Promise((r) => server.close(r)),
  };
}

async function build(buildRelease, options) {
  return buildRelease(
    { component: COMPONENT, expiresDays: 30, force: true, ...options },
    { now: () => Date.now() },
  );
}

/**
 * The same release with an uncompressed artifact: buildRelease always gzips, but the manifest and
 * the agent's unpacker take compression "none", so the gzip artifact's own tar is used.
 */
async function uncompressedTwin(built, base, serve) {
  const tar = built.artifactFile.replace(/\.tar\.gz$/, ".tar");
  const hash = createHash("sha256");
  let size = 0;
  const measure = new Transform({
    transform(chunk, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(createReadStream(built.artifactFile), createGunzip(), measure, createWriteStream(tar));
  const manifest = {
    ...built.manifest,
    artifact: {
      ...built.manifest.artifact,
      url: `${base}${basename(tar)}`,
      size,
      sha256: hash.digest("hex"),
      compression: "none",
    },
  };
  const manifestFile = built.manifestFile.replace(/\.manifest\.json$/, ".none.manifest.json");
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  serve(tar);
  return { manifestFile, artifactBytes: size };
}

/** One install in a fresh process; resolves with its JSON report. */
function installInChild(manifestFile, dataDir) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", CHILD, JSON.stringify({ manifestFile, dataDir })], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    killOnExit(child);
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`install child exited ${code}: ${err.trim()}`));
      else resolvePromise(JSON.parse(out.trim().split("\n").at(-1)));
    });
  });
}

function runBaseline(tree, dest, durable) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn("sh", ["-c", `${BASELINE}${DURABLE[durable]}`, "sh", tree, dest], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    killOnExit(child);
    let err = "";
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) reject(new Error(`baseline exited ${code}: ${err.trim()}`));
      else resolvePromise(seconds);
    });
  });
}

/** Untimed, between runs: remove the last output and flush dirty pages so the next run starts even. */
function settle(paths) {
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  spawnSync("sync");
}

const best = (runs, key) => runs.reduce((a, b) => (b[key] < a[key] ? b : a));

export async function benchInstall(options) {
  const totalMib = options.mib ?? 256;
  const files = options.files ?? 1000;
  const rounds = Math.max(1, options.rounds ?? 3);
  const smallMib = options.smallMib ?? totalMib / 16;
  const work = options.dir;
  const { buildRelease } = await import(`${DIST}/release-build.js`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const server = await startServer();
  try {
    const tree = join(work, "tree");
    const plan = planTree(Math.round(totalMib * MiB), files, 1);
    writeTree(tree, plan, 1);
    const bytes = plan.reduce((sum, file) => sum + file.size, 0);
    const out = join(work, "out");
    const full = await build(buildRelease, { version: "1.0.0", from: tree, outDir: out, url: server.base });
    server.serve(full.artifactFile);
    const none = await uncompressedTwin(full, server.base, server.serve);

    const smallTree = join(work, "small-tree");
    writeTree(smallTree, planTree(Math.round(smallMib * MiB), files, 2), 2);
    const small = await build(buildRelease, {
      component: `${COMPONENT}-small`,
      version: "1.0.0",
      from: smallTree,
      outDir: join(work, "small-out"),
      url: server.base,
    });
    server.serve(small.artifactFile);

    const dest = join(work, "cp-dest");
    const dataDir = join(work, "data");
    const runs = { baseline: [], baselineSync: [], baselineFsync: [], gzip: [], none: [], small: [] };
    const steps = [
      async () => runs.baseline.push({ totalSec: await runBaseline(tree, dest, "none") }),
      async () => runs.baselineSync.push({ totalSec: await runBaseline(tree, dest, "sync") }),
      async () => runs.baselineFsync.push({ totalSec: await runBaseline(tree, dest, "fsync") }),
      async () => runs.gzip.push(await installInChild(full.manifestFile, dataDir)),
      async () => runs.none.push(await installInChild(none.manifestFile, dataDir)),
      async () => runs.small.push(await installInChild(small.manifestFile, dataDir)),
    ];
    settle([]);
    for (let round = 0; round < rounds; round++) {
      for (const step of round % 2 === 0 ? steps : [...steps].reverse()) {
        await step();
        settle([dest, dataDir]);
      }
    }

    const baselineSec = best(runs.baseline, "totalSec").totalSec;
    const baselineSyncSec = best(runs.baselineSync, "totalSec").totalSec;
    const baselineFsyncSec = best(runs.baselineFsync, "totalSec").totalSec;
    const gzip = best(runs.gzip, "totalSec");
    const plain = best(runs.none, "totalSec");
    // The worst run of each size: a peak is what a terminal must have room for.
    const worst = (list) =>
      list.reduce((a, b) => (b.rssPeak - b.rssBefore > a.rssPeak - a.rssBefore ? b : a));
    const smallWorst = worst(runs.small);
    const largeWorst = worst(runs.gzip);
    const rss = {
      smallMib,
      largeMib: totalMib,
      smallGrowth: smallWorst.rssPeak - smallWorst.rssBefore,
      largeGrowth: largeWorst.rssPeak - largeWorst.rssBefore,
      largeDownloadGrowth: largeWorst.downloadPeak - largeWorst.rssBefore,
      largeStageGrowth: largeWorst.stagePeak - largeWorst.rssBefore,
      growths: {
        small: runs.small.map((run) => run.rssPeak - run.rssBefore),
        large: runs.gzip.map((run) => run.rssPeak - run.rssBefore),
      },
      method: runs.gzip.every((run) => run.hwmReset)
        ? "VmHWM after a reset, and 50 ms sampling"
        : "50 ms sampling",
    };

    // Delta: one file of the big tree rewritten at the same size (a rebuilt binary), the median-sized
    // one so neither a tiny nor a huge file flatters the overhead.
    const bySize = [...plan].sort((a, b) => a.size - b.size);
    const changed = bySize[Math.floor(bySize.length / 2)];
    writeFileSync(join(tree, changed.path), content(changed.size, 777));
    const delta = await build(buildRelease, {
      version: "1.0.1",
      from: tree,
      outDir: out,
      url: server.base,
      base: full.manifest,
    });
    if (delta.packed.length !== 1) throw new Error(`the delta packed ${delta.packed.length} files, not 1`);
    const deltaArtifactBytes = statSync(delta.artifactFile).size;
    const manifestBytes = statSync(delta.manifestFile).size;

    const result = {
      files,
      bytes,
      artifactBytes: full.manifest.artifact.size,
      rounds,
      /** Every timed run's seconds, in run order, to show the spread behind the best. */
      runs: Object.fromEntries(
        Object.entries(runs).map(([name, list]) => [name, list.map((run) => run.totalSec)]),
      ),
      baselineSec,
      baselineSyncSec,
      baselineFsyncSec,
      install: gzip,
      installNone: plain,
      ratio: baselineSec / gzip.totalSec,
      ratioNone: baselineSec / plain.totalSec,
      rss: { ...rss, ratio: rss.largeGrowth / rss.smallGrowth },
      delta: {
        changedPath: changed.path,
        changedBytes: changed.size,
        artifactBytes: deltaArtifactBytes,
        manifestBytes,
        ratio: deltaArtifactBytes / (changed.size + manifestBytes),
        transferRatio: (deltaArtifactBytes + manifestBytes) / (changed.size + manifestBytes),
        overChanged: deltaArtifactBytes / changed.size,
      },
    };
    result.lines = describe(result);
    return result;
  } finally {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

function describe(r) {
  const phases = (run) =>
    `download ${sec(run.downloadSec)}, stage ${sec(run.stageSec)}, promote + switch ${sec(run.switchSec)}`;
  return [
    `install of a ${mib(r.bytes)} tree of ${r.files} files (gzip artifact ${mib(r.artifactBytes)}, incompressible content, HTTP from 127.0.0.1, best of ${r.rounds} alternating rounds, warm page cache, sync between runs):`,
    `  agent ${sec(r.install.totalSec)} (${phases(r.install)}); cp -r + sha256sum ${sec(r.baselineSec)} -> ${r.ratio.toFixed(2)}x`,
    "  the agent writes (and fsyncs) the artifact before staging, so twice the bytes; hashes the artifact once while downloading and each file once while staging; gunzips, untars, and fsyncs every file and directory; the baseline fsyncs nothing",
    `  uncompressed artifact (compression "none": the gzip artifact's own tar; buildRelease always gzips): ${sec(r.installNone.totalSec)} (${phases(r.installNone)}) -> ${r.ratioNone.toFixed(2)}x`,
    `  made durable too: cp -r + sha256sum + one sync ${sec(r.baselineSyncSec)} -> ${(r.baselineSyncSec / r.install.totalSec).toFixed(2)}x; + fsync of every file and directory, as the agent does, ${sec(r.baselineFsyncSec)} -> ${(r.baselineFsyncSec / r.install.totalSec).toFixed(2)}x`,
    `install RSS growth (fresh process each, ${r.rss.method}): ${r.rss.smallMib} MiB tree ${mib(r.rss.smallGrowth)}, ${r.rss.largeMib} MiB tree ${mib(r.rss.largeGrowth)} (${r.rss.ratio.toFixed(2)}x for ${(r.rss.largeMib / r.rss.smallMib).toFixed(0)}x the bytes; worst of ${r.rounds} each; ${r.rss.largeMib} MiB download peak ${mib(r.rss.largeDownloadGrowth)}, staging peak ${mib(r.rss.largeStageGrowth)})`,
    `delta for 1 changed file of ${r.files} (${r.delta.changedPath}, ${kib(r.delta.changedBytes)}): artifact ${kib(r.delta.artifactBytes)}, manifest ${kib(r.delta.manifestBytes)} (unsigned JSON, all ${r.files} files listed); artifact / (changed + manifest) ${r.delta.ratio.toFixed(3)}x, (artifact + manifest) / (changed + manifest) ${r.delta.transferRatio.toFixed(3)}x, artifact / changed ${r.delta.overChanged.toFixed(3)}x`,
  ];
}
