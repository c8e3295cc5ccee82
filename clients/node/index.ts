/**
 * Node.js client of hypervisord. The URL picks the protocol:
 *   http://host:port, https://host:port   Connect (binary) over HTTP/1.1, or HTTP/2 with httpVersion "2"
 *   grpc://host:port, grpcs://host:port   gRPC over HTTP/2 (h2c, or TLS for grpcs)
 *   host:port                             as http://host:port
 * Both are connect-node transports, so one typed client serves both listeners.
 */
import http from "node:http";
import https from "node:https";
import type { SecureClientSessionOptions } from "node:http2";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { standardInterceptors, wrapTransport, type BaseClientOptions, type HypervisordClient } from "../core/hypervisord-client.ts";

export interface TlsOptions {
  /** PEM CA bundle that signed the daemon's certificate (default: the system's CAs). */
  ca?: Buffer | string;
  /** PEM client certificate and key, for a daemon that authenticates clients by certificate (mTLS). */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** Skip verifying the daemon's certificate. For tests only. */
  insecure?: boolean;
}

export interface NodeClientOptions extends BaseClientOptions {
  /** For https:// and grpcs:// URLs. */
  tls?: TlsOptions;
  /** HTTP version for http(s):// URLs. Default "1.1"; gRPC always uses HTTP/2. */
  httpVersion?: "1.1" | "2";
}

export interface ServerTarget {
  protocol: "connect" | "grpc";
  /** http(s)://host:port[/path] as the transport wants it. */
  baseUrl: string;
  secure: boolean;
}

/** Reads a daemon URL; throws a TypeError naming the accepted forms for anything else. */
export function parseServerUrl(url: string): ServerTarget {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    throw new TypeError(`invalid hypervisord URL "${url}": expected http(s)://host:port or grpc(s)://host:port`);
  }
  const scheme = parsed.protocol.slice(0, -1);
  if (!["http", "https", "grpc", "grpcs"].includes(scheme)) {
    throw new TypeError(`unsupported scheme "${scheme}" in "${url}": use http, https (Connect) or grpc, grpcs (gRPC)`);
  }
  const secure = scheme === "https" || scheme === "grpcs";
  const path = parsed.pathname === "/" ? "" : parsed.pathname.replace(/\/$/, "");
  return {
    protocol: scheme.startsWith("grpc") ? "grpc" : "connect",
    baseUrl: `${secure ? "https" : "http"}://${parsed.host}${path}`,
    secure,
  };
}

/** A client of HypervisordService for Node.js; call close() when done so that the process can exit. */
export function createHypervisordClient(options: NodeClientOptions): HypervisordClient {
  const target = parseServerUrl(options.url);
  const interceptors = standardInterceptors(options);
  const tls = target.secure ? tlsNodeOptions(options.tls ?? {}) : {};
  let transport: Transport;
  let close: () => void;
  if (target.protocol === "connect" && (options.httpVersion ?? "1.1") === "1.1") {
    const agent = target.secure ? new https.Agent({ keepAlive: true, ...tls }) : new http.Agent({ keepAlive: true });
    transport = createConnectTransport({ baseUrl: target.baseUrl, httpVersion: "1.1", nodeOptions: { agent }, interceptors });
    close = () => agent.destroy();
  } else {
    // One HTTP/2 connection for every call; we own the manager so that close() can end it.
    const sessionManager = new Http2SessionManager(target.baseUrl, {}, tls);
    transport = target.protocol === "grpc"
      ? createGrpcTransport({ baseUrl: target.baseUrl, sessionManager, interceptors })
      : createConnectTransport({ baseUrl: target.baseUrl, httpVersion: "2", sessionManager, interceptors });
    close = () => sessionManager.abort();
  }
  return wrapTransport(transport, options, close);
}

function tlsNodeOptions(tls: TlsOptions): SecureClientSessionOptions {
  return {
    ...(tls.ca !== undefined && { ca: tls.ca }),
    ...(tls.cert !== undefined && { cert: tls.cert }),
    ...(tls.key !== undefined && { key: tls.key }),
    rejectUnauthorized: !tls.insecure,
  };
}

export * from "../core/client-api.ts";
