import { z } from "zod";
import { type DiagnosticCheck, runDiagnostics } from "../diagnostics/check.js";
import type { CommandHandler } from "./command.js";

const DiagnosticsArgs = z.strictObject({
  checks: z.array(z.string().min(1).max(64)).max(32).optional(),
});
type DiagnosticsArgs = z.infer<typeof DiagnosticsArgs>;

/** `diagnostics.run {"checks?": [name, …]}`: the report in `result`, progress after each check. */
export function createDiagnosticsHandler(deps: {
  deviceId: string;
  checks: () => readonly DiagnosticCheck[];
  now: () => number;
}): CommandHandler<DiagnosticsArgs> {
  return {
    name: "diagnostics.run",
    args: DiagnosticsArgs,
    long: true,
    timeoutMs: 120_000,
    async run(args, context) {
      const report = await runDiagnostics(deps.checks(), {
        deviceId: deps.deviceId,
        now: deps.now,
        signal: context.signal,
        ...(args.checks === undefined ? {} : { names: args.checks }),
        onResult: (result, done, total) =>
          context.progress({
            pct: Math.round((done / total) * 100),
            note: `${result.name}: ${result.status}`,
          }),
      });
      return { ...report };
    },
  };
}
