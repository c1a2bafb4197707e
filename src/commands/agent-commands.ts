import { z } from "zod";
import type { AnyCommandHandler, CommandHandler } from "./command.js";

const NoArgs = z.strictObject({});
type NoArgs = z.infer<typeof NoArgs>;

/** What the built-in commands need from the rest of the agent, passed in by agent.ts. */
export interface AgentCommandDeps {
  rebirth(): void;
  metrics(): Promise<Record<string, number>>;
  peripherals(): unknown[];
  /** A clean stop after the response is out; the service manager starts the agent again. */
  restart(): void;
}

/** `rebirth`, `metrics.snapshot`, `peripherals.status`, `agent.restart` (CONTRACT 6). */
export function createAgentCommandHandlers(deps: AgentCommandDeps): AnyCommandHandler[] {
  const rebirth: CommandHandler<NoArgs> = {
    name: "rebirth",
    args: NoArgs,
    async run() {
      deps.rebirth();
      return { rebirth: true };
    },
  };
  const metrics: CommandHandler<NoArgs> = {
    name: "metrics.snapshot",
    args: NoArgs,
    async run() {
      return { metrics: await deps.metrics() };
    },
  };
  const peripherals: CommandHandler<NoArgs> = {
    name: "peripherals.status",
    args: NoArgs,
    async run() {
      return { peripherals: deps.peripherals() };
    },
  };
  const restart: CommandHandler<NoArgs> = {
    name: "agent.restart",
    args: NoArgs,
    async run() {
      deps.restart();
      return { restarting: true };
    },
  };
  return [rebirth, metrics, peripherals, restart];
}
