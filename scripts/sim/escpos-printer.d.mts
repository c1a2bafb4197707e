export interface PrinterState {
  /** The printer's own online switch; the reported offline bit is also set by cover, paper out and errors. */
  online: boolean;
  coverOpen: boolean;
  paper: "ok" | "near_end" | "out";
  /** Recoverable: cleared by DLE ENQ 1 or 2. */
  cutterError: boolean;
  /** Recoverable (e.g. a jam): cleared by DLE ENQ 1 or 2. */
  mechanicalError: boolean;
  /** Only setState clears it (a real one needs a power cycle). */
  unrecoverableError: boolean;
  /** E.g. head too hot: clears itself on a real printer, here by setState. */
  autoRecoverableError: boolean;
  drawerHigh: boolean;
  feedButton: boolean;
  /** A dead printer: nothing is answered or sent, commands are still consumed. */
  mute: boolean;
}

export type PrinterSimulatorEvent =
  /** Every chunk socat passed on from the PTY, as it arrived. */
  | { type: "rx"; bytes: Buffer }
  | { type: "dle-eot"; n: number; byte: number }
  | { type: "dle-enq"; n: number }
  | { type: "gs-a"; n: number }
  | { type: "asb"; bytes: [number, number, number, number] };

export interface PrinterSimulatorOptions {
  /** Where the PTY is linked (a symlink to /dev/pts/N); a stale symlink there is replaced. */
  path: string;
  /** Whether the printer supports Automatic Status Back; false ignores GS a. Default true. */
  asb?: boolean | undefined;
  /** Delay before each reply or ASB frame. Default 0. */
  replyDelayMs?: number | undefined;
  /** Put XOFF before and XON after every byte sent. Default false. */
  xonxoff?: boolean | undefined;
  /** socat binary. Default "socat" on PATH. */
  socat?: string | undefined;
  /** Traffic, for the CLI and for debugging tests. */
  onEvent?: ((event: PrinterSimulatorEvent) => void) | undefined;
}

export interface PrinterSimulator {
  readonly path: string;
  /** A copy of the current state. */
  readonly state: PrinterState;
  /** Change some fields; an unknown field or a bad value throws. Sends ASB when enabled and a watched category changed. */
  setState(partial: Partial<PrinterState>): void;
  /** SIGTERM socat: the PTY closes and the link at `path` disappears. The printer state (and ASB) is kept. */
  unplug(): Promise<void>;
  /** Start socat again at the same path (a new /dev/pts/N). No-op while plugged. */
  replug(): Promise<void>;
  /** Same as unplug; safe to call twice. */
  stop(): Promise<void>;
  /** DLE EOT requests answered so far (not counting those a muted printer swallowed). */
  readonly received: number;
  /** GS a with n ≠ 0 received last (and `asb` supported). */
  readonly asbEnabled: boolean;
  readonly plugged: boolean;
}

/** Start socat and wait until the link at `path` exists. */
export declare function startPrinterSimulator(options: PrinterSimulatorOptions): Promise<PrinterSimulator>;

/** The reply byte to `DLE EOT n` for a state (fixed bits included). */
export declare function dleEotByte(state: PrinterState, n: 1 | 2 | 3 | 4): number;

/** The ASB frame for a state. */
export declare function asbFrame(state: PrinterState): [number, number, number, number];

/** A ready printer: online, cover closed, paper in, no error. */
export declare function initialPrinterState(): PrinterState;
