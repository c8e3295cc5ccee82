import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { TLSSocket } from "node:tls";
import { cors as connectCors } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { CLIENT_CERT_HEADER, clientCertificateOf, encodeClientCertificate } from "../auth/client-certificate.ts";
import type { ServerTls } from "../auth/server-tls.ts";
import type { ListenAddress } from "../config/parse-value.ts";
import { PEER_HEADER, registerConnectServices } from "./connect-routes.ts";
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
}

const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization", "X-Api-Key", "Traceparent"].join(", ");
const EXPOSED_HEADERS = [...connectCors.exposedHeaders, "Retry-After", "Grpc-Retry-Pushback-Ms"].join(", ");
const ALLOWED_METHODS = connectCors.allowedMethods.join(", ");

/**
 * One port for Connect (JSON and binary), gRPC-Web and gRPC, over HTTP/1.1 and
 * h2c: the first bytes of a connection tell them apart ("PRI" opens HTTP/2).
 * With TLS, over HTTP/1.1 and h2, told apart by ALPN.
 */
export function createHttpServer(options: HttpServerOptions) {
  const rpc = connectNodeAdapter({
    routes: (router) => registerConnectServices(router, options.bindings, options.logger),
    fallback: (_req, res) => notFound(res as NodeResponse),
    // Plain JSON callers see every field, zero counts and empty lists included.
    jsonOptions: { alwaysEmitImplicit: true },
  });
  const handle = (req: NodeRequest, res: NodeResponse) => {
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
    rpc(req, res);
  };
  const { listener, h2, closeIdle } = options.tls ? secureListener(options.tls, handle) : plainListener(handle);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  listener.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
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
      closeIdle();
      for (const session of sessions) session.close();
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, timeoutMs);
      return closed.finally(() => clearTimeout(timer));
    },
  };
}

type Handle = (req: NodeRequest, res: NodeResponse) => void;

/** HTTP/1.1 and h2c on one plain TCP port, told apart by sniffing the first bytes. */
function plainListener(handle: Handle) {
  const h1 = http.createServer(handle);
  const h2 = http2.createServer({}, handle);
  const listener = net.createServer((socket) => sniff(socket, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket)));
  return { listener, h2, closeIdle: () => h1.closeIdleConnections() };
}

/** HTTPS: HTTP/1.1 and h2 by ALPN; client certificates asked for when there is a client CA. */
function secureListener(tls: ServerTls, handle: Handle) {
  const listener = http2.createSecureServer({
    allowHTTP1: true,
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    requestCert: tls.ca !== undefined,
    rejectUnauthorized: tls.requireClientCert,
  }, handle);
  // Http2SecureServer.close() closes idle HTTP/1.1 connections itself (allowHTTP1).
  return { listener, h2: listener, closeIdle: () => {} };
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
  socket.once("error", () => socket.destroy());
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
