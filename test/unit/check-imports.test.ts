import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { checkImports, importSpecifiers } from "../../scripts/check-imports.mjs";

const script = new URL("../../scripts/check-imports.mjs", import.meta.url).pathname;
const run = promisify(execFile);

let root: string | undefined;

/** Write a fixture project: { "shared/a.ts": "source", ... } under ROOT/src. */
async function tree(files: Record<string, string>): Promise<string> {
  root = await mkdtemp(join(tmpdir(), "check-imports-"));
  for (const [path, text] of Object.entries(files)) {
    const full = join(root, "src", path);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, text);
  }
  return root;
}

const clean = {
  "shared/errors.ts": 'import { z } from "zod";\nexport const E = z.string();\n',
  "config/load.ts":
    'import { readFile } from "node:fs/promises";\nimport type { E } from "../shared/errors.js";\n',
  "store/db.ts": 'import Database from "better-sqlite3";\nimport "../shared/errors.js";\n',
  "transport/session.ts":
    'import mqtt from "mqtt";\nimport { load } from "../config/load.js";\nimport { x } from "./topics.js";\n',
  "transport/topics.ts": "export const x = 1;\n",
  "updates/install.ts": 'import { db } from "../store/db.js";\n',
  "commands/registry.ts": 'import { install } from "../updates/install.js";\n',
  "agent.ts":
    'import { registry } from "./commands/registry.js";\nimport { s } from "./transport/session.js";\n',
  "main.ts": 'import { createAgent } from "./agent.js";\n',
  "cli/run.ts": 'import { createAgent } from "../agent.js";\n',
};

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  root = undefined;
});

describe("importSpecifiers", () => {
  it("finds static, type-only, re-export, side-effect and dynamic imports across lines", () => {
    const text = [
      'import type { A } from "./a.js";',
      "import {",
      "  b,",
      "  c,",
      '} from "./b.js";',
      'export * from "./c.js";',
      'export { d } from "./d.js";',
      'import "./e.js";',
      'const f = await import("./f.js");',
    ].join("\n");
    expect(importSpecifiers(text).sort()).toEqual(
      ["./a.js", "./b.js", "./c.js", "./d.js", "./e.js", "./f.js"].sort(),
    );
  });

  it("ignores imports in comments but not URLs in strings", () => {
    const text = [
      '// import mqtt from "mqtt";',
      '/* import x from "./x.js"; */',
      'const url = "mqtt://broker:1883"; import { y } from "./y.js";',
    ].join("\n");
    expect(importSpecifiers(text)).toEqual(["./y.js"]);
  });
});

describe("checkImports", () => {
  it("passes a clean tree and counts its files", async () => {
    const result = checkImports(await tree(clean));
    expect(result.violations).toEqual([]);
    expect(result.files).toBe(Object.keys(clean).length);
  });

  it("reports an import of a higher layer", async () => {
    const dir = await tree({ ...clean, "store/db.ts": 'import { s } from "../transport/session.js";\n' });
    const { violations } = checkImports(dir);
    expect(violations.map((v) => v.message)).toEqual([
      "src/store/db.ts: imports src/transport/session.ts (layer rule: store (1) may not import transport (2), a higher layer)",
    ]);
  });

  it("reports a sideways import between folders of the same layer", async () => {
    const dir = await tree({
      ...clean,
      "peripherals/printer.ts": 'import type { x } from "../transport/topics.js";\n',
    });
    const { violations } = checkImports(dir);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({
      file: "src/peripherals/printer.ts",
      target: "src/transport/topics.ts",
      rule: "sideways",
    });
  });

  it("reports mqtt imported outside transport and scoped serialport outside peripherals", async () => {
    const dir = await tree({
      ...clean,
      "metrics/sample.ts":
        'import mqtt from "mqtt/dist/mqtt.js";\nimport { SerialPort } from "@serialport/stream";\n',
    });
    const lines = checkImports(dir).violations.map((v) => v.message);
    expect(lines).toEqual([
      "src/metrics/sample.ts: imports @serialport/stream (adapter rule: @serialport/stream only in src/peripherals/)",
      "src/metrics/sample.ts: imports mqtt (adapter rule: mqtt only in src/transport/)",
    ]);
  });

  it("reports commands importing transport even though transport is a lower layer", async () => {
    const dir = await tree({
      ...clean,
      "commands/registry.ts": 'import type { x } from "../transport/topics.js";\n',
    });
    const { violations } = checkImports(dir);
    expect(violations.map((v) => v.rule)).toEqual(["transport"]);
    expect(violations[0]?.message).toContain("src/commands/registry.ts: imports src/transport/topics.ts");
  });

  it("reports a cycle inside one folder once, with the loop", async () => {
    const dir = await tree({
      ...clean,
      "transport/topics.ts": 'import { s } from "./session.js";\nexport const x = 1;\n',
    });
    const { violations } = checkImports(dir);
    expect(violations.map((v) => v.message)).toEqual([
      "src/transport/session.ts: imports src/transport/topics.ts (cycle: src/transport/session.ts -> src/transport/topics.ts -> src/transport/session.ts)",
    ]);
  });

  it("reports files in a folder the layer table does not know", async () => {
    const dir = await tree({ ...clean, "misc/util.ts": "export const u = 1;\n" });
    expect(checkImports(dir).violations.map((v) => v.rule)).toEqual(["unknown-module"]);
  });

  it("exits 1 with one line per violation, and 0 with a summary on a clean tree", async () => {
    const bad = await tree({ ...clean, "shared/clock.ts": 'import { load } from "../config/load.js";\n' });
    const failure = await run(process.execPath, [script, join(bad, "src")]).catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect("code" in failure ? failure.code : 0).toBe(1);
    expect(failure.stdout.trim().split("\n")).toEqual([
      "src/shared/clock.ts: imports src/config/load.ts (layer rule: shared (0) may not import config (1), a higher layer)",
    ]);
    await rm(bad, { recursive: true, force: true });

    const good = await tree(clean);
    const { stdout } = await run(process.execPath, [script, good]);
    expect(stdout.trim()).toBe(`imports ok: ${Object.keys(clean).length} files`);
  });
});
