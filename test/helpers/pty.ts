import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * The far end of a real pseudo-terminal: socat makes the PTY, links it at `path`, and relays its
 * bytes to and from this process. Killing socat is unplugging the device: the link vanishes and the
 * side that opened it sees the port close.
 */
export interface PtyPeer {
  path: string;
  /** Everything the agent side wrote so far. */
  received(): Buffer;
  write(bytes: Uint8Array | string): Promise<void>;
  unplug(): Promise<void>;
  replug(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPty(path: string): Promise<PtyPeer> {
  let child: ChildProcess | undefined;
  let chunks: Buffer[] = [];

  async function plug(): Promise<void> {
    const started = spawn("socat", [`PTY,link=${path},raw,echo=0`, "STDIO"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    started.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk));
    child = started;
    for (let waited = 0; !existsSync(path); waited += 20) {
      if (started.exitCode !== null || waited > 5000) {
        started.kill("SIGKILL");
        throw new Error(`socat did not create ${path}`);
      }
      await sleep(20);
    }
  }

  async function unplug(): Promise<void> {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
    // SIGKILL leaves socat no chance to remove its link; a real unplug removes the node.
    rmSync(path, { force: true });
  }

  await plug();
  return {
    path,
    received: () => Buffer.concat(chunks),
    write(bytes) {
      const stdin = child?.stdin;
      if (stdin === undefined || stdin === null) return Promise.reject(new Error(`${path} is unplugged`));
      return new Promise((resolve, reject) =>
        stdin.write(bytes, (error) => (error ? reject(error) : resolve())),
      );
    },
    unplug,
    async replug() {
      await unplug();
      chunks = [];
      await plug();
    },
    stop: unplug,
  };
}
