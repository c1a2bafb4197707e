import type { ChildProcess } from "node:child_process";
/** SIGKILLs `child` if this process exits while it still runs, then calls `afterKill`. */
export declare function killOnExit(child: ChildProcess, afterKill?: () => void): void;
