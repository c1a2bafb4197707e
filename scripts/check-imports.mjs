#!/usr/bin/env node
// Keeps the import direction of STYLE.md true: layers point one way, no sideways imports,
// updates/ and commands/ never reach transport/, each I/O library lives in one adapter folder,
// and the file graph has no cycles. Type-only imports count: they couple the code just the same.
//
// Usage: node scripts/check-imports.mjs [DIR]   (DIR: a project root holding src/, or src/ itself)
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** Layer of each top-level module: a file may import its own module or a lower layer. */
export const LAYERS = Object.freeze({
  shared: 0,
  config: 1,
  store: 1,
  pki: 1,
  transport: 2,
  peripherals: 2,
  metrics: 2,
  intake: 2,
  updates: 3,
  diagnostics: 3,
  commands: 4,
  agent: 5,
  main: 6,
  // The entry points: `pos-agent run` starts the composition root.
  cli: 7,
});

/** Third-party I/O packages and the one module allowed to import each. */
export const ADAPTER_PACKAGES = Object.freeze({
  mqtt: "transport",
  serialport: "peripherals",
  "@serialport/*": "peripherals",
  "better-sqlite3": "store",
  systeminformation: "metrics",
  "node-forge": "pki",
});

/** Modules that get a publish-like function from the agent instead of importing the transport. */
const NO_TRANSPORT = new Set(["updates", "commands"]);

/**
 * @typedef {object} Violation
 * @property {string} file importer, e.g. "src/commands/run.ts"
 * @property {string} target what it imports: "src/x/y.ts" or a package name
 * @property {"layer" | "sideways" | "transport" | "adapter" | "outside" | "unknown-module" | "cycle"} rule
 * @property {string} message the full report line
 */

/**
 * @param {string} dir
 * @returns {string[]} absolute paths of .ts/.mts files under dir
 */
function listSources(dir) {
  /** @type {string[]} */
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSources(full));
    else if (/\.m?ts$/.test(entry.name)) out.push(full);
  }
  return out.sort();
}

/**
 * Blank out comments (keeping offsets and newlines) so commented-out imports do not count.
 * Strings are skipped over so "mqtt://host" is not taken for a comment.
 * @param {string} text
 * @returns {string}
 */
export function stripComments(text) {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") {
        out += " ";
        i += 1;
      }
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end === -1 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\") j += 1;
        else if (c !== "`" && text[j] === "\n") break;
        j += 1;
      }
      out += text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

const IMPORT_PATTERNS = [
  // import x from "m"; import type { X } from "m"; export { x } from "m"; export * from "m"
  /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
  // import "m";
  /\bimport\s*["']([^"']+)["']/g,
  // import("m")
  /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
];

/**
 * Every module specifier a source file imports or re-exports, type-only ones included.
 * @param {string} text
 * @returns {string[]}
 */
export function importSpecifiers(text) {
  const code = stripComments(text);
  /** @type {string[]} */
  const found = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of code.matchAll(pattern)) {
      if (match[1] !== undefined) found.push(match[1]);
    }
  }
  return [...new Set(found)];
}

/**
 * The file a relative specifier names: "./x.js" is x.ts in the source tree.
 * @param {string} fromFile
 * @param {string} specifier
 * @returns {string}
 */
function resolveRelative(fromFile, specifier) {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.mjs$/, ".mts"),
    base,
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? candidates[0] ?? base;
}

/**
 * Module of a file relative to src: its top folder, or the file's base name at the top.
 * @param {string} rel path relative to src, with "/" separators
 */
function moduleOf(rel) {
  const parts = rel.split("/");
  return parts.length > 1 ? (parts[0] ?? "") : rel.replace(/\.m?ts$/, "");
}

/** @param {string} specifier */
function packageName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier);
}

/** @param {string} pkg @returns {string | undefined} */
function adapterFor(pkg) {
  /** @type {Record<string, string>} */
  const table = ADAPTER_PACKAGES;
  return table[pkg] ?? (pkg.startsWith("@") ? table[`${pkg.split("/")[0]}/*`] : undefined);
}

/**
 * Strongly connected components with more than one file (or a file importing itself).
 * @param {Map<string, string[]>} graph
 * @returns {string[][]}
 */
function cycles(graph) {
  let index = 0;
  /** @type {Map<string, number>} */
  const indices = new Map();
  /** @type {Map<string, number>} */
  const low = new Map();
  /** @type {string[]} */
  const stack = [];
  const onStack = new Set();
  /** @type {string[][]} */
  const found = [];

  /** @param {string} v */
  const visit = (v) => {
    indices.set(v, index);
    low.set(v, index);
    index += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, indices.get(w) ?? 0));
      }
    }
    if (low.get(v) === indices.get(v)) {
      /** @type {string[]} */
      const component = [];
      for (;;) {
        const w = stack.pop();
        if (w === undefined) break;
        onStack.delete(w);
        component.push(w);
        if (w === v) break;
      }
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!indices.has(v)) visit(v);
  return found;
}

/**
 * One concrete loop through a strongly connected component, starting and ending at its first file.
 * @param {Map<string, string[]>} graph
 * @param {string[]} component
 * @returns {string[]}
 */
function loopThrough(graph, component) {
  const members = new Set(component);
  const start = component[0] ?? "";
  /** @type {Map<string, string>} */
  const parent = new Map();
  const queue = [start];
  while (queue.length > 0) {
    const v = /** @type {string} */ (queue.shift());
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(/** @type {string} */ (parent.get(path[0] ?? "")));
        return [...path, start];
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/**
 * Check the import rules over every .ts file under `rootDir/src` (or `rootDir` itself when it
 * has no src/ folder).
 * @param {string} rootDir
 * @returns {{ files: number, violations: Violation[] }}
 */
export function checkImports(rootDir) {
  const srcDir = existsSync(join(rootDir, "src")) ? resolve(rootDir, "src") : resolve(rootDir);
  const labelBase = dirname(srcDir);
  /** @param {string} abs */
  const label = (abs) => relative(labelBase, abs).split(sep).join("/");
  /** @param {string} abs */
  const inSrc = (abs) => abs === srcDir || abs.startsWith(srcDir + sep);
  /** @type {Record<string, number>} */
  const layers = LAYERS;

  const files = listSources(srcDir);
  /** @type {Map<string, Violation>} */
  const violations = new Map();
  /** @param {string} file @param {string} target @param {Violation["rule"]} rule @param {string} why */
  const report = (file, target, rule, why) => {
    const message = rule === "unknown-module" ? `${file}: ${why}` : `${file}: imports ${target} (${why})`;
    violations.set(message, { file, target, rule, message });
  };
  /** @type {Map<string, string[]>} */
  const graph = new Map();

  for (const abs of files) {
    const file = label(abs);
    const fromModule = moduleOf(relative(srcDir, abs).split(sep).join("/"));
    const fromLayer = layers[fromModule];
    if (fromLayer === undefined) {
      report(file, "", "unknown-module", `module "${fromModule}" is not in the layer table`);
    }
    /** @type {string[]} */
    const edges = [];
    for (const specifier of importSpecifiers(readFileSync(abs, "utf8"))) {
      if (specifier.startsWith("node:")) continue;
      if (!specifier.startsWith(".") && !specifier.startsWith("/")) {
        const pkg = packageName(specifier);
        const owner = adapterFor(pkg);
        if (owner !== undefined && owner !== fromModule) {
          report(file, pkg, "adapter", `adapter rule: ${pkg} only in src/${owner}/`);
        }
        continue;
      }
      const targetAbs = resolveRelative(abs, specifier);
      if (!inSrc(targetAbs)) {
        report(file, specifier, "outside", "src/ never imports from outside src/");
        continue;
      }
      const target = label(targetAbs);
      if (existsSync(targetAbs)) edges.push(targetAbs);
      const toModule = moduleOf(relative(srcDir, targetAbs).split(sep).join("/"));
      if (toModule === fromModule) continue;
      const toLayer = layers[toModule];
      if (fromLayer === undefined) continue;
      if (toLayer === undefined) {
        report(file, target, "unknown-module", `module "${toModule}" is not in the layer table`);
      } else if (toLayer > fromLayer) {
        report(
          file,
          target,
          "layer",
          `layer rule: ${fromModule} (${fromLayer}) may not import ${toModule} (${toLayer}), a higher layer`,
        );
      } else if (toLayer === fromLayer) {
        report(
          file,
          target,
          "sideways",
          `layer rule: ${fromModule} (${fromLayer}) may not import ${toModule} (${toLayer}), same layer in another folder`,
        );
      }
      if (NO_TRANSPORT.has(fromModule) && toModule === "transport") {
        report(
          file,
          target,
          "transport",
          `${fromModule}/ never imports transport/: the agent passes it a publish function`,
        );
      }
    }
    graph.set(abs, edges);
  }

  for (const component of cycles(graph)) {
    const loop = loopThrough(graph, component);
    const [first, second] = loop;
    if (first === undefined || second === undefined) continue;
    report(label(first), label(second), "cycle", `cycle: ${loop.map(label).join(" -> ")}`);
  }

  return {
    files: files.length,
    violations: [...violations.values()].sort((a, b) => a.message.localeCompare(b.message)),
  };
}

const invokedDirectly =
  process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = resolve(process.argv[2] ?? join(here, "..", "src"));
  if (!existsSync(root)) {
    console.error(`check-imports: ${root} does not exist`);
    process.exit(2);
  }
  const { files, violations } = checkImports(root);
  for (const v of violations) console.log(v.message);
  if (violations.length > 0) {
    console.error(`check-imports: ${violations.length} violation(s) in ${files} files`);
    process.exit(1);
  }
  console.log(`imports ok: ${files} files`);
}
