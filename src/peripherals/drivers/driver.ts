import type { Logger } from "../../shared/logger.js";
import type { NormalisedStatus } from "../protocols/escpos-status.js";
import type { LogLevel } from "../protocols/log-level.js";

/** A log line as a driver captured it, before storm control and scrubbing. */
export interface CapturedLine {
  level: LogLevel;
  line: string;
  /** When the line carried its own timestamp. */
  ts?: number;
  /** Structured fields (jsonl). */
  fields?: Record<string, unknown>;
}

export interface DriverContext {
  /** The peripheral's name: the records' `source`. */
  source: string;
  now(): number;
  log: Logger;
  line(captured: CapturedLine): void;
  /** A full normalised status (printers); the caller keeps the last one and reports changes. */
  status(status: NormalisedStatus): void;
}

/** What a driver may do with the port while it is attached. */
export interface DriverPort {
  write(bytes: Uint8Array): Promise<void>;
}

/**
 * One protocol over one serial link. The link calls attach/data/detach as the port comes and goes;
 * drivers keep no buffer beyond their parser's bounded one and never throw into the link.
 */
export interface Driver {
  attach(port: DriverPort): void;
  data(chunk: Buffer): void;
  detach(): void;
  stop(): void;
  /** Counters for telemetry, e.g. `lines`, `overflows`. */
  counters(): Record<string, number>;
}
