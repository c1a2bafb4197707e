// The signed-update part of the demo: a release PKI made with pos-ops, release trees of a small
// component ("pos-app", a shell script and a `ready` marker its health check looks for), a local
// update server for artifacts and signed manifests, and the roll-outs done with pos-ops.
import { createReadStream, mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { basename, join } from "node:path";

/**
 * @param {{ work: string, runOps: (args: string[]) => Promise<string[]>, say: (text: string) => void }} options
 */
export async function prepareUpdates({ work, runOps, say }) {
  const dir = join(work, "updates");
  const out = join(dir, "out");
  mkdirSync(out, { recursive: true });
  await runOps(["pki", "init", "--out", join(dir, "release-ca"), "--cn", "Demo Releases"]);
  await runOps([
    "pki",
    "issue",
    "--ca",
    join(dir, "release-ca"),
    "--role",
    "release",
    "--cn",
    "demo-release",
    "--out",
    join(dir, "keys"),
  ]);
  say("pos-ops: release root CA and a release signing certificate issued (codeSigning)");

  const server = createServer((request, response) => {
    const file = join(out, basename(new URL(request.url ?? "/", "http://x").pathname));
    let size;
    try {
      size = statSync(file).size;
    } catch {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-length": size });
    createReadStream(file).pipe(response);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${/** @type {import("node:net").AddressInfo} */ (server.address()).port}/`;
  say(`update server: ${base} (artifacts and signed manifests)`);

  /** @type {{ manifest: string, version: string } | undefined} */
  let previous;
  return {
    base,
    releaseRoot: join(dir, "release-ca", "ca.cert.pem"),
    component: {
      restart: ["sh", "-c", 'echo "pos-app restarted into $(cat current/VERSION)" >> restarts.log'],
      healthCheck: { command: ["sh", "-c", "test -f ready"], timeoutSec: 4 },
      keep: 2,
    },
    /**
     * Builds, signs and serves a release; returns the URL of its signed manifest.
     * @param {string} version
     * @param {boolean} healthy  whether the tree holds the `ready` file the health check wants
     */
    async publish(version, healthy) {
      const tree = join(dir, `tree-${version}`);
      mkdirSync(join(tree, "bin"), { recursive: true });
      writeFileSync(join(tree, "bin", "pos-app.sh"), `#!/bin/sh\necho "pos-app ${version}"\n`, {
        mode: 0o755,
      });
      writeFileSync(join(tree, "VERSION"), version);
      writeFileSync(join(tree, "README"), "The demo's point-of-sale app.\n".repeat(200));
      if (healthy) writeFileSync(join(tree, "ready"), "yes\n");
      const args = ["release", "build", "--component", "pos-app", "--version", version, "--from", tree];
      args.push("--out", out, "--url", base, "--models", "DEMO", "--security-version", "1");
      if (previous) args.push("--base", previous.manifest);
      for (const line of await runOps(args)) say(`  ${line}`);
      const manifest = join(
        out,
        previous
          ? `pos-app-${version}-from-${previous.version}.manifest.json`
          : `pos-app-${version}.manifest.json`,
      );
      const signed = join(out, `pos-app-${version}.signed.json`);
      const key = join(dir, "keys", "demo-release.key.pem");
      const cert = join(dir, "keys", "demo-release.cert.pem");
      for (const line of await runOps(["sign", "--key", key, "--cert", cert, manifest, "--out", signed]))
        say(`  ${line}`);
      if (healthy) previous = { manifest, version };
      return `${base}${basename(signed)}`;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
