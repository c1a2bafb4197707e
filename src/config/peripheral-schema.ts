import { z } from "zod";
import { parseDelimiter } from "./delimiter.js";
import { FilePath, Name, NonEmptyString, RegexSource } from "./fields.js";

const HexId = z.string().regex(/^[0-9A-Fa-f]{4}$/, "must be 4 hexadecimal digits");

const LevelPattern = z
  .strictObject({
    level: z.enum(["error", "warn", "info", "debug"]).describe("Level given to lines that match."),
    regex: RegexSource.describe("JavaScript regular expression tested against each line."),
  })
  .describe("A line that matches `regex` gets `level`.");

export const SerialMatch = z
  .strictObject({
    vendorId: HexId.describe('USB vendor id, 4 hex digits, e.g. "0b00".'),
    productId: HexId.describe('USB product id, 4 hex digits, e.g. "0055".'),
    serialNumber: NonEmptyString.exactOptional().describe(
      "USB serial number, to tell identical devices apart.",
    ),
  })
  .describe("Find the port by USB identity instead of a fixed path (ports move between boots).");

export const Peripheral = z
  .strictObject({
    name: Name.describe("Unique name; used in topics (ROOT/periph/{name}/state) and as the record source."),
    path: FilePath.exactOptional().describe(
      "Serial device path, e.g. /dev/ttyS1. Exactly one of path or match.",
    ),
    match: SerialMatch.exactOptional(),
    baudRate: z.int().positive().default(9600).describe("Line speed in baud."),
    dataBits: z.literal([5, 6, 7, 8]).default(8).describe("Data bits per character."),
    stopBits: z.literal([1, 2]).default(1).describe("Stop bits."),
    parity: z.enum(["none", "even", "odd"]).default("none").describe("Parity."),
    driver: z
      .enum(["lines", "escpos", "jsonl"])
      .describe(
        "Protocol: lines (text log lines), escpos (ESC/POS printer status), jsonl (one JSON object a line).",
      ),
    pollIntervalMs: z
      .int()
      .positive()
      .default(5000)
      .describe("How often the driver polls the device for status."),
    delimiter: z
      .string()
      .min(1, "must not be empty")
      .refine((value) => delimiterProblem(value) === undefined, {
        error: (issue) => delimiterProblem(String(issue.input)) ?? "is not a valid delimiter",
      })
      .exactOptional()
      .describe(
        "Record delimiter for line-based drivers, at most 16 bytes; escapes \\n \\r \\t \\0 \\\\ \\xHH are read; absent means a newline.",
      ),
    encoding: z
      .enum(["utf8", "latin1", "ascii"])
      .default("utf8")
      .describe("Text encoding of the device's output."),
    levels: z
      .array(LevelPattern)
      .min(1, "must list at least one pattern, or be left out for the defaults")
      .exactOptional()
      .describe(
        "Level detection for lines/jsonl drivers, first match wins; absent means the defaults (E/ W/ I/ D/, ERROR, [W], syslog <3>…).",
      ),
  })
  .superRefine(
    (peripheral, ctx) => {
      if ((peripheral.path === undefined) === (peripheral.match === undefined)) {
        ctx.addIssue({ code: "custom", message: "needs exactly one of path or match" });
      }
    },
    // Reported even when other fields of the entry are wrong too.
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  )
  .describe("A serial peripheral (printer, PIN pad, scanner).");

export const Peripherals = z
  .array(Peripheral)
  .default(() => [])
  .superRefine(
    (list, ctx) => {
      const firstIndex = new Map<string, number>();
      list.forEach((entry, index) => {
        const name: unknown = (entry as { name?: unknown } | undefined)?.name;
        if (typeof name !== "string") return;
        const first = firstIndex.get(name);
        if (first === undefined) {
          firstIndex.set(name, index);
          return;
        }
        ctx.addIssue({
          code: "custom",
          path: [index, "name"],
          message: `duplicate peripheral name "${name}" (also peripherals[${first}])`,
        });
      });
    },
    { when: (payload) => Array.isArray(payload.value) },
  )
  .describe("Serial peripherals to watch.");

function delimiterProblem(value: string): string | undefined {
  try {
    parseDelimiter(value);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
