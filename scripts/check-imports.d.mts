export interface Violation {
  /** Importer, e.g. "src/commands/run.ts". */
  file: string;
  /** What it imports: "src/x/y.ts" or a package name. */
  target: string;
  rule: "layer" | "sideways" | "transport" | "adapter" | "outside" | "unknown-module" | "cycle";
  /** The full report line. */
  message: string;
}

export declare const LAYERS: Readonly<Record<string, number>>;
export declare const ADAPTER_PACKAGES: Readonly<Record<string, string>>;

/** Blank out comments, keeping offsets and newlines. */
export declare function stripComments(text: string): string;

/** Every module specifier a source file imports or re-exports, type-only ones included. */
export declare function importSpecifiers(text: string): string[];

/** Check the import rules over `rootDir/src` (or `rootDir` itself when it has no src/). */
export declare function checkImports(rootDir: string): { files: number; violations: Violation[] };
