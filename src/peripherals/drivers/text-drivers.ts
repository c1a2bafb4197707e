import { parseDelimiter } from "../../config/delimiter.js";
import { parseJsonLine } from "../protocols/jsonl.js";
import { createLineFramer, type LineFramer } from "../protocols/line-framer.js";
import { type LevelPattern, parseLogLine } from "../protocols/log-level.js";
import type { CapturedLine, Driver, DriverContext } from "./driver.js";

/** REFERENCE 1: every frame buffer is capped; the framer's is the only buffer a text driver has. */
export const MAX_LINE_BYTES = 8 * 1024;

export interface TextDriverOptions {
  delimiter: string | undefined;
  encoding: "utf8" | "latin1" | "ascii";
  patterns?: readonly LevelPattern[];
}

/** `lines`: text log lines, level from the line's own markers, timestamps kept when present. */
export function createLinesDriver(context: DriverContext, options: TextDriverOptions): Driver {
  return createTextDriver(context, options, (line, now) => {
    const parsed = parseLogLine(line, withPatterns({ now }, options));
    return withTs({ level: parsed.level, line: parsed.line }, parsed.ts);
  });
}

/**
 * `jsonl`: one JSON object a line. A line that is not a JSON object is still kept, as a plain log
 * line, so a daemon that mixes JSON with plain output loses nothing.
 */
export function createJsonlDriver(context: DriverContext, options: TextDriverOptions): Driver {
  return createTextDriver(context, options, (line, now) => {
    const parsed = parseJsonLine(line, withPatterns({ now }, options));
    if (!parsed.ok) {
      const plain = parseLogLine(line, withPatterns({ now }, options));
      return withTs({ level: plain.level, line: plain.line }, plain.ts);
    }
    const { level, line: message, ts, fields } = parsed.value;
    const captured = withTs({ level, line: message }, ts);
    if (Object.keys(fields).length > 0) captured.fields = fields;
    return captured;
  });
}

function createTextDriver(
  context: DriverContext,
  options: TextDriverOptions,
  parse: (line: string, now: number) => CapturedLine,
): Driver {
  const framerOptions = {
    delimiter: parseDelimiter(options.delimiter),
    maxLineBytes: MAX_LINE_BYTES,
    encoding: options.encoding,
  };
  let framer: LineFramer = createLineFramer(framerOptions);
  let lines = 0;
  // Overflows of framers that belonged to earlier attachments of the port.
  let pastOverflows = 0;

  function emit(text: string): void {
    lines += 1;
    try {
      context.line(parse(text, context.now()));
    } catch (error) {
      context.log.error({ err: error }, "could not handle a captured line");
    }
  }

  return {
    attach() {
      // A fresh framer: whatever half line the last attachment left is not joined to new bytes.
      pastOverflows += framer.overflows;
      framer = createLineFramer(framerOptions);
    },
    data(chunk) {
      for (const text of framer.push(chunk)) emit(text);
    },
    detach() {
      const rest = framer.flush();
      if (rest !== undefined) emit(rest);
    },
    stop() {},
    counters() {
      return { lines, overflows: pastOverflows + framer.overflows };
    },
  };
}

function withPatterns(
  base: { now: number },
  options: TextDriverOptions,
): { now: number; patterns?: readonly LevelPattern[] } {
  return options.patterns === undefined ? base : { ...base, patterns: options.patterns };
}

function withTs(captured: CapturedLine, ts: number | undefined): CapturedLine {
  if (ts !== undefined) captured.ts = ts;
  return captured;
}
