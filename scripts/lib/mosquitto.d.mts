export interface StartMosquittoOptions {
  /** Directory for the generated config, the log and the persistence file (created if missing). */
  dir: string;
  /** Fixed port; default: a free one. */
  port?: number | undefined;
  /** Default true. */
  persistence?: boolean | undefined;
  /** Appended to the generated config; later lines override earlier ones. */
  extraConfig?: string | readonly string[] | undefined;
}

export interface Broker {
  readonly port: number;
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string;
  /** Pid of the current (or last) broker process. */
  readonly pid: number;
  readonly running: boolean;
  readonly dir: string;
  readonly configPath: string;
  readonly logPath: string;
  /** SIGTERM, then wait for exit; mosquitto saves its persistence file first. */
  stop(): Promise<void>;
  /** SIGKILL, then wait for exit; changes since the last autosave (≤ 1 s) are lost. */
  kill(): Promise<void>;
  /** Stop if running, then start again on the same port with the same dir and persistence. */
  restart(): Promise<void>;
  /** Last lines of the broker log (all runs). */
  logTail(lines?: number): Promise<string>;
}

/** Path of the mosquitto binary; throws telling to `apt-get install mosquitto` if missing. */
export declare function findMosquitto(): string;

/** Start a private broker from its own config; resolves once it accepts TCP connections. */
export declare function startMosquitto(options: StartMosquittoOptions): Promise<Broker>;
