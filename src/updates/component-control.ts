import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Restarting a component and asking whether it is healthy: argv commands (no shell) run with a
 * timeout and killed with their process group, and HTTP probes. Used by the update engine only.
 */

export interface RunResult {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The last bytes of stderr and stdout, for the reason of a failure. */
  output: string;
}

const OUTPUT_TAIL = 2048;

/** Runs argv[0] with argv[1..] in `cwd`; kills its whole process group on timeout or abort. */
export function runArgv(
  argv: readonly string[],
  options: { timeoutMs: number; signal?: AbortSignal; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<RunResult> {
  return new Promise((resolve) => {
    const [command, ...args] = argv;
    if (command === undefined) {
      resolve({ code: null, signal: null, timedOut: false, output: "empty command" });
      return;
    }
    let output = "";
    let timedOut = false;
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a timeout kills what it started too.
      detached: true,
    });
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    let exited = false;
    // Only while the command itself runs: once it has exited, what it left running in the background
    // (a restart script that starts the app) is the component, not ours to kill.
    const kill = () => {
      if (exited) return;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => kill();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    child.once("error", (error) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({ code: null, signal: null, timedOut: false, output: error.message });
    });
    // On exit, not close: close waits for every process holding the output pipes, and an app the
    // command started in the background holds them for as long as it runs.
    child.once("exit", (code, signal) => {
      exited = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({ code, signal, timedOut, output: output.trim() });
    });
  });
}

/** GET `url`; true on 2xx within `timeoutMs`. TLS is checked as Node does by default. */
export function probeUrl(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const parsed = new URL(url);
    const request = parsed.protocol === "https:" ? httpsRequest : httpRequest;
    const req = request(parsed, { method: "GET", timeout: timeoutMs, agent: false }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      response.once("end", () => resolve(status >= 200 && status < 300));
      response.once("error", () => resolve(false));
    });
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve(false));
    req.end();
  });
}

export interface HealthCheckSpec {
  command?: readonly string[];
  url?: string;
  timeoutSec: number;
}

/**
 * Polls the check until it passes or the window closes. A check that passes once is not enough on
 * its own: a process that crashes a second after start would look healthy, so it must pass twice in a
 * row, a poll interval apart. Returns undefined when healthy, else why not.
 */
export async function awaitHealthy(
  spec: HealthCheckSpec,
  options: { cwd: string; signal: AbortSignal; monotonic: () => number; pollMs?: number },
): Promise<string | undefined> {
  const pollMs = options.pollMs ?? 1000;
  const deadline = options.monotonic() + spec.timeoutSec * 1000;
  let passes = 0;
  let last = "never checked";
  while (options.monotonic() < deadline) {
    options.signal.throwIfAborted();
    const left = Math.max(1, deadline - options.monotonic());
    let ok = true;
    if (spec.command !== undefined) {
      const result = await runArgv(spec.command, {
        timeoutMs: Math.min(left, 30_000),
        signal: options.signal,
        cwd: options.cwd,
      });
      ok = result.code === 0;
      if (!ok) {
        last = result.timedOut
          ? `health check command timed out`
          : `health check command exited ${result.code ?? result.signal}${result.output ? `: ${result.output.slice(-200)}` : ""}`;
      }
    }
    if (ok && spec.url !== undefined) {
      ok = await probeUrl(spec.url, Math.min(left, 10_000));
      if (!ok)
        last = `health probe ${new URL(spec.url).origin}${new URL(spec.url).pathname} did not answer 2xx`;
    }
    passes = ok ? passes + 1 : 0;
    if (passes >= 2) return undefined;
    await sleep(pollMs, undefined, { signal: options.signal });
  }
  return `unhealthy for the whole ${spec.timeoutSec} s window: ${passes > 0 ? "passed only once" : last}`;
}
