#!/usr/bin/env node
// Writes dist/build-info.json after tsc: the build time is the agent's floor for a sane wall clock
// (a terminal whose clock says it is earlier than its own build has no RTC or lost it).
// npm pack sets every file's mtime to 1985, so the time has to be written down, not read off a file.
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";

const path = resolve(import.meta.dirname, "../dist/build-info.json");
writeFileSync(path, `${JSON.stringify({ builtAt: Date.now() })}\n`);
