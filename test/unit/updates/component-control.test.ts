import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { runArgv } from "../../../src/updates/component-control.js";
import { makeTmpDir } from "../../helpers/tmp-dir.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("runArgv", () => {
  it("answers when the command exits and leaves what it started in the background running", async () => {
    const pidFile = join(makeTmpDir("argv"), "pid");
    const started = Date.now();
    const result = await runArgv(["sh", "-c", `sleep 30 & echo $! > ${pidFile}`], { timeoutMs: 5_000 });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(result).toMatchObject({ code: 0, timedOut: false });
    const pid = Number(readFileSync(pidFile, "utf8"));
    onTestFinished(() => {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(pid)).toBe(true);
  });

  it("kills the command and its process group when it outlives its timeout", async () => {
    const result = await runArgv(["sh", "-c", "sleep 30"], { timeoutMs: 300 });
    expect(result).toMatchObject({ code: null, timedOut: true });
  });

  it("reports a command that cannot start", async () => {
    const result = await runArgv(["/nonexistent/restart-app"], { timeoutMs: 1_000 });
    expect(result.code).toBeNull();
    expect(result.output).toMatch(/ENOENT/);
  });
});
