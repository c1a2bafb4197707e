import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { makeTmpDir } from "../helpers/tmp-dir.js";

// The launcher run as the service manager runs it: a real shell, real node children, a real release tree.

const LAUNCHER = resolve(import.meta.dirname, "../../bin/pos-agent-launcher");
const ARGS = ["run", "--config", "/etc/pos-agent/config.json", "two words", "*"];

/** The absolute path of a command in PATH, or null. */
function which(name: string): string | null {
  const result = spawnSync("sh", ["-c", 'command -v "$1"', "sh", name], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : null;
}

function hasCommand(name: string): boolean {
  return which(name) !== null;
}

interface Shell {
  name: string;
  argv: [string, ...string[]];
  available: boolean;
}

const SHELLS: Shell[] = [
  // Absolute paths: some tests run the launcher with a PATH that holds no shell.
  { name: "dash", argv: [which("dash") ?? "dash"], available: hasCommand("dash") },
  { name: "busybox sh", argv: [which("busybox") ?? "busybox", "sh"], available: hasCommand("busybox") },
];

/** commit-on-second-start: crashes on its first start (say, no network yet), commits on the second. */
type Behaviour = "ok" | "crash" | "commit-on-second-start";

/** What a fake agent prints as its one line of stdout. */
interface Ran {
  version: string;
  args: string[];
  pid: number;
  launcherHome: string | null;
  bootCount: string | null;
}

interface Start {
  code: number | null;
  ran: Ran | null;
  stderr: string;
  pid: number;
}

/** A node script standing in for bin/pos-agent: reports what it saw, then behaves as told. */
function fakeAgent(version: string, behaviour: Behaviour): string {
  return `const fs = require("fs");
const path = require("path");
const home = path.resolve(__dirname, "../../..");
const read = (name) => { try { return fs.readFileSync(path.join(home, name), "utf8"); } catch { return null; } };
const bootCount = read("boot-count");
console.log(JSON.stringify({ version: ${JSON.stringify(version)}, args: process.argv.slice(2), pid: process.pid,
  launcherHome: process.env.POS_AGENT_LAUNCHER_HOME ?? null, bootCount }));
const behaviour = ${JSON.stringify(behaviour)};
if (behaviour === "crash") process.exit(1);
if (behaviour === "commit-on-second-start") {
  if (bootCount === "1\\n") process.exit(1);
  fs.rmSync(path.join(home, "pending"), { force: true });
  fs.rmSync(path.join(home, "boot-count"), { force: true });
}
`;
}

interface Fixture {
  dataDir: string;
  home: string;
  /** A copy of the launcher with an "installed" fake agent beside it, as npm lays out the package. */
  installedLauncher: string;
}

function makeFixture(root: string): Fixture {
  const dataDir = join(root, "data");
  const home = join(dataDir, "components", "pos-agent");
  mkdirSync(join(home, "releases"), { recursive: true });
  const bin = join(root, "pkg", "bin");
  mkdirSync(bin, { recursive: true });
  const installedLauncher = join(bin, "pos-agent-launcher");
  copyFileSync(LAUNCHER, installedLauncher);
  chmodSync(installedLauncher, 0o755);
  writeFileSync(join(bin, "pos-agent"), fakeAgent("installed", "ok"));
  return { dataDir, home, installedLauncher };
}

function addRelease(fx: Fixture, version: string, behaviour: Behaviour): void {
  const bin = join(fx.home, "releases", version, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "pos-agent"), fakeAgent(version, behaviour));
}

/** The usual tree: 1.0.0 works, 1.1.0 crashes at once, current -> 1.1.0, pending names both. */
function crashLoopFixture(root: string, pending = "version=1.1.0\nprevious=1.0.0\n"): Fixture {
  const fx = makeFixture(root);
  addRelease(fx, "1.0.0", "ok");
  addRelease(fx, "1.1.0", "crash");
  symlinkSync("releases/1.1.0", join(fx.home, "current"));
  writeFileSync(join(fx.home, "pending"), pending);
  return fx;
}

function start(
  shell: Shell,
  fx: Fixture,
  options: { launcher?: string; env?: Record<string, string> } = {},
): Start {
  const [command, ...shellArgs] = shell.argv;
  const result = spawnSync(command, [...shellArgs, options.launcher ?? LAUNCHER, ...ARGS], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      POS_AGENT_DATA_DIR: fx.dataDir,
      POS_AGENT_NODE: process.execPath,
      ...options.env,
    },
    encoding: "utf8",
    timeout: 20_000,
  });
  const line = result.stdout.trim();
  return {
    code: result.status,
    ran: line ? (JSON.parse(line) as Ran) : null,
    stderr: result.stderr,
    pid: result.pid,
  };
}

/** Starts the launcher again and again, as systemd or Android init would, until `until` runs (at most 10 starts). */
function startUntil(
  shell: Shell,
  fx: Fixture,
  until: string,
  options: Parameters<typeof start>[2] = {},
): Start[] {
  const starts: Start[] = [];
  for (let i = 0; i < 10; i++) {
    const s = start(shell, fx, options);
    starts.push(s);
    if (s.ran?.version === until) break;
  }
  return starts;
}

function file(fx: Fixture, name: string): string | null {
  const path = join(fx.home, name);
  return existsSync(path) ? readFileSync(path, "utf8") : null;
}

function keyValues(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split("\n")
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

function expectCurrent(fx: Fixture, version: string): void {
  const current = join(fx.home, "current");
  expect(lstatSync(current).isSymbolicLink()).toBe(true);
  expect(readlinkSync(current)).toBe(`releases/${version}`);
  expect(realpathSync(current)).toBe(realpathSync(join(fx.home, "releases", version)));
}

for (const shell of SHELLS) {
  const title = shell.available
    ? `pos-agent-launcher under ${shell.name}`
    : `pos-agent-launcher under ${shell.name} (skipped: ${shell.name.split(" ")[0]} is not installed on this machine)`;

  describe.skipIf(!shell.available)(title, () => {
    it("parses with sh -n", () => {
      const [command, ...shellArgs] = shell.argv;
      const result = spawnSync(command, [...shellArgs, "-n", LAUNCHER], { encoding: "utf8" });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
    });

    it("rolls a crash-looping release back on the (maxBoots+1)-th start and runs the previous one", () => {
      const fx = crashLoopFixture(makeTmpDir("launcher"));
      const before = Math.floor(Date.now() / 1000);
      const starts = startUntil(shell, fx, "1.0.0");
      const after = Math.floor(Date.now() / 1000);

      // Default maxBoots 3: starts 1-3 run 1.1.0 with boot-count 1, 2, 3; start 4 counts 4 > 3 and rolls back.
      expect(starts.map((s) => s.ran?.version)).toEqual(["1.1.0", "1.1.0", "1.1.0", "1.0.0"]);
      expect(starts.map((s) => s.ran?.bootCount)).toEqual(["1\n", "2\n", "3\n", null]);
      expect(starts.map((s) => s.code)).toEqual([1, 1, 1, 0]);
      expect(starts.slice(0, 3).map((s) => s.stderr)).toEqual(["", "", ""]);
      expect(starts[3]?.stderr).toBe(
        "pos-agent-launcher: rolled back pos-agent 1.1.0 -> 1.0.0: crash loop: 3 starts without commit\n",
      );

      expectCurrent(fx, "1.0.0");
      const rolledBack = keyValues(file(fx, "rolled-back") ?? "");
      expect(rolledBack).toMatchObject({
        version: "1.1.0",
        previous: "1.0.0",
        reason: "crash loop: 3 starts without commit",
      });
      expect(Number(rolledBack.ts)).toBeGreaterThanOrEqual(before);
      expect(Number(rolledBack.ts)).toBeLessThanOrEqual(after);
      for (const gone of ["pending", "boot-count", ".current.tmp", ".boot-count.tmp", ".rolled-back.tmp"]) {
        expect(existsSync(join(fx.home, gone)), gone).toBe(false);
      }

      // exec: the agent is the process the service manager started, with every argument as given.
      for (const s of starts) {
        expect(s.ran?.args).toEqual(ARGS);
        expect(s.ran?.pid).toBe(s.pid);
        expect(s.ran?.launcherHome).toBe(fx.home);
      }

      // Steady state afterwards: the previous release keeps running, nothing more is logged.
      const next = start(shell, fx);
      expect(next.ran?.version).toBe("1.0.0");
      expect(next.stderr).toBe("");
      expectCurrent(fx, "1.0.0");
    });

    it("takes maxBoots from pending, else from POS_AGENT_MAX_BOOTS, else 3", () => {
      const root = makeTmpDir("launcher");
      const cases = [
        { pendingExtra: "maxBoots=1\n", env: {}, bad: 1 },
        { pendingExtra: "", env: { POS_AGENT_MAX_BOOTS: "2" }, bad: 2 },
        { pendingExtra: "maxBoots=5\n", env: { POS_AGENT_MAX_BOOTS: "2" }, bad: 5 },
        { pendingExtra: "maxBoots=x\n", env: { POS_AGENT_MAX_BOOTS: "junk" }, bad: 3 },
        { pendingExtra: "maxBoots=0\n", env: { POS_AGENT_MAX_BOOTS: "0" }, bad: 3 },
        { pendingExtra: "maxBoots=02\n", env: {}, bad: 2 },
      ];
      cases.forEach((c, i) => {
        const fx = crashLoopFixture(
          join(root, String(i)),
          `version=1.1.0\nprevious=1.0.0\n${c.pendingExtra}`,
        );
        const starts = startUntil(shell, fx, "1.0.0", { env: c.env });
        const expected = [...Array<string>(c.bad).fill("1.1.0"), "1.0.0"];
        expect(
          starts.map((s) => s.ran?.version),
          JSON.stringify(c),
        ).toEqual(expected);
        expect(keyValues(file(fx, "rolled-back") ?? "").reason).toBe(
          `crash loop: ${c.bad} starts without commit`,
        );
        expectCurrent(fx, "1.0.0");
      });
    });

    it("reads a pending file with CRLF line ends and no final newline", () => {
      const fx = crashLoopFixture(makeTmpDir("launcher"), "version=1.1.0\r\nprevious=1.0.0\r\nmaxBoots=1");
      const starts = startUntil(shell, fx, "1.0.0");
      expect(starts.map((s) => s.ran?.version)).toEqual(["1.1.0", "1.0.0"]);
      expectCurrent(fx, "1.0.0");
    });

    it("never rolls back a release that commits itself, even after a failed first start", () => {
      const fx = makeFixture(makeTmpDir("launcher"));
      addRelease(fx, "1.0.0", "ok");
      addRelease(fx, "1.2.0", "commit-on-second-start");
      symlinkSync("releases/1.2.0", join(fx.home, "current"));
      writeFileSync(join(fx.home, "pending"), "version=1.2.0\nprevious=1.0.0\n");

      const starts = Array.from({ length: 10 }, () => start(shell, fx));

      expect(starts.map((s) => s.ran?.version)).toEqual(Array<string>(10).fill("1.2.0"));
      expect(starts.map((s) => s.ran?.bootCount)).toEqual(["1\n", "2\n", ...Array<null>(8).fill(null)]);
      expect(starts.map((s) => s.code)).toEqual([1, ...Array<number>(9).fill(0)]);
      expect(starts.map((s) => s.stderr).join("")).toBe("");
      expectCurrent(fx, "1.2.0");
      expect(file(fx, "pending")).toBeNull();
      expect(file(fx, "rolled-back")).toBeNull();
    });

    it("clears a pending release that never became current (power cut before the switch)", () => {
      const fx = makeFixture(makeTmpDir("launcher"));
      addRelease(fx, "1.0.0", "ok");
      addRelease(fx, "1.1.0", "crash");
      symlinkSync("releases/1.0.0", join(fx.home, "current"));
      writeFileSync(join(fx.home, "pending"), "version=1.1.0\nprevious=1.0.0\n");
      writeFileSync(join(fx.home, "boot-count"), "2\n");

      const s = start(shell, fx);

      expect(s.ran?.version).toBe("1.0.0");
      expect(s.ran?.bootCount).toBeNull();
      expect(s.stderr).toMatch(
        /^pos-agent-launcher: pending 1\.1\.0 is not current \(current -> releases\/1\.0\.0\)/,
      );
      expectCurrent(fx, "1.0.0");
      expect(file(fx, "pending")).toBeNull();
      expect(file(fx, "rolled-back")).toBeNull();
    });

    it("counts a garbage boot-count as 0 and a zero-padded one as decimal", () => {
      const root = makeTmpDir("launcher");
      const garbage = [
        "",
        "abc\n",
        "-5\n",
        "1e3\n",
        "2 \n",
        "99999999999999999999\n",
        "\u0000\u0001\u00ff\n",
      ];
      garbage.forEach((content, i) => {
        const fx = crashLoopFixture(join(root, String(i)));
        writeFileSync(join(fx.home, "boot-count"), content);
        const s = start(shell, fx);
        expect(s.ran?.version, JSON.stringify(content)).toBe("1.1.0");
        expect(s.ran?.bootCount, JSON.stringify(content)).toBe("1\n");
        expect(s.stderr).toBe("");
      });

      // "08" is 8, not bad octal that would stop the shell: 8 + 1 > 3, so this start rolls back.
      const fx = crashLoopFixture(join(root, "padded"));
      writeFileSync(join(fx.home, "boot-count"), "08\n");
      const s = start(shell, fx);
      expect(s.ran?.version).toBe("1.0.0");
      expectCurrent(fx, "1.0.0");
    });

    it("removes a pending file without a usable version or previous and starts current", () => {
      const root = makeTmpDir("launcher");
      const garbage = [
        "",
        "previous=1.0.0\n",
        "version=1.1.0\n",
        "version=\nprevious=1.0.0\n",
        "version=../../../../tmp/x\nprevious=1.0.0\n",
        "version=1.1.0\nprevious=/etc\n",
        "version=1.1.0\nprevious=..\n",
        "\u0000\u00ff\u0001garbage",
      ];
      garbage.forEach((content, i) => {
        const fx = crashLoopFixture(join(root, String(i)), content);
        writeFileSync(join(fx.home, "boot-count"), "7\n");
        const s = start(shell, fx);
        expect(s.ran?.version, JSON.stringify(content)).toBe("1.1.0");
        expect(s.stderr).toBe(
          "pos-agent-launcher: pending names no valid version and previous: removed, starting current\n",
        );
        expect(file(fx, "pending")).toBeNull();
        expect(file(fx, "boot-count")).toBeNull();
        expectCurrent(fx, "1.1.0");
      });
    });

    it("runs the agent installed beside it when there is no current, through a symlink and PATH's node", () => {
      const fx = makeFixture(makeTmpDir("launcher"));
      // As npm installs it: /usr/bin/pos-agent-launcher -> ../lib/.../bin/pos-agent-launcher (relative).
      const linkDir = join(fx.dataDir, "..", "usr", "bin");
      mkdirSync(linkDir, { recursive: true });
      const link = join(linkDir, "pos-agent-launcher");
      symlinkSync("../../pkg/bin/pos-agent-launcher", link);

      const s = start(shell, fx, {
        launcher: link,
        env: { POS_AGENT_NODE: "", PATH: `${dirname(process.execPath)}:/usr/bin:/bin` },
      });

      expect(s.stderr).toBe("");
      expect(s.ran?.version).toBe("installed");
      expect(s.ran?.args).toEqual(ARGS);
      expect(s.ran?.pid).toBe(s.pid);
      expect(existsSync(join(fx.home, "current"))).toBe(false);
    });

    it("runs the installed agent when current points at a release without bin/pos-agent", () => {
      const fx = makeFixture(makeTmpDir("launcher"));
      symlinkSync("releases/9.9.9", join(fx.home, "current"));
      const s = start(shell, fx, { launcher: fx.installedLauncher });
      expect(s.ran?.version).toBe("installed");
      expect(s.stderr).toMatch(/current\/bin\/pos-agent is missing: starting the installed agent/);
    });

    it("keeps current and runs the installed agent when the release to roll back to is missing", () => {
      const fx = crashLoopFixture(makeTmpDir("launcher"), "version=1.1.0\nprevious=0.9.0\nmaxBoots=2\n");
      const starts = startUntil(shell, fx, "installed", { launcher: fx.installedLauncher });
      expect(starts.map((s) => s.ran?.version)).toEqual(["1.1.0", "1.1.0", "installed"]);
      expect(starts[2]?.stderr).toMatch(
        /releases\/0\.9\.0\/bin\/pos-agent is missing: current left as it is/,
      );
      expectCurrent(fx, "1.1.0");
      expect(file(fx, "pending")).not.toBeNull();
      expect(file(fx, "rolled-back")).toBeNull();
    });

    it("exits 127 with one line when node cannot be found", () => {
      const fx = crashLoopFixture(makeTmpDir("launcher"));
      const s = start(shell, fx, { env: { POS_AGENT_NODE: "", PATH: "/nonexistent" } });
      expect(s.code).toBe(127);
      expect(s.stderr).toBe("pos-agent-launcher: node not found in PATH (set POS_AGENT_NODE)\n");
      expect(file(fx, "boot-count")).toBeNull();
    });
  });
}

describe("pos-agent-launcher portability", () => {
  it("is an executable #!/bin/sh script", () => {
    expect(readFileSync(LAUNCHER, "utf8").startsWith("#!/bin/sh\n")).toBe(true);
    expect(lstatSync(LAUNCHER).mode & 0o777).toBe(0o755);
  });

  it("uses none of the bash or GNU-only constructs dash, busybox and mksh lack or differ on", () => {
    const code = readFileSync(LAUNCHER, "utf8")
      .split("\n")
      .filter((line) => !line.trimStart().startsWith("#"));
    const forbidden: Array<[string, RegExp]> = [
      ["[[", /\[\[/],
      ["local", /(^|[;&|\s])local\s/],
      ["function keyword", /(^|\s)function\s/],
      ["declare/typeset", /\b(declare|typeset)\b/],
      ["source", /(^|[;&|\s])source\s/],
      ["arrays", /\w+=\(/],
      ["here-string", /<<</],
      ["$'...'", /\$'/],
      ["== in test", /\s==\s/],
      ["&>", /&>/],
      ["pattern substitution", /\$\{\w+\/\/?/],
      ["substring expansion", /\$\{\w+:\d/],
      ["echo -n/-e", /\becho\s+-[ne]/],
      ["readlink -f", /\breadlink\s+-/],
      ["mv -T", /\bmv\s+(-\w+\s+)*-\w*T/],
      ["ln -n", /\bln\s+(-\w+\s+)*-\w*[nT]/],
      ["$RANDOM", /\$RANDOM/],
      ["pushd/popd", /\b(pushd|popd)\b/],
    ];
    for (const [name, pattern] of forbidden) {
      const hits = code.filter((line) => pattern.test(line));
      expect(hits, name).toEqual([]);
    }
  });

  it.skipIf(!hasCommand("checkbashisms"))(
    `passes checkbashisms${hasCommand("checkbashisms") ? "" : " (skipped: checkbashisms is not installed on this machine)"}`,
    () => {
      const result = spawnSync("checkbashisms", ["--posix", "--extra", LAUNCHER], { encoding: "utf8" });
      expect(result.stderr + result.stdout).toBe("");
      expect(result.status).toBe(0);
    },
  );

  it.skipIf(!hasCommand("shellcheck"))(
    `passes shellcheck -s sh${hasCommand("shellcheck") ? "" : " (skipped: shellcheck is not installed on this machine)"}`,
    () => {
      const result = spawnSync("shellcheck", ["-s", "sh", LAUNCHER], { encoding: "utf8" });
      expect(result.stdout).toBe("");
      expect(result.status).toBe(0);
    },
  );
});
