import { join } from "node:path";
import { silentLogger } from "../../src/shared/logger.js";
import { createCountersFile } from "../../src/store/counters-file.js";
import { COUNTERS_FILE, openDatabase } from "../../src/store/database.js";
import { createOutbox } from "../../src/store/outbox.js";
import { makeTmpDir } from "./tmp-dir.js";

/** A real outbox in a fresh SQLite file under a temp dir (removed when the calling test finishes). */
export function openTestOutbox(
  prefix: string,
  options: { maxBytes?: number; maxRecordBytes?: number; now?: () => number } = {},
) {
  const dir = makeTmpDir(prefix);
  const opened = openDatabase({
    dataDir: dir,
    log: silentLogger,
    now: options.now ?? Date.now,
    walLimitBytes: 4 * 1024 * 1024,
  });
  const outbox = createOutbox({
    db: opened.db,
    counters: createCountersFile(join(dir, COUNTERS_FILE)),
    maxBytes: options.maxBytes ?? 64 * 1024 * 1024,
    maxRecordBytes: options.maxRecordBytes ?? 65_536 - 512,
  });
  return { dir, db: opened.db, outbox, close: () => opened.db.close() };
}
