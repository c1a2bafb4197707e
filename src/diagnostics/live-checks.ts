import type { Config } from "../config/schema.js";
import type { FilesystemSample, MemorySample } from "../metrics/host/host-readers.js";
import type { PeripheralState } from "../peripherals/peripherals.js";
import type { OutboxStats } from "../store/outbox.js";
import type { DiagnosticCheck } from "./check.js";
import {
  brokerCheck,
  certificatesCheck,
  clockCheck,
  componentsCheck,
  databaseCheck,
  diskCheck,
  memoryCheck,
  outboxCheck,
  peripheralsCheck,
} from "./checks.js";
import { certificateFiles } from "./local-checks.js";

/** What the running agent can ask directly; the agent passes live functions. */
export interface LiveDiagnosticsDeps {
  config: Config;
  quickCheck(): string;
  outboxStats(): OutboxStats;
  filesystems(): Promise<FilesystemSample[]>;
  memory(): Promise<MemorySample | undefined>;
  clock(): { trusted: boolean; reason?: string };
  /** PUBACK time of one QoS 1 publish on our own root, ms; undefined when not connected. */
  brokerRoundTrip(signal: AbortSignal): Promise<number | undefined>;
  peripherals(): PeripheralState[];
  now(): number;
}

/** The suite `diagnostics.run` runs inside the agent: the same checks as `pos-agent diag`, but live. */
export function createLiveChecks(deps: LiveDiagnosticsDeps): DiagnosticCheck[] {
  const { config } = deps;
  return [
    databaseCheck({ quickCheck: deps.quickCheck }),
    outboxCheck({ stats: deps.outboxStats, maxBytes: config.outbox.maxBytes, now: deps.now }),
    diskCheck({ filesystems: deps.filesystems }),
    memoryCheck({ memory: deps.memory }),
    clockCheck({ trusted: deps.clock }),
    brokerCheck({ roundTrip: deps.brokerRoundTrip }),
    peripheralsCheck({ states: deps.peripherals }),
    certificatesCheck({ files: certificateFiles(config), now: deps.now }),
    componentsCheck({
      components: Object.fromEntries(Object.keys(config.components).map((name) => [name, {}])),
    }),
  ];
}
