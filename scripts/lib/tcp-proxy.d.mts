export interface StartTcpProxyOptions {
  /** Default 127.0.0.1. */
  targetHost?: string | undefined;
  targetPort: number;
  /** Port to listen on (127.0.0.1); default: a free one. */
  port?: number | undefined;
}

export interface TcpProxy {
  readonly port: number;
  /** Open client/upstream pairs. */
  readonly connections: number;
  /** Reset (TCP RST) every open client and upstream socket at once; keep listening. */
  cut(): void;
  /** Cut, then stop listening: connects are refused until up(). */
  down(): Promise<void>;
  /** Listen again on the same port (retries briefly on EADDRINUSE). */
  up(): Promise<void>;
  /** Stop forwarding bytes both ways on every pair, new ones included, without closing anything. */
  stall(): void;
  /** Undo stall(). */
  resume(): void;
  /** Where new connections go; open pairs keep their upstream. */
  setTarget(port: number, host?: string): void;
  /** Cut and stop listening for good. */
  close(): Promise<void>;
}

/** Start a byte-for-byte TCP forwarder on 127.0.0.1. */
export declare function startTcpProxy(options: StartTcpProxyOptions): Promise<TcpProxy>;
