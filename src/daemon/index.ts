import { isFinal } from "../domain/job.ts";
import type { Logger } from "pino";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { loadServerTls } from "../auth/server-tls.ts";
import type { DaemonConfig } from "../config/load-config.ts";
import type { Engine } from "../engine/engine.ts";
import type { DaemonTools, Provider } from "../providers/provider.ts";
import { createReleasers } from "../releasers.ts";
import { VERSION } from "../version.ts";
import { createCallStack } from "./call-stack.ts";
import { openCore } from "./core.ts";
import { startListeners } from "./listeners.ts";

export interface Daemon {
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly engine: Engine;
  /** Graceful stop: no new work, running jobs checkpoint, listeners and the database close. */
  stop(): Promise<void>;
}

export interface DaemonOptions {
  config: DaemonConfig;
  /** Builds the providers with what the daemon shares among them (the qemu-img converter). */
  providers(tools: DaemonTools): readonly Provider[];
  logger: Logger;
  /** Where job log records are copied for the daemon log (its destination). */
  logForward?: { write(line: string): unknown };
}

/** The daemon: its core, the call stack over it and the listeners, released in reverse order of acquisition. */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config, logger } = options;
  const startTime = Date.now();
  const releasers = createReleasers();
  try {
    // Read first: a bad certificate or key stops the start before anything is opened.
    const tls = loadServerTls(config.tls);
    const core = await openCore(options, releasers);
    const stack = await createCallStack(core, config, logger, releasers, startTime);
    const listeners = await startListeners(config, stack, core.metrics, tls, logger, releasers);
    const { engine, scheduler, retention, webhooks } = core;
    // Released after the engine (whose last completions may start deletions), before the store closes.
    releasers.add(() => retention.idle());
    // Released first: running jobs checkpoint and update streams end before the listeners close.
    releasers.add(() => engine.shutdown(config.shutdownGraceMs));
    // Released before the engine: no run starts while jobs drain.
    releasers.add(() => scheduler.stop());

    // A cluster node streams the cluster's updates and keeps its leases from before its first claim.
    await core.cluster?.start({
      engine, wakeWebhooks: () => webhooks.wake(), isSchedulerLeader: core.isSchedulerLeader,
      // A schedule's run queued behind its active job (overlap "queue") starts on the leader when the job ends on any node.
      heard: (update) => {
        if (update.kind === "state_changed" && update.state && isFinal(update.state) && update.job?.scheduleId) scheduler.jobFinished(update.job.scheduleId, update.jobId);
      },
    });
    await engine.start();
    await scheduler.start();
    // Completions the daemon did not get to before it last stopped.
    await retention.sweep();
    webhooks.start();
    stack.health.setAll(ServingStatus.SERVING);
    // grpc.health.v1 follows /health: NOT_SERVING while unhealthy.
    // Every 2 s with a shared store: a node that loses PostgreSQL goes NOT_SERVING (and back) quickly.
    const stopHealthWatch = stack.healthCheck.watch(config.storeUrl ? 2_000 : 10_000, (status) => stack.health.setAll(status === "unhealthy" ? ServingStatus.NOT_SERVING : ServingStatus.SERVING));
    logger.info({
      grpc_address: listeners.grpcAddress, http_address: listeners.httpAddress, data_dir: config.dataDir, version: VERSION,
      providers: core.providers.list().map((p) => p.name), config_file: config.configFile, dashboard_url: listeners.dashboardUrl,
    }, "hypervisord ready");

    let stopping: Promise<void> | undefined;
    return {
      grpcAddress: listeners.grpcAddress,
      httpAddress: listeners.httpAddress,
      engine,
      stop() {
        // Health first, so that probes and balancers stop sending work, then the releasers in reverse:
        // listeners close after the engine has stopped and ended its streams.
        stopping ??= (async () => {
          stopHealthWatch();
          stack.health.setAll(ServingStatus.NOT_SERVING);
          await releasers.releaseAll();
          logger.info("hypervisord stopped");
        })();
        return stopping;
      },
    };
  } catch (err) {
    await releasers.releaseAll().catch((releaseErr: unknown) => logger.error({ err: releaseErr }, "cleanup after a failed start failed"));
    throw err;
  }
}
