import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { buildSupportBundle, type SupportBundle } from "../diagnostics/support-bundle.js";
import { AgentError } from "../shared/errors.js";
import type { LogArchive } from "../store/log-archive.js";
import type { CommandHandler } from "./command.js";
import { displayUrl, httpPutFile } from "./http-put.js";

const MIB = 1024 * 1024;
export const UPLOAD_DEFAULT_BYTES = 16 * MIB;
export const UPLOAD_MAX_BYTES = 256 * MIB;

export const LogsUploadArgs = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
  /** ms since the epoch or ISO 8601; default: everything the archive holds. */
  since: z
    .union([z.int().min(0), z.iso.datetime({ offset: true }).transform((iso) => Date.parse(iso))])
    .optional(),
  maxBytes: z
    .int()
    .min(64 * 1024)
    .max(UPLOAD_MAX_BYTES)
    .default(UPLOAD_DEFAULT_BYTES),
});
export type LogsUploadArgs = z.infer<typeof LogsUploadArgs>;

/** Terminal logs compress about 5-10×: start by taking this many stored bytes per allowed bundle byte. */
const FIRST_RATIO = 4;
const ATTEMPTS = 4;

/**
 * `logs.upload {url, since?, maxBytes?}`: builds the support bundle (support-bundle.ts) within
 * maxBytes, keeping the newest records when the archive holds more, and PUTs it to `url`. The result
 * names its size and SHA-256 so the receiver can check what arrived.
 */
export function createLogsUploadHandler(deps: {
  archive: Pick<LogArchive, "startForBudget" | "rowsAfter">;
  /** Working space; each upload uses and removes a directory of its own under it. */
  tmpDir: string;
  header: () => Record<string, unknown>;
  status: () => unknown;
  /** Already redacted. */
  config: () => unknown;
  put?: typeof httpPutFile;
}): CommandHandler<LogsUploadArgs> {
  const put = deps.put ?? httpPutFile;
  return {
    name: "logs.upload",
    args: LogsUploadArgs,
    long: true,
    timeoutMs: 15 * 60_000,
    async run(args, context) {
      const url = new URL(args.url);
      const dir = join(deps.tmpDir, `upload-${randomBytes(6).toString("hex")}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      try {
        context.progress({ pct: 0, note: "building the bundle" });
        let budget = args.maxBytes * FIRST_RATIO;
        let bundle: SupportBundle | undefined;
        for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
          const attemptDir = join(dir, String(attempt));
          await mkdir(attemptDir);
          bundle = await buildSupportBundle({
            archive: deps.archive,
            dir: attemptDir,
            since: args.since ?? 0,
            recordBudgetBytes: budget,
            header: deps.header(),
            status: deps.status(),
            config: deps.config(),
            signal: context.signal,
          });
          if (bundle.bytes <= args.maxBytes) break;
          budget = Math.floor((budget * args.maxBytes * 0.9) / bundle.bytes);
          bundle = undefined;
          await rm(attemptDir, { recursive: true, force: true });
        }
        if (bundle === undefined) {
          throw new AgentError(
            "TOO_LARGE",
            `the bundle did not fit in maxBytes ${args.maxBytes} after ${ATTEMPTS} attempts`,
          );
        }
        const total = bundle.bytes;
        context.progress({ pct: 10, note: `uploading ${total} bytes` });
        const { status } = await put({
          url,
          file: bundle.path,
          bytes: total,
          contentType: "application/gzip",
          signal: context.signal,
          onProgress: (sent) => context.progress({ pct: 10 + Math.floor((sent / total) * 90) }),
        });
        return {
          url: displayUrl(url),
          httpStatus: status,
          bytes: bundle.bytes,
          sha256: bundle.sha256,
          logs: bundle.logs,
          events: bundle.events,
        };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
