import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { Logger } from "pino";
import { createTokenBuckets } from "../ratelimit/token-buckets.ts";

/** Limits on the TCP connections of one listener (both listeners get their own, from the `server.*` settings). */
export interface ConnectionLimitOptions {
  /** Connections held at once; at the cap the one idle the longest is closed for a new one. */
  maxConnections: number;
  /** A connection that has sent nothing this long after it was accepted is closed. */
  firstBytesTimeoutMs: number;
  /** A connection whose first call has not started (TLS handshake, HTTP/2 preface and request headers) this long after it was accepted is closed. */
  headersTimeoutMs: number;
  /** A connection with no call in flight is closed after this long. */
  idleTimeoutMs: number;
  /** A call whose request has not been received whole this long after its headers closes its connection (slow bodies). */
  requestTimeoutMs: number;
  /** Probes after this long without traffic find peers that went away under a live stream: TCP keep-alive, and HTTP/2 PING on the gRPC listener. */
  keepaliveTimeMs: number;
  /** A PING not answered this long closes the connection (gRPC listener). */
  keepaliveTimeoutMs: number;
  /** Stream resets (RST_STREAM by the client) per connection: `burst` at once, refilled at `perSecond`. */
  streamResets: { burst: number; perSecond: number };
}

/** A call on a tracked connection: `received` once its request is whole, `ended` once it is over. */
export interface TrackedCall {
  received(): void;
  ended(): void;
}

export interface ConnectionLimits {
  /** Takes a new connection in: closes the longest-idle one at the cap, or this one when every connection is busy. False when refused. */
  admit(socket: net.Socket): boolean;
  /**
   * The HTTP/2 session of the connection of `peer`, when the listener sees it: an idle one is then closed
   * with GOAWAY (NO_ERROR), and one over its reset allowance with GOAWAY (ENHANCE_YOUR_CALM), rather than cut.
   * `peer` is "<remoteAddress>:<remotePort>", as every socket of the connection (TCP, TLS, HTTP/2) reports it.
   */
  setSession(peer: string, session: http2.Http2Session): void;
  /** A call started on the connection of `peer`; undefined when that connection is not tracked (closed meanwhile). */
  callStarted(peer: string): TrackedCall | undefined;
  /** The client reset a stream; over the allowance the connection is closed, and true returned. */
  streamReset(peer: string): boolean;
  /** Closes every connection that has no call in flight (the start of a graceful close). */
  closeIdle(): void;
  /** Destroys every connection (the end of a graceful close). */
  destroyAll(): void;
}

type Phase = "new" | "started" | "busy" | "idle";

interface Connection {
  readonly socket: net.Socket;
  readonly peer: string;
  readonly accepted: number;
  phase: Phase;
  calls: number;
  timer?: NodeJS.Timeout;
  session?: http2.Http2Session;
}

/** An HTTP request as a call of its connection: busy until the response is done; the request due whole within server.request_timeout. */
export function trackRequest(
  limits: ConnectionLimits,
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
): void {
  const call = limits.callStarted(peerOf(req.socket));
  if (!call) return;
  if (req.complete) call.received();
  else (req as http.IncomingMessage).once("end", call.received);
  (res as http.ServerResponse).once("close", call.ended);
}

/** A peer key as both transports give it: IPv6 without brackets, as socket.remoteAddress is. */
export function peerOf(socket: Pick<net.Socket, "remoteAddress" | "remotePort">): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

/** An HTTP/2 session closed with GOAWAY gets this long to go before its socket is cut. */
const GOAWAY_GRACE_MS = 1000;
/** At most one warning per listener this often: a flood must not become a flood of log lines. */
const WARN_INTERVAL_MS = 10_000;

/**
 * Deadlines and a cap for the connections of one listener, before and between calls. A connection
 * moves new -> started (first bytes seen) -> busy (a call in flight) <-> idle, and each phase but busy has
 * a deadline after which it is closed: first bytes, first call, idle. Calls in flight are never cut
 * (a StreamJobUpdates may last for days), except a request that is not received whole in time.
 * Connections idle (or not yet busy) are kept in the order they became so: at the cap, the one idle
 * the longest goes first.
 */
export function createConnectionLimits(options: ConnectionLimitOptions, listener: string, logger: Logger): ConnectionLimits {
  const connections = new Map<net.Socket, Connection>();
  const byPeer = new Map<string, Connection>();
  // Insertion order is the order they became idle: the first is the one idle the longest.
  const idle = new Set<Connection>();
  // Refilled buckets are dropped as others are used; a few per connection at most are ever kept.
  const resets = createTokenBuckets(4 * options.maxConnections);
  const resetSpec = { burst: options.streamResets.burst, perMs: options.streamResets.perSecond / 1000 };
  const warned = new Map<string, number>();

  const warn = (what: string, fields: Record<string, unknown>) => {
    const now = Date.now();
    if (now - (warned.get(what) ?? -Infinity) < WARN_INTERVAL_MS) return;
    warned.set(what, now);
    logger.warn({ listener, ...fields }, what);
  };

  const schedule = (connection: Connection, ms: number, onExpiry: () => void) => {
    clearTimeout(connection.timer);
    connection.timer = setTimeout(onExpiry, Math.max(0, ms));
    connection.timer.unref();
  };

  const closeIdle = (connection: Connection) => {
    const { session, socket } = connection;
    if (!session || session.destroyed) return void socket.destroy();
    session.close();
    setTimeout(() => socket.destroy(), GOAWAY_GRACE_MS).unref();
  };

  const becomeIdle = (connection: Connection) => {
    connection.phase = "idle";
    idle.add(connection);
    schedule(connection, options.idleTimeoutMs, () => closeIdle(connection));
  };

  // Before the first call: the first-bytes deadline, then the first-call one, both counted from accept.
  const awaitFirstCall = (connection: Connection) => {
    const firstBytesLeft = connection.accepted + options.firstBytesTimeoutMs - Date.now();
    if (connection.phase === "new" && connection.socket.bytesRead === 0 && firstBytesLeft > 0) {
      schedule(connection, firstBytesLeft, () => awaitFirstCall(connection));
      return;
    }
    if (connection.socket.bytesRead === 0) return void connection.socket.destroy();
    connection.phase = "started";
    schedule(connection, connection.accepted + options.headersTimeoutMs - Date.now(), () => connection.socket.destroy());
  };

  const forget = (connection: Connection) => {
    clearTimeout(connection.timer);
    connections.delete(connection.socket);
    if (byPeer.get(connection.peer) === connection) byPeer.delete(connection.peer);
    idle.delete(connection);
  };

  return {
    admit(socket) {
      if (connections.size >= options.maxConnections) {
        const oldest = idle.values().next().value;
        if (!oldest) {
          warn("connection refused: every connection is busy (server.max_connections)", { max_connections: options.maxConnections });
          socket.destroy();
          return false;
        }
        warn("connection cap reached: closing the connections idle the longest (server.max_connections)", { max_connections: options.maxConnections });
        forget(oldest);
        oldest.socket.destroy();
      }
      const connection: Connection = { socket, peer: peerOf(socket), accepted: Date.now(), phase: "new", calls: 0 };
      connections.set(socket, connection);
      // A peer that resets the connection is no failure of ours: the socket closes, and whoever reads it is told so.
      socket.on("error", () => socket.destroy());
      byPeer.set(connection.peer, connection);
      // Not yet busy counts as idle: a connection that never calls is the first to go at the cap.
      idle.add(connection);
      socket.setKeepAlive(true, options.keepaliveTimeMs);
      socket.once("close", () => forget(connection));
      awaitFirstCall(connection);
      return true;
    },
    setSession(peer, session) {
      const connection = byPeer.get(peer);
      if (connection) connection.session = session;
    },
    callStarted(peer) {
      const connection = byPeer.get(peer);
      if (!connection) return undefined;
      connection.calls++;
      connection.phase = "busy";
      idle.delete(connection);
      clearTimeout(connection.timer);
      const deadline = setTimeout(() => {
        warn("connection closed: a request was not received whole in time (server.request_timeout)", { peer });
        connection.socket.destroy();
      }, options.requestTimeoutMs);
      deadline.unref();
      let done = false;
      return {
        received: () => clearTimeout(deadline),
        ended() {
          clearTimeout(deadline);
          if (done) return;
          done = true;
          connection.calls--;
          if (connection.calls === 0 && connections.has(connection.socket)) becomeIdle(connection);
        },
      };
    },
    streamReset(peer) {
      const connection = byPeer.get(peer);
      if (!connection) return false;
      if (resets.take(peer, resetSpec, performance.now()) === 0) return false;
      warn("connection closed: too many stream resets (server.stream_reset_burst, server.stream_reset_rate)", { peer });
      const { session, socket } = connection;
      // With an error: destroy(undefined, code) would send NO_ERROR (the first argument defaults to NO_ERROR).
      if (session && !session.destroyed) session.destroy(new Error("too many stream resets"), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      else socket.destroy();
      return true;
    },
    closeIdle() {
      for (const connection of [...idle]) closeIdle(connection);
    },
    destroyAll() {
      for (const socket of connections.keys()) socket.destroy();
    },
  };
}
