import { describe, expect, it } from "vitest";
import { findJsonErrorOffset, lineAndColumn } from "../../../src/config/json-error-position.js";

const SAMPLES = [
  '{"a": [1, -2.5e3, 0, true, false, null, "x\\n\\u00e9\\"", {}, []]}',
  "  42  ",
  '"\\u12"',
  '"tab\there"',
  '{"a": 01}',
  '{"a": 1.}',
  '{"a": -}',
  '{"a": tru}',
  "[1, 2,]",
  "[1 2]",
  '{"a": 1,}',
  '{"a" 1}',
  "{a: 1}",
  '{"a": 1} x',
  '{"a": "\\x"}',
  '{"a": [1, {"b": 2]}',
  "",
  "   ",
  "[",
];

function v8Offset(text: string): number | undefined {
  try {
    JSON.parse(text);
    return undefined;
  } catch (error) {
    const position = /at position (\d+)/.exec((error as Error).message);
    return position ? Number(position[1]) : -1;
  }
}

describe("findJsonErrorOffset", () => {
  it("agrees with JSON.parse on whether text is valid, and on the offset where V8 names one", () => {
    for (const text of SAMPLES) {
      const expected = v8Offset(text);
      const found = findJsonErrorOffset(text);
      if (expected === undefined) expect(found, text).toBeUndefined();
      else if (expected === -1) expect(found, text).toBeTypeOf("number");
      else expect(found, text).toBe(expected);
    }
  });

  it("points at an unexpected token that V8 reports without an offset", () => {
    expect(findJsonErrorOffset('{"a": x}')).toBe(6);
    expect(findJsonErrorOffset("[1,2,,]")).toBe(5);
  });
});

describe("lineAndColumn", () => {
  it("counts lines and columns from 1", () => {
    expect(lineAndColumn("ab\ncd", 0)).toEqual({ line: 1, column: 1 });
    expect(lineAndColumn("ab\ncd", 4)).toEqual({ line: 2, column: 2 });
    expect(lineAndColumn("ab\n", 3)).toEqual({ line: 2, column: 1 });
  });
});
