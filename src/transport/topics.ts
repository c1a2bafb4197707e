/** Topic names of CONTRACT section 3, in one place. */
export interface Topics {
  root: string;
  state: string;
  telemetry: string;
  events: string;
  logs: string;
  cmdReq: string;
  cmdRes: string;
  updateState: string;
  peripheralState(name: string): string;
  groupCmdReq(group: string): string;
}

export function createTopics(tenant: string, deviceId: string): Topics {
  const root = `pos/v1/${tenant}/${deviceId}`;
  return {
    root,
    state: `${root}/state`,
    telemetry: `${root}/telemetry`,
    events: `${root}/events`,
    logs: `${root}/logs`,
    cmdReq: `${root}/cmd/req`,
    cmdRes: `${root}/cmd/res`,
    updateState: `${root}/update/state`,
    peripheralState: (name) => `${root}/periph/${name}/state`,
    groupCmdReq: (group) => `pos/v1/${tenant}/groups/${group}/cmd/req`,
  };
}
