import type { IClientOptions } from "mqtt";

/** The check names of the simulated diagnostics suite (those of src/diagnostics). */
export declare const DIAGNOSTIC_CHECKS: readonly string[];

export interface SimulatedCheck {
  name: string;
  status: "pass" | "warn" | "fail";
  detail: string;
  durationMs: number;
}

/** The shape of the agent's DiagnosticsReport (the `result` of diagnostics.run). */
export interface SimulatedReport {
  ts: number;
  deviceId: string;
  /** `worst`: the name of the first failing check, else the first warning; absent when all passed. */
  summary: { pass: number; warn: number; fail: number; worst?: string };
  checks: SimulatedCheck[];
}

/** A device's report: the same statuses for the same id and seed on every run (about 65% all pass, 25% warn, 10% fail). */
export declare function simulatedReport(
  deviceId: string,
  options?: { seed?: number; checks?: readonly string[]; now?: number },
): SimulatedReport;

/** `POS-001` … `POS-{count}`, at least three digits. */
export declare function fleetDeviceIds(count: number, prefix?: string): string[];

export interface FleetOptions {
  brokerUrl: string;
  /** Default "acme". */
  tenant?: string;
  /** Default 50, named prefix + 001…; ignored when deviceIds is given. */
  count?: number;
  /** Default "POS-". */
  prefix?: string;
  deviceIds?: readonly string[];
  /** Group name → member device ids; members subscribe to the group's command topic. */
  groups?: Readonly<Record<string, readonly string[]>>;
  /** Subscribed and receiving, but never answering. */
  silent?: readonly string[];
  /** Device id → ms by which each of its answers is delayed. */
  slow?: Readonly<Record<string, number>>;
  /** Seed of the reports. Default 1. */
  seed?: number;
  /** How long a diagnostics run takes, between `accepted` and `succeeded`. Default 0. */
  runMs?: number;
  /** Connections opened at once while starting. Default 100. */
  connectConcurrency?: number;
  /** TCP_NODELAY on each terminal's socket (Nagle's algorithm off). Default true. */
  noDelay?: boolean;
  /** Extra mqtt.js options (TLS, credentials) for every terminal. */
  mqttOptions?: IClientOptions;
}

export interface Fleet {
  readonly tenant: string;
  readonly deviceIds: readonly string[];
  groupsOf(deviceId: string): string[];
  /** The last 50 request payloads the device received (parsed JSON; an envelope as it came), silent ones too. */
  received(deviceId: string): unknown[];
  /** Requests received by all terminals together. */
  readonly requestCount: number;
  /** What the device answers to diagnostics.run (`ts` aside); an unknown check name is a fail of that name, as in the agent. */
  reportFor(deviceId: string, checks?: readonly string[]): SimulatedReport;
  /** Disconnects every terminal; pending slow answers are dropped. */
  stop(): Promise<void>;
}

/** Connects every terminal and subscribes it; resolves when all are listening. */
export declare function startFleet(options: FleetOptions): Promise<Fleet>;
