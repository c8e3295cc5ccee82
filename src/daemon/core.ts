import fs from "node:fs";
import { createClusterNode, type ClusterNode } from "../cluster/cluster.ts";
import { createClusterScheduler } from "../cluster/scheduler-leadership.ts";
import { realPaths } from "../api/output-dir.ts";
import { createProfileRegistry, profilesFromConfig, type ProfileRegistry } from "../api/profiles.ts";
import { webhooksFromConfig } from "../api/webhooks.ts";
import { compileEngineOptions } from "../engine/engine-options.ts";
import { createEngine, type Engine } from "../engine/engine.ts";
import { initialSeq } from "../engine/update-bus.ts";
import { createConverter } from "../stages/disk-conversion.ts";
import { resolveQemuImg } from "../stages/qemu-img.ts";
import { createMetrics, type Metrics } from "../metrics/metrics.ts";
import type { SnapshotEvent } from "../providers/provider.ts";
import { createProviderRegistry, type ProviderRegistry } from "../providers/registry.ts";
import type { createReleasers } from "../releasers.ts";
import { createRetention, type Retention } from "../scheduler/retention.ts";
import { createScheduleJobObserver } from "../scheduler/schedule-job-observer.ts";
import { createScheduleSubmit } from "../scheduler/schedule-submit.ts";
import { createScheduler, type Scheduler } from "../scheduler/scheduler.ts";
import { lockDataDir } from "../store/data-dir-lock.ts";
import { prepareDataDir } from "../store/data-dir.ts";
import { openStore } from "../store/open-store.ts";
import type { Store } from "../store/store.ts";
import { jobTracer } from "../tracing/job-tracer.ts";
import { initTracing, type Tracing } from "../tracing/tracing.ts";
import { VERSION } from "../version.ts";
import { createWebhookDispatcher, type WebhookDispatcher } from "../webhooks/dispatcher.ts";
import { createProgressEvents } from "../webhooks/progress-events.ts";
import type { DaemonOptions } from "./index.ts";

export type Releasers = Pick<ReturnType<typeof createReleasers>, "add">;

/** What the daemon is made of below its call stack: opened, not yet started. */
export interface Core {
  store: Store;
  providers: ProviderRegistry;
  engine: Engine;
  scheduler: Scheduler;
  retention: Retention;
  webhooks: WebhookDispatcher;
  profiles: ProfileRegistry;
  metrics: Metrics;
  tracing: Tracing;
  /** The output roots as configured, and with symbolic links resolved (computed once, for api and profiles). */
  outputRoots: { allowedOutputRoots: readonly string[]; realOutputRoots: readonly string[] };
  /** Why conversions cannot run here (no qemu-img), or undefined when they can. */
  conversionUnavailable(): string | undefined;
  /** This daemon's part of a cluster (PostgreSQL store); started before the engine. */
  cluster?: ClusterNode;
  /** Whether the schedules fire here (always, alone; the lock holder in a cluster). */
  isSchedulerLeader(): boolean;
}

/** Opens the data directory and the store, and makes the providers, engine, scheduler, webhooks and metrics. */
export async function openCore(options: DaemonOptions, releasers: Releasers): Promise<Core> {
  const { config, logger } = options;
  for (const root of config.allowedOutputRoots) fs.mkdirSync(root, { recursive: true });
  // 0700 whatever the umask; a looser existing one is tightened, with a warning.
  for (const warning of prepareDataDir(config.dataDir)) logger.warn(warning);
  releasers.add(lockDataDir(config.dataDir));
  // Opens every stored secret's key check: a wrong or missing encryption key stops the start here.
  const store = await openStore({
    ...config, hostCaps: { vsphere: config.vsphere.maxTransfersPerHost, azure: config.azure.maxTransfersPerHost },
  }, logger.child({ component: "store" }));
  releasers.add(() => store.close());
  // Several daemons on one PostgreSQL: this one's part (released after the engine has drained, before the store closes).
  const cluster = store.cluster && createClusterNode({ cluster: store.cluster, logger });
  if (cluster) releasers.add(() => cluster.stop());
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
  // The metrics need the providers' names: their snapshot events reach them through this, once they exist.
  let snapshotEvent: ((event: SnapshotEvent) => void) | undefined;
  const providers = createProviderRegistry(options.providers({ converter, secretBox: store.secretBox, onSnapshot: (event) => snapshotEvent?.(event) }));
  releasers.add(() => providers.closeAll());
  const outputRoots = { allowedOutputRoots: config.allowedOutputRoots, realOutputRoots: realPaths(config.allowedOutputRoots) };
  const profiles = createProfileRegistry(store.profiles, profilesFromConfig(config.profiles, outputRoots));
  await store.webhooks.syncConfig(webhooksFromConfig(config.webhooks.endpoints, config.webhooks.allowPrivateTargets));
  const webhooks = createWebhookDispatcher({ store: store.webhooks, logger: logger.child({ component: "webhooks" }), allowPrivateTargets: config.webhooks.allowPrivateTargets });
  store.onWebhookEvents(() => webhooks.wake());
  releasers.add(() => webhooks.stop());
  const retention = createRetention({
    schedules: store.schedules, allowedOutputRoots: config.allowedOutputRoots, logger: logger.child({ component: "retention" }),
    appendJobLog: (jobId, entry) => store.appendLogs([{ jobId, entry }]),
  });
  const progressEvents = createProgressEvents(store.webhooks, logger.child({ component: "webhooks" }));
  const engine = createEngine({
    // Read once here: the update bus continues the sequence from the store's reservation and history.
    initialSeq: await initialSeq(store),
    store, providers, logger, options: compileEngineOptions(config.engine), logForward: options.logForward,
    observers: [{ progressed: (job, progress) => progressEvents.progressed(job, progress) }],
    jobTracer: jobTracer(tracing),
    cluster: cluster && { nodeId: config.cluster.nodeId, updates: cluster.updates },
  });
  const makeScheduler = () => createScheduler({
    store: store.schedules,
    logger: logger.child({ component: "scheduler" }),
    submit: createScheduleSubmit({ engine, exports: store.schedules.exports, recorded: (exports) => retention.check(exports) }),
  });
  // In a cluster the schedules fire on the one node that holds the scheduler lock.
  const leadership = store.cluster
    && createClusterScheduler({ make: makeScheduler, cluster: store.cluster, store: store.schedules, logger: logger.child({ component: "scheduler" }) });
  const scheduler = leadership || makeScheduler();
  const metrics = createMetrics({
    providers: providers.list().map((p) => p.name),
    jobCounts: async () => {
      const counts = await store.countByState();
      return { queued: counts.queued, running: counts.running };
    },
    webhookStats: () => webhooks.stats(),
    schedulerStats: () => scheduler.stats(),
    retentionStats: () => retention.stats(),
    osTypeOf: (job) => job.result?.osHint,
    pendingSnapshotRemovals: () => store.countPendingCleanup(),
  });
  snapshotEvent = metrics.snapshotEvent;
  // Nothing runs before engine.start(): the observers are all in place by then.
  engine.observe(createScheduleJobObserver({ schedules: store.schedules, scheduler, retention, logger: logger.child({ component: "scheduler" }) }));
  engine.observe(metrics.jobObserver);
  engine.observe({ downloaded: (job, seconds) => metrics.observeDownload(job.definition.provider, seconds) });
  return {
    store, providers, engine, scheduler, retention, webhooks, profiles, metrics, tracing, outputRoots, cluster,
    isSchedulerLeader: () => (leadership ? leadership.isLeader() : true),
    conversionUnavailable: () => ("reason" in qemuImg ? qemuImg.reason : undefined),
  };
}
