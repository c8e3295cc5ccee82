import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { TLSSocket } from "node:tls";
import { cors as connectCors } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { CallContext } from "../rpc/handlers.ts";
import { statusOf } from "../rpc/status.ts";
import { CLIENT_CERT_HEADER, clientCertificateOf, decodeClientCertificate, encodeClientCertificate } from "../auth/client-certificate.ts";
import type { ServerTls } from "../auth/server-tls.ts";
import type { ListenAddress } from "../listen-address.ts";
import type { HypervisordError } from "../errors.ts";
import { PEER_HEADER, registerConnectServices } from "./connect-routes.ts";
import { createConnectionLimits, peerOf, trackRequest, type ConnectionLimits } from "./connection-limits.ts";
import { refuseBeforeBody, stopUnreadBody } from "./early-refusal.ts";
import { DEFAULT_EDGE_OPTIONS, type EdgeOptions } from "./edge-options.ts";
import type { GrpcServiceBinding } from "./grpc-server.ts";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface HttpServerOptions {
  bindings: readonly GrpcServiceBinding[];
  logger: Logger;
  corsAllowedOrigins: readonly string[];
  /** Plain HTTP endpoints by path (e.g. /metrics, /health), served before the RPC routes. */
  routes?: Record<string, (req: NodeRequest, res: NodeResponse) => void | Promise<void>>;
  /** Static files (the web dashboard), tried after the routes and before the RPCs; returns false when it did not answer. */
  dashboard?: (req: NodeRequest, res: NodeResponse) => boolean;
  /** GET /healthz: true while serving. */
  isServing(): boolean;
  /** Serve HTTPS (HTTP/1.1 and h2 by ALPN) instead of HTTP/1.1 and h2c; with `tls.ca`, client certificates authenticate. */
  tls?: ServerTls;
  /** Connection deadlines and caps, request size (`server.*`); default DEFAULT_EDGE_OPTIONS. */
  edge?: EdgeOptions;
  /**
   * The refusal of a HypervisordService call from its headers and connection alone (AuthHook.check), asked
   * before its body is read: a caller without valid credentials cannot make the daemon read a body.
   */
  /** A promise when the answer needs the store (a key not in the auth cache). */
  authorize?: (method: string, context: CallContext) => HypervisordError | undefined | Promise<HypervisordError | undefined>;
}

const RPC_PREFIX = `/${HypervisordService.typeName}/`;
const METHODS = new Set(HypervisordService.methods.map((m) => m.name));

const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization", "X-Api-Key", "Traceparent"].join(", ");
const EXPOSED_HEADERS = [...connectCors.exposedHeaders, "Retry-After", "Grpc-Retry-Pushback-Ms"].join(", ");
const ALLOWED_METHODS = connectCors.allowedMethods.join(", ");

/**
 * One port for Connect (JSON and binary), gRPC-Web and gRPC, over HTTP/1.1 and
 * h2c: the first bytes of a connection tell them apart ("PRI" opens HTTP/2).
 * With TLS, over HTTP/1.1 and h2, told apart by ALPN.
 */
export function createHttpServer(options: HttpServerOptions) {
  const edge = options.edge ?? DEFAULT_EDGE_OPTIONS;
  const limits = createConnectionLimits(edge, "http", options.logger);
  const rpc = connectNodeAdapter({
    routes: (router) => registerConnectServices(router, options.bindings, options.logger),
    fallback: (_req, res) => notFound(res as NodeResponse),
    // Plain JSON callers see every field, zero counts and empty lists included.
    jsonOptions: { alwaysEmitImplicit: true },
    // Checked against Content-Length before reading, and against each gRPC / Connect envelope as it comes.
    readMaxBytes: edge.maxRequestBytes,
  });
  const handle = (req: NodeRequest, res: NodeResponse) => {
    trackCall(limits, req, res);
    if (!applyCors(req, res, options.corsAllowedOrigins)) return;
    const url = req.url ?? "/";
    if (url === "/healthz" || url.startsWith("/healthz?")) return healthz(req, res, options.isServing());
    const route = options.routes?.[url.split("?")[0]!];
    if (route) return void route(req, res);
    // Like the routes, outside the RPC call hooks: no API key is asked for (the page must load to ask for one).
    if (options.dashboard?.(req, res)) return;
    // connect-node shows handlers the headers only: the connection's facts travel as headers a client cannot set.
    delete req.headers[PEER_HEADER];
    req.headers[PEER_HEADER] = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    delete req.headers[CLIENT_CERT_HEADER];
    if (options.tls?.ca) setClientCertificate(req);
    const refusal = options.authorize && refusalBeforeBody(req, options.authorize);
    const decide = (refusal: unknown) => {
      if (refusal) return refuseBeforeBody(req, res, statusOf(refusal, options.logger, "authorize"));
      rpc(req, res);
    };
    // The body is not read before the store has answered (a key not in the auth cache); a store failure refuses.
    if (refusal instanceof Promise) {
      return void refusal.then(decide, decide).catch((err: unknown) => {
        options.logger.error({ err, url }, "answering a request after its credentials were checked failed");
        res.destroy();
      });
    }
    decide(refusal);
  };
  const { h2, accept } = options.tls ? secureServers(options.tls, edge, handle) : plainServers(edge, handle);
  const listener = net.createServer((socket) => {
    if (limits.admit(socket)) accept(socket);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session: http2.ServerHttp2Session) => {
    const peer = peerOf(session.socket);
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    limits.setSession(peer, session);
    // Rapid reset (CVE-2023-44487): a stream opened and reset costs us its setup for nothing. Counted at close,
    // as 'aborted' misses streams already answered; a server reset is rare, and NO_ERROR (early refusal) is not counted.
    session.on("stream", (stream: http2.ServerHttp2Stream) => stream.once("close", () => {
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) limits.streamReset(peer);
    }));
  });

  return {
    listen(address: ListenAddress): Promise<number> {
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(address.port, address.host, () => {
          listener.off("error", reject);
          resolve((listener.address() as net.AddressInfo).port);
        });
      });
    },
    /** Stops accepting, lets open requests finish for up to `timeoutMs`, then cuts what is left. */
    close(timeoutMs: number): Promise<void> {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      limits.closeIdle();
      for (const session of sessions) session.close();
      const timer = setTimeout(() => limits.destroyAll(), timeoutMs);
      return closed.finally(() => clearTimeout(timer));
    },
  };
}

type Handle = (req: NodeRequest, res: NodeResponse) => void;

/**
 * Every request is a call of its connection: the connection is busy until the response is done, and
 * the request must arrive whole within server.request_timeout. h1 is set too: it is never listen()ed.
 */
function trackCall(limits: ConnectionLimits, req: NodeRequest, res: NodeResponse): void {
  trackRequest(limits, req, res);
  if (res instanceof http2.Http2ServerResponse) stopUnreadBody(req as http2.Http2ServerRequest, res);
}

/** The refusal of an RPC of HypervisordService by its headers, before its body is read; undefined to go on. */
function refusalBeforeBody(req: NodeRequest, authorize: NonNullable<HttpServerOptions["authorize"]>): ReturnType<typeof authorize> {
  const path = (req.url ?? "").split("?")[0]!;
  if (!path.startsWith(RPC_PREFIX)) return undefined;
  const method = path.slice(RPC_PREFIX.length);
  // An unknown RPC is connect-node's to answer (not found).
  if (!METHODS.has(method)) return undefined;
  const header = (name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  return authorize(method, {
    signal: AbortSignal.abort(),
    peer: header(PEER_HEADER) ?? "",
    transport: "connect",
    header,
    clientCertificate: decodeClientCertificate(header(CLIENT_CERT_HEADER)),
  });
}

/** The HTTP/2 settings of the listener. */
function http2Settings(edge: EdgeOptions): http2.Settings {
  return { maxConcurrentStreams: edge.maxConcurrentStreams };
}

/** HTTP/1.1 and h2c on one plain TCP port, told apart by sniffing the first bytes. */
function plainServers(edge: EdgeOptions, handle: Handle) {
  const h1 = http.createServer(handle);
  // Keep-alive between requests is the connection limits' idle timeout, on both protocols.
  h1.keepAliveTimeout = edge.idleTimeoutMs;
  const h2 = http2.createServer({ settings: http2Settings(edge) }, handle);
  const accept = (socket: net.Socket) => sniff(socket, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
  return { h2, accept };
}

/** HTTPS: HTTP/1.1 and h2 by ALPN; client certificates asked for when there is a client CA. */
function secureServers(tls: ServerTls, edge: EdgeOptions, handle: Handle) {
  const h2 = http2.createSecureServer({
    allowHTTP1: true,
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    requestCert: tls.ca !== undefined,
    rejectUnauthorized: tls.requireClientCert,
    settings: http2Settings(edge),
    // The handshake is bounded by server.headers_timeout (connection limits), not by TLS's own 120 s.
  }, handle);
  // Connections are accepted by our own listener (for the limits), then handed over: TLS starts there.
  return { h2, accept: (socket: net.Socket) => void h2.emit("connection", socket) };
}

/** A verified client certificate, as an internal header for connect-routes' CallContext. */
function setClientCertificate(req: NodeRequest): void {
  const socket = req.socket as TLSSocket;
  if (!socket.authorized) return;
  const certificate = clientCertificateOf(socket.getPeerCertificate());
  if (certificate) req.headers[CLIENT_CERT_HEADER] = encodeClientCertificate(certificate);
}

/** Reads until the first three bytes are known, puts them back, and says whether they open HTTP/2. */
function sniff(socket: net.Socket, dispatch: (isHttp2: boolean) => void): void {
  const chunks: Buffer[] = [];
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    const head = Buffer.concat(chunks);
    if (head.length < 3 && head.toString("latin1") === "PRI".slice(0, head.length)) return;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(head);
    const isHttp2 = head.subarray(0, 3).toString("latin1") === "PRI";
    dispatch(isHttp2);
    // The HTTP/2 session reads the socket itself; resuming it here would race it for the bytes put back.
    if (!isHttp2) socket.resume();
  };
  socket.on("data", onData);
}

/** Answers a preflight itself; returns false when the request needs nothing more. */
function applyCors(req: NodeRequest, res: NodeResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  const ok = allowed.includes("*") || allowed.includes(origin);
  if (ok) {
    res.setHeader("Access-Control-Allow-Origin", origin);
    res.setHeader("Vary", "Origin");
    res.setHeader("Access-Control-Expose-Headers", EXPOSED_HEADERS);
  }
  if (req.method !== "OPTIONS") return true;
  if (!ok) {
    res.writeHead(403, { "content-type": "text/plain" });
    res.end(`origin ${origin} is not in cors_allowed_origins\n`);
    return false;
  }
  res.writeHead(204, {
    "Access-Control-Allow-Methods": ALLOWED_METHODS,
    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
    "Access-Control-Max-Age": "7200",
  });
  res.end();
  return false;
}

function healthz(req: NodeRequest, res: NodeResponse, serving: boolean): void {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD" });
    res.end();
    return;
  }
  res.writeHead(serving ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(req.method === "HEAD" ? "" : JSON.stringify({ status: serving ? "SERVING" : "NOT_SERVING" }));
}

function notFound(res: NodeResponse): void {
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: "not_found", message: "no such route; RPCs are served at /hypervisord.v1.HypervisordService/<Method>" }));
}
