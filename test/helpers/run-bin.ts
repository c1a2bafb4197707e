import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const BINS = {
  "pos-agent": resolve(import.meta.dirname, "../../bin/pos-agent"),
  "pos-ops": resolve(import.meta.dirname, "../../bin/pos-ops"),
} as const;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a built executable (`npm run build` first) as a user would and resolves with its exit code
 * and output, whatever the code: a failing run is what many tests are about.
 */
export async function runBin(
  bin: keyof typeof BINS,
  args: readonly string[],
  options: { cwd?: string } = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BINS[bin], ...args], options);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}
