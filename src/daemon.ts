import fs from "node:fs";
import type { Logger } from "pino";
import { HealthCheckResponse_ServingStatus as ServingStatus, Health } from "../gen/grpc/health/v1/health_pb.js";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { realPaths } from "./api/output-dir.ts";
import { createProfileRegistry, profilesFromConfig } from "./api/profiles.ts";
import { createHypervisordApi } from "./api/service.ts";
import { webhooksFromConfig } from "./api/webhooks.ts";
import { isFinal } from "./domain/job.ts";
import { createScheduler, type Scheduler } from "./scheduler/scheduler.ts";
import { createWebhookDispatcher } from "./webhooks/dispatcher.ts";
import { createProgressEvents } from "./webhooks/progress-events.ts";
import type { ServiceHandlers } from "./api/handlers.ts";
import type { DaemonConfig } from "./config/load-config.ts";
import { formatAddress } from "./config/parse-value.ts";
import { createEngine, type Engine } from "./engine/engine.ts";
import { resolveQemuImg } from "./export/qemu-img.ts";
import type { Provider } from "./providers/provider.ts";
import { createProviderRegistry } from "./providers/registry.ts";
import { createReleasers } from "./releasers.ts";
import { createGrpcServer, type GrpcServiceBinding } from "./server/grpc-server.ts";
import { createHealthHandlers, createHealthState } from "./server/health.ts";
import { createHttpServer } from "./server/http-server.ts";
import { lockDataDir } from "./store/data-dir-lock.ts";
import { createSqliteStore } from "./store/sqlite/sqlite-store.ts";
import { VERSION } from "./version.ts";

export interface Daemon {
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly engine: Engine;
  /** Graceful stop: no new work, running jobs checkpoint, listeners and the database close. */
  stop(): Promise<void>;
}

export interface DaemonOptions {
  config: DaemonConfig;
  providers: readonly Provider[];
  logger: Logger;
  /** Where job log records are copied for the daemon log (its destination). */
  logForward?: { write(line: string): unknown };
}

/** Listener close: open calls get this long after the engine has stopped. */
const CLOSE_TIMEOUT_MS = 1500;

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config, logger } = options;
  const startTime = Date.now();
  const releasers = createReleasers();
  try {
    for (const root of config.allowedOutputRoots) fs.mkdirSync(root, { recursive: true });
    fs.mkdirSync(config.dataDir, { recursive: true });
    releasers.add(lockDataDir(config.dataDir));
    const store = createSqliteStore({ dataDir: config.dataDir, maxLogBytesPerJob: config.maxLogBytesPerJob });
    releasers.add(() => store.close());
    const providers = createProviderRegistry(options.providers);
    releasers.add(() => providers.closeAll());
    const rules = { allowedOutputRoots: config.allowedOutputRoots, realOutputRoots: realPaths(config.allowedOutputRoots) };
    const profiles = createProfileRegistry(store.profiles, profilesFromConfig(config.profiles, rules));
    store.webhooks.syncConfig(webhooksFromConfig(config.webhooks.endpoints, config.webhooks.allowPrivateTargets));
    const webhooks = createWebhookDispatcher({ store: store.webhooks, logger: logger.child({ component: "webhooks" }), allowPrivateTargets: config.webhooks.allowPrivateTargets });
    store.onWebhookEvents(() => webhooks.wake());
    releasers.add(() => webhooks.stop());
    // Declared before the engine that calls it back; assigned right after.
    let scheduler: Scheduler | undefined;
    const progressEvents = createProgressEvents(store.webhooks);
    const engine = createEngine({
      store, providers, logger, options: config.engine, logForward: options.logForward,
      observer: {
        changed: (job) => {
          if (job.scheduleId && isFinal(job.state)) scheduler?.jobFinished(job.scheduleId, job.id);
        },
        progressed: (job, progress) => progressEvents.progressed(job, progress),
      },
    });
    scheduler = createScheduler({
      store: store.schedules,
      logger: logger.child({ component: "scheduler" }),
      submit: async (schedule, run) => {
        const { job } = await engine.submit(schedule.jobTemplate, { actor: "scheduler", scheduleId: schedule.id, scheduleRun: run });
        return { jobId: job.id };
      },
    });

    const qemuImg = resolveQemuImg(config.conversion.qemuImg);
    const api = createHypervisordApi({
      engine, store, providers, scheduler, webhooks, profiles,
      allowedOutputRoots: config.allowedOutputRoots,
      allowPrivateWebhookTargets: config.webhooks.allowPrivateTargets,
      defaultVSphere: config.defaultVSphere,
      conversionUnavailable: () => ("reason" in qemuImg ? qemuImg.reason : undefined),
      startTime,
    });
    const health = createHealthState([HypervisordService.typeName]);
    const bindings: GrpcServiceBinding[] = [
      { service: HypervisordService, handlers: api as unknown as ServiceHandlers<typeof HypervisordService> as never },
      { service: Health, handlers: createHealthHandlers(health) as never },
    ];

    const grpcServer = createGrpcServer(bindings, logger);
    const grpcPort = await grpcServer.listen(config.grpcListen);
    releasers.add(() => grpcServer.close(CLOSE_TIMEOUT_MS));
    const httpServer = createHttpServer({
      bindings, logger, corsAllowedOrigins: config.corsAllowedOrigins, isServing: health.isServing,
    });
    const httpPort = await httpServer.listen(config.httpListen);
    releasers.add(() => httpServer.close(CLOSE_TIMEOUT_MS));
    // Released first: running jobs checkpoint and update streams end before the listeners close.
    releasers.add(() => engine.shutdown(config.shutdownGraceMs));
    // Released before the engine: no run starts while jobs drain.
    releasers.add(() => scheduler!.stop());

    engine.start();
    scheduler.start();
    webhooks.start();
    health.setAll(ServingStatus.SERVING);
    const grpcAddress = formatAddress({ host: config.grpcListen.host, port: grpcPort });
    const httpAddress = formatAddress({ host: config.httpListen.host, port: httpPort });
    logger.info({
      grpc_address: grpcAddress, http_address: httpAddress, data_dir: config.dataDir, version: VERSION,
      providers: providers.list().map((p) => p.name), config_file: config.configFile,
    }, "hypervisord ready");

    let stopping: Promise<void> | undefined;
    return {
      grpcAddress,
      httpAddress,
      engine,
      stop() {
        // Health first, so that probes and balancers stop sending work, then the releasers in reverse:
        // listeners close after the engine has stopped and ended its streams.
        stopping ??= (async () => {
          health.setAll(ServingStatus.NOT_SERVING);
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
