import {
  HOST_READER_NAMES,
  type HostReaderName,
  type HostReaders,
} from "../../src/metrics/host/host-readers.js";

export type FakeHostReaders = HostReaders & {
  /** Calls per method so far, including those that threw. */
  readonly calls: Record<HostReaderName, number>;
};

/**
 * Host readers the test scripts method by method. Methods it does not give throw (a strict fake), so a
 * host source that starts depending on another sensor shows up in the test, as a missing metric and a
 * logged failure, instead of reading a silent default.
 */
export function createFakeHostReaders(
  impl: Partial<Omit<HostReaders, "slow">> = {},
  options: { slow?: readonly HostReaderName[] } = {},
): FakeHostReaders {
  const calls = Object.fromEntries(HOST_READER_NAMES.map((name) => [name, 0])) as Record<
    HostReaderName,
    number
  >;
  function method<K extends HostReaderName>(name: K): HostReaders[K] {
    const given = impl[name];
    return (() => {
      calls[name] += 1;
      if (given === undefined) throw new Error(`fake host readers: ${name}() is not implemented`);
      return (given as () => ReturnType<HostReaders[K]>)();
    }) as unknown as HostReaders[K];
  }
  return {
    cpu: method("cpu"),
    memory: method("memory"),
    filesystems: method("filesystems"),
    battery: method("battery"),
    temperature: method("temperature"),
    network: method("network"),
    uptimeSec: method("uptimeSec"),
    ...(options.slow === undefined ? {} : { slow: options.slow }),
    calls,
  };
}
