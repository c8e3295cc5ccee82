import http from "node:http";
import type net from "node:net";
import type { Logger } from "pino";
import type { ListenAddress } from "../listen-address.ts";
import { createConnectionLimits, trackRequest } from "../server/connection-limits.ts";
import { DEFAULT_EDGE_OPTIONS, type EdgeOptions } from "../server/edge-options.ts";
import type { Metrics } from "./metrics.ts";

export interface MetricsServer {
  readonly port: number;
  /** Stops accepting and closes every connection (a scrape cut short is retried by Prometheus). */
  close(): Promise<void>;
}

/**
 * A listener of its own for GET /metrics (e.g. on an internal interface), 404 for anything else; with the
 * same connection deadlines and cap as the other listeners (server.*).
 */
export function startMetricsServer(
  address: ListenAddress, metrics: Pick<Metrics, "httpRoute">, logger: Logger, edge: EdgeOptions = DEFAULT_EDGE_OPTIONS,
): Promise<MetricsServer> {
  const limits = createConnectionLimits(edge, "metrics", logger);
  const server = http.createServer((req, res) => {
    trackRequest(limits, req, res);
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") return void metrics.httpRoute(req, res);
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("not found; metrics are at /metrics\n");
  });
  server.on("connection", (socket: net.Socket) => void limits.admit(socket));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => new Promise<void>((done, fail) => {
          server.close((err) => (err ? fail(err) : done()));
          server.closeAllConnections();
        }),
      });
    });
  });
}
