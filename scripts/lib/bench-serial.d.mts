export interface SerialCaptureResult {
  lines: number;
  bytes: number;
  /** Lines/s through node-serialport's ReadlineParser alone. */
  raw: number;
  /** Lines/s through the agent's capture path, committed to SQLite. */
  pipeline: number;
  redactions: number;
}
export declare function benchSerialCapture(options: {
  lines?: number;
  dir: string;
}): Promise<SerialCaptureResult>;
