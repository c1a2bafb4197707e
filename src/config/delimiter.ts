import { AgentError } from "../shared/errors.js";

export const MAX_DELIMITER_BYTES = 16;
const LF = 0x0a;
const CR = 0x0d;

/**
 * The configured delimiter as bytes: undefined gives "\n"; "" is refused (a line would never end).
 *
 * The config file is JSON, so "\r\n" there already arrives as CR LF. Environment variables and
 * command lines cannot carry a raw CR, so backslash escapes are read too: `\n`, `\r`, `\t`, `\0`,
 * `\\` and `\xHH` (one raw byte). A literal backslash therefore has to be written `\\`. Other
 * characters are encoded as UTF-8.
 */
export function parseDelimiter(configured: string | undefined): Uint8Array {
  if (configured === undefined) return Uint8Array.of(LF);
  const bytes: number[] = [];
  for (let i = 0; i < configured.length; i += 1) {
    const ch = configured[i] as string;
    if (ch !== "\\") {
      const code = configured.codePointAt(i) as number;
      if (code > 0xffff) i += 1;
      bytes.push(...Buffer.from(String.fromCodePoint(code), "utf8"));
      continue;
    }
    const next = configured[i + 1];
    i += 1;
    switch (next) {
      case "n":
        bytes.push(LF);
        break;
      case "r":
        bytes.push(CR);
        break;
      case "t":
        bytes.push(0x09);
        break;
      case "0":
        bytes.push(0x00);
        break;
      case "\\":
        bytes.push(0x5c);
        break;
      case "x": {
        const hex = configured.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
          throw new AgentError(
            "BAD_REQUEST",
            `delimiter ${JSON.stringify(configured)}: \\x needs two hex digits`,
          );
        }
        bytes.push(Number.parseInt(hex, 16));
        i += 2;
        break;
      }
      default:
        throw new AgentError(
          "BAD_REQUEST",
          `delimiter ${JSON.stringify(configured)}: unknown escape \\${next ?? ""} (use \\n \\r \\t \\0 \\\\ or \\xHH)`,
        );
    }
  }
  if (bytes.length === 0) throw new AgentError("BAD_REQUEST", "delimiter is empty: a line would never end");
  if (bytes.length > MAX_DELIMITER_BYTES) {
    throw new AgentError("BAD_REQUEST", `delimiter is ${bytes.length} bytes; at most ${MAX_DELIMITER_BYTES}`);
  }
  return Uint8Array.from(bytes);
}
