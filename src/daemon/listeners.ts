import type { Logger } from "pino";
import type { ServerTls } from "../auth/server-tls.ts";
import type { DaemonConfig } from "../config/load-config.ts";
import { formatAddress } from "../listen-address.ts";
import type { Metrics } from "../metrics/metrics.ts";
import { startMetricsServer } from "../metrics/metrics-server.ts";
import { createDashboardHandler } from "../server/dashboard.ts";
import { createGrpcServer } from "../server/grpc-server.ts";
import { createHttpServer } from "../server/http-server.ts";
import type { CallStack } from "./call-stack.ts";
import type { Releasers } from "./core.ts";

/** Listener close: open calls get this long after the engine has stopped. */
const CLOSE_TIMEOUT_MS = 1500;

export interface Listeners {
  grpcAddress: string;
  httpAddress: string;
  /** Where the dashboard is served, when it is built and enabled. */
  dashboardUrl?: string;
}

/** The metrics listener (when configured), the gRPC listener and the HTTP listener, each closed by a releaser. */
export async function startListeners(
  config: DaemonConfig, stack: CallStack, metrics: Metrics, tls: ServerTls | undefined, logger: Logger, releasers: Releasers,
): Promise<Listeners> {
  if (config.metricsListen) {
    const metricsServer = await startMetricsServer(config.metricsListen, metrics, logger.child({ component: "metrics" }), config.server);
    releasers.add(() => metricsServer.close());
  }
  const { bindings, authorize } = stack;
  const grpcServer = createGrpcServer(bindings, logger, tls, { edge: config.server, authorize });
  const grpcPort = await grpcServer.listen(config.grpcListen);
  releasers.add(() => grpcServer.close(CLOSE_TIMEOUT_MS));
  const dashboard = config.dashboard.enabled ? createDashboardHandler({ dir: config.dashboard.dir, logger: logger.child({ component: "dashboard" }) }) : undefined;
  const httpServer = createHttpServer({
    bindings, logger, corsAllowedOrigins: config.corsAllowedOrigins, isServing: stack.health.isServing, tls, dashboard,
    edge: config.server, authorize,
    routes: { "/metrics": metrics.httpRoute, "/health": stack.healthCheck.httpRoute },
  });
  const httpPort = await httpServer.listen(config.httpListen);
  releasers.add(() => httpServer.close(CLOSE_TIMEOUT_MS));
  const httpAddress = formatAddress({ host: config.httpListen.host, port: httpPort });
  return {
    grpcAddress: formatAddress({ host: config.grpcListen.host, port: grpcPort }),
    httpAddress,
    dashboardUrl: dashboard?.built ? `${tls ? "https" : "http"}://${httpAddress}/` : undefined,
  };
}
