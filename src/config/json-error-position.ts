class SyntaxStop {
  constructor(readonly offset: number) {}
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const SIMPLE_ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX_DIGIT = /^[0-9A-Fa-f]$/;

/**
 * The offset of the first JSON syntax error in `text`, or undefined when there is none.
 * V8 names the offset for some errors only ("Unexpected token 'x', … is not valid JSON" has none),
 * so this walks the text itself.
 */
export function findJsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const stop = (): never => {
    throw new SyntaxStop(i);
  };
  const skipWhitespace = (): void => {
    while (i < text.length && WHITESPACE.has(text.charAt(i))) i++;
  };
  const isDigit = (): boolean => {
    const c = text.charAt(i);
    return c >= "0" && c <= "9";
  };
  const digits = (): void => {
    if (!isDigit()) stop();
    while (isDigit()) i++;
  };
  const number = (): void => {
    if (text.charAt(i) === "-") i++;
    if (text.charAt(i) === "0") i++;
    else digits();
    if (text.charAt(i) === ".") {
      i++;
      digits();
    }
    if (text.charAt(i) === "e" || text.charAt(i) === "E") {
      i++;
      if (text.charAt(i) === "+" || text.charAt(i) === "-") i++;
      digits();
    }
  };
  const string = (): void => {
    i++;
    for (;;) {
      if (i >= text.length) stop();
      const c = text.charAt(i);
      if (c === '"') {
        i++;
        return;
      }
      if (c < " ") stop();
      if (c !== "\\") {
        i++;
        continue;
      }
      i++;
      const escaped = text.charAt(i);
      if (SIMPLE_ESCAPES.has(escaped)) i++;
      else if (escaped === "u") {
        i++;
        for (let digit = 0; digit < 4; digit++, i++) if (!HEX_DIGIT.test(text.charAt(i))) stop();
      } else stop();
    }
  };
  const sequence = (close: string, item: () => void): void => {
    i++;
    skipWhitespace();
    if (text.charAt(i) === close) {
      i++;
      return;
    }
    for (;;) {
      item();
      skipWhitespace();
      const c = text.charAt(i);
      if (c === close) {
        i++;
        return;
      }
      if (c !== ",") stop();
      i++;
    }
  };
  const member = (): void => {
    skipWhitespace();
    if (text.charAt(i) !== '"') stop();
    string();
    skipWhitespace();
    if (text.charAt(i) !== ":") stop();
    i++;
    value();
  };
  const value = (): void => {
    skipWhitespace();
    const c = text.charAt(i);
    if (c === "{") sequence("}", member);
    else if (c === "[") sequence("]", value);
    else if (c === '"') string();
    else if (c === "-" || (c >= "0" && c <= "9")) number();
    else {
      const word = ["true", "false", "null"].find((literal) => text.startsWith(literal, i));
      if (word === undefined) stop();
      else i += word.length;
    }
  };
  try {
    value();
    skipWhitespace();
    return i < text.length ? i : undefined;
  } catch (error) {
    if (error instanceof SyntaxStop) return error.offset;
    return undefined;
  }
}

/** 1-based line and column of a character offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.min(offset, text.length));
  const lastBreak = before.lastIndexOf("\n");
  return { line: before.split("\n").length, column: before.length - lastBreak };
}
