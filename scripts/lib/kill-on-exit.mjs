/** @type {Map<import("node:child_process").ChildProcess, (() => void) | undefined>} */
const live = new Map();
let installed = false;

/**
 * SIGKILLs `child` if this process exits while it still runs (a test runner that gives up, Ctrl-C),
 * then calls `afterKill` (e.g. to remove a link the child can no longer remove). 'exit' handlers
 * must be synchronous, so this is all that can be done there.
 * @param {import("node:child_process").ChildProcess} child
 * @param {() => void} [afterKill]
 */
export function killOnExit(child, afterKill) {
  if (!installed) {
    installed = true;
    process.on("exit", () => {
      for (const [running, after] of live) {
        try {
          running.kill("SIGKILL");
          after?.();
        } catch {
          // already gone
        }
      }
    });
  }
  live.set(child, afterKill);
  child.once("exit", () => live.delete(child));
}
