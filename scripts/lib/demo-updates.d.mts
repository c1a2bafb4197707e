export interface DemoUpdates {
  base: string;
  releaseRoot: string;
  component: { restart: string[]; healthCheck: { command: string[]; timeoutSec: number }; keep: number };
  publish(version: string, healthy: boolean): Promise<string>;
  close(): Promise<void>;
}
export function prepareUpdates(options: {
  work: string;
  runOps: (args: string[]) => Promise<string[]>;
  say: (text: string) => void;
}): Promise<DemoUpdates>;
