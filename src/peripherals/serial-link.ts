import type { Backoff } from "../shared/backoff.js";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import {
  describeMatch,
  findPort,
  type PortLister,
  type SerialConnection,
  type SerialOpener,
  type SerialOpenOptions,
  type UsbMatch,
} from "./serial-port.js";

export type LinkStatus = "connecting" | "online" | "offline";

export interface LinkState {
  status: LinkStatus;
  /** The device path in use, or last used. */
  path: string | undefined;
  /** Why the link is not online (missing device, open failure, unplugged). */
  error: string | undefined;
  since: number;
}

export type LinkTarget = { path: string } | { match: UsbMatch };

export interface SerialLinkOptions {
  target: LinkTarget;
  framing: Omit<SerialOpenOptions, "path">;
  opener: SerialOpener;
  lister: PortLister;
  backoff: Backoff;
  now(): number;
  log: Logger;
  /** The port opened; the driver may write from now until `detached`. */
  attached(connection: SerialConnection): void;
  data(chunk: Buffer): void;
  /** The port closed (unplugged, failed, or stopped). */
  detached(): void;
  state(next: LinkState, previous: LinkState): void;
}

/** An open that lasted this long was a good one: the next reconnect starts from the shortest wait. */
const STABLE_OPEN_MS = 10_000;
const STOP_WAIT_MS = 2000;

/**
 * Keeps one serial port open for as long as the agent runs: opens it, and whenever it closes (unplug,
 * I/O error) or cannot be opened, tries again with backoff. A USB match is resolved again before every
 * attempt, so a device that re-enumerates under a new path (ttyUSB0 → ttyUSB1) is found there.
 */
export function createSerialLink(options: SerialLinkOptions) {
  const { log } = options;
  let state: LinkState = {
    status: "connecting",
    path: pathOf(options.target),
    error: undefined,
    since: options.now(),
  };
  let stopped = false;
  let connection: SerialConnection | undefined;
  let wake: (() => void) | undefined;
  let loop: Promise<void> | undefined;

  /**
   * The callbacks run inside serialport's emitter or this loop; a throw from one (a driver, a
   * publish) must neither crash the daemon nor stop the link, so each is guarded here.
   */
  function guarded(what: string, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      log.error({ err: error }, `peripheral ${what} handler failed`);
    }
  }

  function setState(status: LinkStatus, path: string | undefined, error: string | undefined): void {
    const previous = state;
    if (previous.status === status && previous.path === path && previous.error === error) return;
    state = {
      status,
      path,
      error,
      since: previous.status === status ? previous.since : options.now(),
    };
    const next = state;
    guarded("state", () => options.state(next, previous));
  }

  async function resolvePath(): Promise<string | { error: string }> {
    const { target } = options;
    if ("path" in target) return target.path;
    const port = findPort(await options.lister.list(), target.match);
    return port?.path ?? { error: `no ${describeMatch(target.match)} plugged in` };
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function openOnce(): Promise<void> {
    const resolved = await resolvePath();
    if (typeof resolved !== "string") {
      setState("offline", state.path, resolved.error);
      return;
    }
    let closedWith: (error: Error | undefined) => void = () => {};
    const closed = new Promise<Error | undefined>((resolve) => {
      closedWith = resolve;
    });
    let opened: SerialConnection;
    try {
      opened = await options.opener.open(
        { path: resolved, ...options.framing },
        {
          data: (chunk) => guarded("data", () => options.data(chunk)),
          closed: (error) => closedWith(error),
        },
      );
    } catch (error) {
      setState("offline", resolved, errorMessage(error));
      return;
    }
    if (stopped) {
      await opened.close();
      return;
    }
    connection = opened;
    const openedAt = performance.now();
    if (state.path !== undefined && state.path !== resolved && state.status !== "connecting") {
      log.info({ from: state.path, to: resolved }, "device re-enumerated under a new path");
    }
    setState("online", resolved, undefined);
    guarded("attach", () => options.attached(opened));
    // A device node that disappears closes the port too: the opener watches it (node-serialport.ts).
    const error = await closed;
    connection = undefined;
    guarded("detach", () => options.detached());
    if (performance.now() - openedAt >= STABLE_OPEN_MS) options.backoff.reset();
    if (!stopped) setState("offline", resolved, errorMessage(error ?? new Error("closed")));
  }

  async function run(): Promise<void> {
    while (!stopped) {
      try {
        await openOnce();
      } catch (error) {
        // The lister or a driver callback failed; the link must keep trying regardless.
        log.error({ err: error }, "serial link attempt failed");
        setState("offline", state.path, errorMessage(error));
      }
      if (stopped) break;
      const delay = options.backoff.next();
      log.debug({ delayMs: delay, error: state.error }, "reopening the port after a wait");
      await sleep(delay);
    }
  }

  return {
    get state(): LinkState {
      return state;
    },

    start(): void {
      loop ??= run().catch((error: unknown) => {
        log.error({ err: error }, "serial link loop failed; the port is no longer watched");
      });
    },

    /** Closes the port; gives up waiting after STOP_WAIT_MS so a wedged device cannot hold up SIGTERM. */
    async stop(): Promise<void> {
      stopped = true;
      wake?.();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.warn({ path: state.path }, "the port did not close in time; stopping without it");
          resolve();
        }, STOP_WAIT_MS);
      });
      await Promise.race([
        (async () => {
          await connection?.close();
          await loop;
        })(),
        timeout,
      ]);
      clearTimeout(timer);
    },
  };
}
export type SerialLink = ReturnType<typeof createSerialLink>;

function pathOf(target: LinkTarget): string | undefined {
  return "path" in target ? target.path : undefined;
}
