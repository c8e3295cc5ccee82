import fs from "node:fs";
import type { Logger } from "pino";
import { HealthCheckResponse_ServingStatus as ServingStatus, Health } from "../gen/grpc/health/v1/health_pb.js";
import { HypervisordService } from "../gen/hypervisord/v1/service_pb.js";
import { realPaths } from "./api/output-dir.ts";
import { createProfileRegistry, profilesFromConfig } from "./api/profiles.ts";
import { createHypervisordApi } from "./api/service.ts";
import { webhooksFromConfig } from "./api/webhooks.ts";
import { withCallHooks, type CallHook } from "./rpc/call-hooks.ts";
import { createRequestLimitsHook } from "./api/request-limits.ts";
import { createAuditHook, createRefusalAudit } from "./audit/audit-hook.ts";
import { createAuthHook, createRoleHook } from "./auth/auth-hook.ts";
import { apiKeysFromConfig } from "./auth/config-keys.ts";
import { loadServerTls } from "./auth/server-tls.ts";
import { authStartupRule } from "./auth/startup-rule.ts";
import { createAuthFailureLimit } from "./ratelimit/auth-failure-limit.ts";
import { createRateLimitHook } from "./ratelimit/rate-limit-hook.ts";
import { jobTracer } from "./tracing/job-tracer.ts";
import { createTracingHook } from "./tracing/tracing-hook.ts";
import { initTracing } from "./tracing/tracing.ts";
import { createMetrics } from "./metrics/metrics.ts";
import { startMetricsServer } from "./metrics/metrics-server.ts";
import { createScheduler, type Scheduler } from "./scheduler/scheduler.ts";
import { createRetention } from "./scheduler/retention.ts";
import { createScheduleJobObserver } from "./scheduler/schedule-job-observer.ts";
import { createScheduleSubmit } from "./scheduler/schedule-submit.ts";
import { createHealthCheck } from "./server/health-check.ts";
import { createWebhookDispatcher } from "./webhooks/dispatcher.ts";
import { createProgressEvents } from "./webhooks/progress-events.ts";
import type { ServiceHandlers } from "./rpc/handlers.ts";
import type { DaemonConfig } from "./config/load-config.ts";
import { formatAddress } from "./listen-address.ts";
import { createEngine, type Engine } from "./engine/engine.ts";
import { resolveQemuImg } from "./export/qemu-img.ts";
import { createConverter } from "./export/convert.ts";
import type { DaemonTools, Provider, SnapshotEvent } from "./providers/provider.ts";
import { createProviderRegistry } from "./providers/registry.ts";
import { createReleasers } from "./releasers.ts";
import { createGrpcServer, type GrpcServiceBinding } from "./server/grpc-server.ts";
import { createDashboardHandler } from "./server/dashboard.ts";
import { createHealthHandlers, createHealthState } from "./server/health.ts";
import { createHttpServer } from "./server/http-server.ts";
import { lockDataDir } from "./store/data-dir-lock.ts";
import { prepareDataDir } from "./store/data-dir.ts";
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
  /** Builds the providers with what the daemon shares among them (the qemu-img converter). */
  providers(tools: DaemonTools): readonly Provider[];
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
    // 0700 whatever the umask; a looser existing one is tightened, with a warning.
    for (const warning of prepareDataDir(config.dataDir)) logger.warn(warning);
    releasers.add(lockDataDir(config.dataDir));
    // Read first: a bad certificate or key stops the start before anything is opened.
    const tls = loadServerTls(config.tls);
    // Opens every stored secret's key check: a wrong or missing encryption key stops the start here.
    const store = createSqliteStore({
      dataDir: config.dataDir, maxLogBytesPerJob: config.maxLogBytesPerJob, logger: logger.child({ component: "store" }),
      encryption: { key: config.encryptionKey, keyFile: config.encryptionKeyFile },
    });
    releasers.add(() => store.close());
    // Checked before anything listens: a wrong override stops the start, naming rate_limit.overrides.<RPC>.
    const rateLimitHook = createRateLimitHook(config.rateLimit);
    store.apiKeys.syncConfig(apiKeysFromConfig(config.auth.apiKeys));
    const authMode = authStartupRule({
      listeners: [config.grpcListen, config.httpListen], disabled: config.auth.disabled, usableKeys: store.apiKeys.countUsable(Date.now()),
    });
    // Without OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT nothing of OpenTelemetry is loaded.
    const tracing = await initTracing({ serviceName: "hypervisord", version: VERSION, logger: logger.child({ component: "tracing" }) });
    // Released after the engine and the listeners: the spans of the last calls and jobs are sent.
    releasers.add(() => tracing.shutdown());
    // qemu-img is looked up once: the providers' converter and GetCapabilities / submission checks agree.
    const qemuImg = resolveQemuImg(config.conversion.qemuImg);
    const converter = "path" in qemuImg
      ? createConverter({ qemuImg: qemuImg.path, maxConcurrent: config.conversion.maxConcurrent, logger: logger.child({ component: "qemu-img" }) })
      : undefined;
    // The store's key also seals what providers keep in checkpoints (a lease's vSphere session).
    // The metrics are made after the providers: their snapshot events reach them through this.
    let snapshotEvent: ((event: SnapshotEvent) => void) | undefined;
    const providers = createProviderRegistry(options.providers({ converter, secretBox: store.secretBox, onSnapshot: (event) => snapshotEvent?.(event) }));
    releasers.add(() => providers.closeAll());
    const rules = { allowedOutputRoots: config.allowedOutputRoots, realOutputRoots: realPaths(config.allowedOutputRoots) };
    const profiles = createProfileRegistry(store.profiles, profilesFromConfig(config.profiles, rules));
    store.webhooks.syncConfig(webhooksFromConfig(config.webhooks.endpoints, config.webhooks.allowPrivateTargets));
    const webhooks = createWebhookDispatcher({ store: store.webhooks, logger: logger.child({ component: "webhooks" }), allowPrivateTargets: config.webhooks.allowPrivateTargets });
    store.onWebhookEvents(() => webhooks.wake());
    releasers.add(() => webhooks.stop());
    // Declared before the engine that calls it back; assigned right after.
    let scheduler: Scheduler | undefined;
    const retention = createRetention({
      schedules: store.schedules, allowedOutputRoots: config.allowedOutputRoots, logger: logger.child({ component: "retention" }),
      appendJobLog: (jobId, entry) => void store.appendLogs([{ jobId, entry }]),
    });
    const metrics = createMetrics({
      providers: providers.list().map((p) => p.name),
      jobCounts: () => {
        const counts = store.countByState();
        return { queued: counts.queued, running: counts.running };
      },
      webhookStats: () => webhooks.stats(),
      schedulerStats: () => scheduler?.stats() ?? { runs: 0, skipped: 0 },
      retentionStats: () => retention.stats(),
      osTypeOf: (job) => job.result?.osHint,
      pendingSnapshotRemovals: () => store.countPendingCleanup(),
    });
    snapshotEvent = metrics.snapshotEvent;
    if (config.metricsListen) {
      const metricsServer = await startMetricsServer(config.metricsListen, metrics, logger.child({ component: "metrics" }), config.server);
      releasers.add(() => metricsServer.close());
    }
    const progressEvents = createProgressEvents(store.webhooks);
    const engine = createEngine({
      store, providers, logger, options: config.engine, logForward: options.logForward,
      observers: [
        { progressed: (job, progress) => progressEvents.progressed(job, progress) },
        createScheduleJobObserver({ schedules: store.schedules, scheduler: () => scheduler, retention }),
        metrics.jobObserver,
      ],
      onDownload: (provider, seconds) => metrics.observeDownload(provider, seconds),
      jobTracer: jobTracer(tracing),
    });
    scheduler = createScheduler({
      store: store.schedules,
      logger: logger.child({ component: "scheduler" }),
      submit: createScheduleSubmit({ engine, exports: store.schedules.exports, recorded: (exports) => retention.check(exports) }),
    });

    const api = createHypervisordApi({
      engine, store, providers, scheduler, webhooks, profiles,
      allowedOutputRoots: config.allowedOutputRoots,
      allowPrivateWebhookTargets: config.webhooks.allowPrivateTargets,
      defaultVSphere: config.defaultVSphere,
      conversionUnavailable: () => ("reason" in qemuImg ? qemuImg.reason : undefined),
      onVmsListed: (provider, vms) => metrics.vmsDiscovered(provider, vms),
      startTime,
    });
    // Refused authentications are audited (collapsed per address, RPC and code) and throttled per address,
    // here and in the HTTP listener's check before a body is read (authHook.check).
    const refusalAudit = createRefusalAudit({ store: store.audit, logger: logger.child({ component: "audit" }) });
    releasers.add(() => refusalAudit.close());
    const authHook = createAuthHook({
      store: store.apiKeys, mode: authMode, failures: createAuthFailureLimit(config.rateLimit.authFailures), onRefused: refusalAudit.record,
    });
    // Order matters: metrics and tracing see every call; auth sets the principal; audit comes next, so that
    // refusals by the rate limit and the role check are recorded (after() runs only for hooks whose before()
    // was reached); the rate limit keys on the principal; the role check last.
    const hooks: CallHook[] = [
      metrics.callHook,
      createTracingHook(tracing),
      authHook,
      // Before the audit, which stores the request: a field over its limit never reaches a handler or the store.
      createRequestLimitsHook(HypervisordService),
      createAuditHook({ store: store.audit, logger: logger.child({ component: "audit" }) }),
      rateLimitHook,
      createRoleHook(),
    ];
    const healthCheck = createHealthCheck({
      version: VERSION,
      startTime,
      checkDatabase: () => void store.countByState(),
      queue: () => {
        const stats = engine.stats();
        return { queued: stats.counts.queued, running: stats.running, lifecycle: stats.lifecycle };
      },
      paths: [config.dataDir, ...config.allowedOutputRoots],
      minFreeBytes: config.health.minFreeBytes,
    });
    const health = createHealthState([HypervisordService.typeName]);
    const bindings: GrpcServiceBinding[] = [
      { service: HypervisordService, handlers: withCallHooks(HypervisordService, api as unknown as ServiceHandlers<typeof HypervisordService>, hooks) as never },
      { service: Health, handlers: createHealthHandlers(health) as never },
    ];

    const grpcServer = createGrpcServer(bindings, logger, tls, { edge: config.server, authorize: authHook.check });
    const grpcPort = await grpcServer.listen(config.grpcListen);
    releasers.add(() => grpcServer.close(CLOSE_TIMEOUT_MS));
    const dashboard = config.dashboard.enabled ? createDashboardHandler({ dir: config.dashboard.dir, logger: logger.child({ component: "dashboard" }) }) : undefined;
    const httpServer = createHttpServer({
      bindings, logger, corsAllowedOrigins: config.corsAllowedOrigins, isServing: health.isServing, tls, dashboard,
      edge: config.server, authorize: authHook.check,
      routes: { "/metrics": metrics.httpRoute, "/health": healthCheck.httpRoute },
    });
    const httpPort = await httpServer.listen(config.httpListen);
    releasers.add(() => httpServer.close(CLOSE_TIMEOUT_MS));
    // Released after the engine (whose last completions may start deletions), before the store closes.
    releasers.add(() => retention.idle());
    // Released first: running jobs checkpoint and update streams end before the listeners close.
    releasers.add(() => engine.shutdown(config.shutdownGraceMs));
    // Released before the engine: no run starts while jobs drain.
    releasers.add(() => scheduler!.stop());

    engine.start();
    scheduler.start();
    // Completions the daemon did not get to before it last stopped.
    retention.sweep();
    webhooks.start();
    health.setAll(ServingStatus.SERVING);
    // grpc.health.v1 follows /health: NOT_SERVING while unhealthy.
    const stopHealthWatch = healthCheck.watch(10_000, (status) => health.setAll(status === "unhealthy" ? ServingStatus.NOT_SERVING : ServingStatus.SERVING));
    const grpcAddress = formatAddress({ host: config.grpcListen.host, port: grpcPort });
    const httpAddress = formatAddress({ host: config.httpListen.host, port: httpPort });
    logger.info({
      grpc_address: grpcAddress, http_address: httpAddress, data_dir: config.dataDir, version: VERSION,
      providers: providers.list().map((p) => p.name), config_file: config.configFile,
      dashboard_url: dashboard?.built ? `${tls ? "https" : "http"}://${httpAddress}/` : undefined,
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
          stopHealthWatch();
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
