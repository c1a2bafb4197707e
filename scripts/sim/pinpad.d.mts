export interface PinpadSimulatorOptions {
  /** Where the PTY slave appears (a symlink to /dev/pts/N); a stale link from a killed run is replaced. */
  path: string;
  /** One tick (a line, a burst of identical lines, or junk) every intervalMs. Default 200. */
  intervalMs?: number;
  /** Include Luhn-valid test PANs, track 2 data and EMV TLV dumps. Default true. */
  cardNumbers?: boolean;
  /** Now and then binary junk without a newline, sometimes longer than 8 KiB. Default true. */
  garbage?: boolean;
  /** Seed of the line sequence (timestamps in the lines are real time). Default 1. */
  seed?: number;
  /** Text lines in mixed styles, or pino-style JSON lines. Default "text". */
  format?: "text" | "jsonl";
}

export interface PinpadSimulator {
  /** The resolved PTY link path. */
  readonly path: string;
  /** Write `text` plus "\n"; false (and not counted) when unplugged, stopped, or nobody has read for a while. */
  writeLine(text: string): boolean;
  /** Write raw bytes; false when they could not be handed to socat. */
  writeBytes(bytes: Uint8Array): boolean;
  /** Lines handed to socat so far (generated and writeLine), bursts counted line by line. */
  readonly linesWritten: number;
  /** True while socat runs. */
  readonly plugged: boolean;
  /** Kill socat: the link vanishes and readers see the port close. Lines meanwhile are lost. */
  unplug(): Promise<void>;
  /** Start socat again at the same path (a new /dev/pts/N); resolves when the link exists. */
  replug(): Promise<void>;
  /** Stop writing, kill socat, remove the link. */
  stop(): Promise<void>;
}

export type PinpadChunk = { kind: "line"; text: string } | { kind: "bytes"; bytes: Buffer };

export interface PinpadLineGeneratorOptions {
  seed?: number;
  cardNumbers?: boolean;
  garbage?: boolean;
  format?: "text" | "jsonl";
  /** Clock for the timestamps in the lines. Default Date.now. */
  now?: () => number;
}

/** The seeded source of what the simulator writes, one interval at a time (lines without "\n"). */
export declare function createPinpadLineGenerator(options?: PinpadLineGeneratorOptions): {
  next(): PinpadChunk[];
};

/** Start socat and the writer; resolves once the PTY link exists. Needs `socat` on PATH. */
export declare function startPinpadSimulator(options: PinpadSimulatorOptions): Promise<PinpadSimulator>;
