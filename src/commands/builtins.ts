import { z } from "zod";
import type { Clock } from "../shared/clock.js";
import { type AnyCommandHandler, COMMAND_NAME_PATTERN, type CommandHandler } from "./command.js";

/**
 * `commands.requireSignature` patterns: `*` matches any run of characters (dots too, or none); all
 * else is literal and case-sensitive, like the handler look-up it guards.
 */
export function globMatch(pattern: string, name: string): boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === name;
  const first = parts[0] ?? "";
  const last = parts[parts.length - 1] ?? "";
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) {
    return false;
  }
  // The middle parts in order, each as early as possible, between the fixed prefix and suffix.
  let at = first.length;
  const end = name.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const found = name.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

/** Handlers by name. Throws on a duplicate or malformed name: a wiring mistake, found at start. */
export function createCommandRegistry(handlers: readonly AnyCommandHandler[]) {
  const byName = new Map<string, AnyCommandHandler>();
  for (const handler of handlers) {
    if (!COMMAND_NAME_PATTERN.test(handler.name)) {
      throw new Error(
        `command name ${JSON.stringify(handler.name)} is not 1-64 characters of A-Z a-z 0-9 . _ -`,
      );
    }
    if (byName.has(handler.name)) throw new Error(`command ${handler.name} is registered twice`);
    byName.set(handler.name, handler);
  }
  return {
    get: (name: string): AnyCommandHandler | undefined => byName.get(name),
    /** Sorted: the `capabilities` of the birth message (CONTRACT 5). */
    names: (): string[] => [...byName.keys()].sort(),
  };
}
export type CommandRegistry = ReturnType<typeof createCommandRegistry>;

export const PingArgs = z.strictObject({});
export type PingArgs = z.infer<typeof PingArgs>;

/** `ping` → `{ pong: true, ts }`: proves the command path end to end. */
export function createPingHandler(deps: { clock: Clock }): CommandHandler<PingArgs> {
  return {
    name: "ping",
    args: PingArgs,
    run: async () => ({ pong: true, ts: deps.clock.now() }),
  };
}
