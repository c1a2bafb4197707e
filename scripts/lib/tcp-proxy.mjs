// A TCP forwarder that tests put between a client and a broker to drop, refuse and stall the link.
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

const HOST = "127.0.0.1";
const REBIND_WINDOW_MS = 5_000;

/**
 * Abort a socket with a TCP RST (what a peer sees when a NAT or a link drops it and
 * traffic resumes), falling back to a plain destroy when RST is no longer possible.
 * @param {import("node:net").Socket} socket
 */
function abort(socket) {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * @typedef {object} StartTcpProxyOptions
 * @property {string} [targetHost] default 127.0.0.1
 * @property {number} targetPort
 * @property {number} [port] listen port on 127.0.0.1; default: a free one
 */

/**
 * @typedef {object} TcpProxy
 * @property {number} port
 * @property {number} connections open client/upstream pairs
 * @property {() => void} cut reset every open pair at once; keep listening
 * @property {() => Promise<void>} down cut and stop listening: connects are refused
 * @property {() => Promise<void>} up listen again on the same port
 * @property {() => void} stall stop forwarding bytes (both ways, all pairs) without closing anything
 * @property {() => void} resume undo stall
 * @property {(port: number, host?: string) => void} setTarget where new connections go
 * @property {() => Promise<void>} close
 */

/**
 * Start a proxy on 127.0.0.1 that forwards every connection to the target.
 * @param {StartTcpProxyOptions} options
 * @returns {Promise<TcpProxy>}
 */
export async function startTcpProxy(options) {
  let targetHost = options.targetHost ?? HOST;
  let targetPort = options.targetPort;
  let stalled = false;
  let closed = false;
  /** @type {Set<{ client: import("node:net").Socket, upstream: import("node:net").Socket }>} */
  const pairs = new Set();

  /**
   * Forward src → dst with the streams' own backpressure; no buffering of our own.
   * @param {import("node:net").Socket} src
   * @param {import("node:net").Socket} dst
   */
  const forward = (src, dst) => {
    src.on("data", (chunk) => {
      if (!dst.write(chunk)) src.pause();
    });
    dst.on("drain", () => {
      if (!stalled) src.resume();
    });
    // A clean FIN travels on as a FIN, after the bytes before it.
    src.on("end", () => dst.end());
  };

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ host: targetHost, port: targetPort, allowHalfOpen: true });
    const pair = { client, upstream };
    pairs.add(pair);
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      // Errors on either side destroy the pair.
      socket.on("error", () => {
        abort(client);
        abort(upstream);
      });
      socket.on("close", () => {
        if (client.destroyed && upstream.destroyed) pairs.delete(pair);
      });
      if (stalled) socket.pause();
    }
    // Once both directions have ended, nothing is left to forward.
    let ended = 0;
    const onFinish = () => {
      ended += 1;
      if (ended === 2) {
        client.destroy();
        upstream.destroy();
      }
    };
    client.on("finish", onFinish);
    upstream.on("finish", onFinish);
    forward(client, upstream);
    forward(upstream, client);
  });

  /** @param {number} port */
  const listenOnce = (port) =>
    new Promise((resolve, reject) => {
      const onError = (/** @type {Error} */ err) => reject(err);
      server.once("error", onError);
      server.listen({ host: HOST, port }, () => {
        server.off("error", onError);
        resolve(undefined);
      });
    });

  /** @param {number} port */
  const listen = async (port) => {
    const deadline = Date.now() + REBIND_WINDOW_MS;
    for (;;) {
      try {
        await listenOnce(port);
        return;
      } catch (err) {
        const code = /** @type {NodeJS.ErrnoException} */ (err).code;
        if (code !== "EADDRINUSE" || Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  };

  const cut = () => {
    for (const { client, upstream } of pairs) {
      abort(client);
      abort(upstream);
    }
  };

  const stopListening = () =>
    new Promise((resolve) => {
      if (!server.listening) {
        resolve(undefined);
        return;
      }
      server.close(() => resolve(undefined));
    });

  await listen(options.port ?? 0);
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("tcp proxy: no port");
  const port = address.port;

  /** @type {TcpProxy} */
  const proxy = {
    port,
    get connections() {
      return pairs.size;
    },
    cut,
    down: async () => {
      cut();
      await stopListening();
    },
    up: async () => {
      if (closed) throw new Error("tcp proxy: up() after close()");
      if (!server.listening) await listen(port);
    },
    stall: () => {
      stalled = true;
      for (const { client, upstream } of pairs) {
        client.pause();
        upstream.pause();
      }
    },
    resume: () => {
      stalled = false;
      for (const { client, upstream } of pairs) {
        client.resume();
        upstream.resume();
      }
    },
    setTarget: (newPort, newHost) => {
      targetPort = newPort;
      if (newHost !== undefined) targetHost = newHost;
    },
    close: async () => {
      closed = true;
      cut();
      await stopListening();
    },
  };
  return proxy;
}
