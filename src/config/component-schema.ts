import { z } from "zod";
import { Argv } from "./fields.js";

export const HealthCheck = z
  .strictObject({
    command: Argv.exactOptional().describe("Run this (argv, no shell); exit 0 means healthy."),
    url: z
      .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
      .exactOptional()
      .describe("GET this URL; a 2xx answer means healthy."),
    timeoutSec: z
      .int()
      .positive()
      .default(60)
      .describe("How long the new release may take to become healthy before it is rolled back."),
  })
  .refine((check) => check.command !== undefined || check.url !== undefined, "needs a command or a url")
  .describe("How to tell that a freshly activated release works.");

export const Component = z
  .strictObject({
    restart: Argv.exactOptional().describe(
      "Command that restarts the component after activation (argv, no shell).",
    ),
    healthCheck: HealthCheck.exactOptional(),
    keep: z.int().min(1).default(2).describe("How many releases to keep on disk, the current one included."),
  })
  .describe("A component the agent updates.");
