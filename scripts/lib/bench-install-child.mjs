// One install as the agent chains it (engine.ts): download the artifact into .download, stage it into
// .staging/{version}, promote it to releases/{version}, switch `current`. Run in a fresh process by
// bench-install.mjs so its timing has no HTTP server beside it and its RSS growth is its own.
// Usage: node --expose-gc bench-install-child.mjs '{"manifestFile": "...", "dataDir": "..."}'
// Prints one JSON line: seconds per phase and RSS before the install and at its peak.
import { readFileSync, writeFileSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";

const DIST = resolve(import.meta.dirname, "../../dist/updates");
const { downloadArtifact } = await import(`${DIST}/download.js`);
const { stageRelease } = await import(`${DIST}/stage.js`);
const { componentDir } = await import(`${DIST}/releases-dir.js`);
const { Manifest } = await import(`${DIST}/manifest.js`);

const job = JSON.parse(process.argv[2] ?? "{}");
const manifest = Manifest.parse(JSON.parse(await readFile(job.manifestFile, "utf8")));
const { version } = manifest;
const dir = componentDir(job.dataDir, manifest.component);
const dest = dir.downloadFile(manifest.artifact.sha256);

const statusBytes = (key) =>
  Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? Number.NaN) *
  1024;
globalThis.gc?.();
// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+), so it shows this phase's peak.
const resetHwm = () => {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false; // sampling alone, then
  }
};
const hwmReset = resetHwm();
const rssBefore = process.memoryUsage.rss();
let sampled = rssBefore;
const sampler = setInterval(() => {
  sampled = Math.max(sampled, process.memoryUsage.rss());
}, 50);
/** The peak since the last call (or the start), then starts the next phase's. */
const phasePeak = () => {
  const peak = Math.max(sampled, process.memoryUsage.rss(), hwmReset ? statusBytes("VmHWM") : 0);
  if (hwmReset) resetHwm();
  sampled = process.memoryUsage.rss();
  return peak;
};

const t0 = performance.now();
await mkdir(dirname(dest), { recursive: true });
await downloadArtifact({
  url: manifest.artifact.url,
  dest,
  size: manifest.artifact.size,
  sha256: manifest.artifact.sha256,
});
const t1 = performance.now();
const downloadPeak = phasePeak();
// As the engine does after its own download: the artifact was just hashed while it arrived.
await stageRelease({
  manifest,
  artifactPath: dest,
  stagingDir: dir.stagingDir(version),
  artifactVerified: true,
});
const t2 = performance.now();
const stagePeak = phasePeak();
await dir.promote(version);
await dir.switchTo(version);
const t3 = performance.now();
clearInterval(sampler);
const rssPeak = Math.max(downloadPeak, stagePeak, phasePeak());
if ((await dir.currentVersion()) !== version) throw new Error(`current is not ${version} after the switch`);

process.stdout.write(
  `${JSON.stringify({
    downloadSec: (t1 - t0) / 1000,
    stageSec: (t2 - t1) / 1000,
    switchSec: (t3 - t2) / 1000,
    totalSec: (t3 - t0) / 1000,
    rssBefore,
    rssPeak,
    downloadPeak,
    stagePeak,
    hwmReset,
  })}\n`,
);
