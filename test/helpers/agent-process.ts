import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { freePort } from "../../scripts/lib/free-port.mjs";

const BIN = resolve(import.meta.dirname, "../../bin/pos-agent");

export interface AgentConfigOptions {
  dir: string;
  brokerUrl: string;
  deviceId?: string;
  tenant?: string;
  extra?: Record<string, unknown>;
  mqtt?: Record<string, unknown>;
  outbox?: Record<string, unknown>;
  telemetryIntervalSec?: number;
}

export interface AgentConfigFile {
  path: string;
  dataDir: string;
  intakePort: number;
  deviceId: string;
  tenant: string;
  root: string;
}

/** Writes a config for a test agent: its own data dir and intake port, fast reconnects. */
export async function writeAgentConfig(options: AgentConfigOptions): Promise<AgentConfigFile> {
  const deviceId = options.deviceId ?? "POS-T1";
  const tenant = options.tenant ?? "acme";
  const dataDir = join(options.dir, "data");
  mkdirSync(dataDir, { recursive: true });
  const intakePort = await freePort();
  const config = {
    deviceId,
    tenant,
    model: "TEST",
    dataDir,
    mqtt: {
      urls: [options.brokerUrl],
      willDelaySec: 0,
      ackTimeoutSec: 5,
      reconnect: { minSec: 1, maxSec: 2 },
      ...options.mqtt,
    },
    intake: { host: "127.0.0.1", port: intakePort },
    telemetry: { intervalSec: options.telemetryIntervalSec ?? 3600 },
    ...(options.outbox ? { outbox: options.outbox } : {}),
    log: { level: "info" },
    ...options.extra,
  };
  const path = join(options.dir, "config.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return { path, dataDir, intakePort, deviceId, tenant, root: `pos/v1/${tenant}/${deviceId}` };
}

export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** Parsed pino lines from stderr so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** VmRSS of the process in bytes (Linux /proc). */
  rssBytes(): number;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts `bin/pos-agent run` as a real child process and resolves once its intake answers. */
export async function startAgent(
  config: AgentConfigFile,
  options: { waitForIntake?: boolean } = {},
): Promise<AgentProcess> {
  const child = spawn(process.execPath, [BIN, "run", "--config", config.path], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let buffer = "";
  let rawErr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("utf8");
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        rawErr += `${line}\n`;
      }
      newline = buffer.indexOf("\n");
    }
    for (const wake of waiters) wake();
  });
  child.stdout?.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      for (const wake of waiters) wake();
      resolveExit({ code, signal });
    });
  });
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });

  const agent: AgentProcess = {
    child,
    pid: child.pid as number,
    logs,
    exited,
    waitForLog(predicate, timeoutMs = 15_000) {
      return new Promise((resolveLog, reject) => {
        const check = () => {
          const found = logs.find(predicate);
          if (found !== undefined) {
            cleanup();
            resolveLog(found);
          } else if (hasExited) {
            cleanup();
            reject(new Error(`agent exited before the expected log line; stderr: ${rawErr.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `timed out waiting for a log line; last: ${JSON.stringify(logs.slice(-5))} ${rawErr.slice(-500)}`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async kill(signal) {
      if (!hasExited) child.kill(signal);
      return exited;
    },
    rssBytes() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      return match ? Number(match[1]) * 1024 : Number.NaN;
    },
  };
  if (options.waitForIntake ?? true) {
    await agent.waitForLog((line) => line.msg === "intake listening");
  }
  return agent;
}

/** POSTs items to the agent's intake; returns the parsed answer and status. */
export async function postIntake(
  port: number,
  path: "/v1/logs" | "/v1/events",
  items: unknown[],
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(items),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
