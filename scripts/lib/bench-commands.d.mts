export interface BenchCommandsOptions {
  /** A running broker, e.g. from startMosquitto. */
  brokerUrl: string;
  /** Sequential round trips measured for `raw` and `fleet` (after a few unmeasured warm-up ones). Default 1000. */
  rounds?: number;
  /** Ping this device (a real agent) for `fleet`; default: a simulated terminal started for the run. */
  target?: { tenant: string; deviceId: string };
  /** Simulated terminals for `fanout`; 0 skips it. Default 1000. */
  fanoutDevices?: number;
  /** How long fan-out may wait for the last answer before it throws. Default 120 000. */
  fanoutTimeoutMs?: number;
}

export interface LatencyStats {
  rounds: number;
  medianMs: number;
  p99Ms: number;
}

export interface BenchCommandsResult {
  /** A bare MQTT 5 request/response echo client: QoS 1 both ways, Response Topic + Correlation Data. */
  raw: LatencyStats;
  /** `ping` through the fleet command client until the terminal answer (and the request's PUBACK). */
  fleet: LatencyStats & { target: string; simulated: boolean };
  /** diagnostics.run to every simulated terminal until all have answered: one request each, then one on a group topic. */
  fanout?: { devices: number; connectMs: number; listMs: number; groupMs: number };
}

/** Command round trips and fan-out against one broker; returns numbers, prints nothing. Needs `npm run build`. */
export declare function benchCommands(options: BenchCommandsOptions): Promise<BenchCommandsResult>;
