import type { Logger } from "pino";
import type { JobUpdate } from "../engine/update.ts";
import type { ClusterStore } from "../store/cluster-store.ts";
import { createLeaseKeeper, type LeasedEngine } from "./lease-keeper.ts";
import { createSharedUpdates } from "./shared-updates.ts";

/** Progress updates (not state changes, which are job history) are kept this long in the shared log. */
const PROGRESS_KEPT_MS = 60 * 60_000;
const PRUNE_EVERY_MS = 10 * 60_000;

export interface ClusterEngine extends LeasedEngine {
  /** Delivers an update of the shared log to this node's subscribers, and acts on it (a cancel of a job run here). */
  sharedUpdate(update: JobUpdate): void;
}

export interface ClusterNodeStatus {
  nodeId: string;
  databaseReachable: boolean;
  lastLeaseRenewal?: number;
  schedulerLeader: boolean;
  runningByNode: Record<string, number>;
}

/**
 * This daemon as one node of several sharing a PostgreSQL store. Made before the engine (which publishes into
 * `updates`), started before it: it streams the cluster's updates to the engine, keeps the leases of the node's
 * running jobs (and resumes those of dead nodes), and wakes the webhook dispatcher when another node enqueued
 * deliveries. Schedules are led separately (scheduler-leadership.ts).
 */
export function createClusterNode(options: { cluster: ClusterStore; logger: Logger }) {
  const { cluster } = options;
  const logger = options.logger.child({ component: "cluster" });
  let engine: ClusterEngine | undefined;
  let heard: ((update: JobUpdate) => void) | undefined;
  const shared = createSharedUpdates({
    cluster, logger,
    deliver(update) {
      engine?.sharedUpdate(update);
      heard?.(update);
    },
  });
  let leases: ReturnType<typeof createLeaseKeeper> | undefined;
  let stopWebhooks: (() => Promise<void>) | undefined;
  let prune: NodeJS.Timeout | undefined;
  let isSchedulerLeader = () => false;
  // One append at a time: the log's order is then the order this node published in (a job's progress never goes back).
  let appending = Promise.resolve();

  return {
    /** For the engine's update bus (UpdateBusOptions.shared). */
    updates: {
      append(update: JobUpdate): void {
        appending = appending
          .then(() => cluster.appendUpdate({
            jobId: update.jobId, ...(update.batchId ? { batchId: update.batchId } : {}), kind: update.kind === "progress" ? "progress" : "batch",
            payload: update, time: update.time,
          }))
          .then(() => undefined, (err: unknown) => logger.warn({ err: (err as Error).message, job_id: update.jobId }, "could not share a progress update"));
      },
      currentSeq: () => shared.currentSeq(),
    },
    /** `heard`: every update of the shared log, after the engine (e.g. the scheduler hears of jobs ended elsewhere). */
    async start(deps: { engine: ClusterEngine; wakeWebhooks(): void; isSchedulerLeader(): boolean; heard?(update: JobUpdate): void }): Promise<void> {
      engine = deps.engine;
      heard = deps.heard;
      isSchedulerLeader = deps.isSchedulerLeader;
      await shared.start();
      leases = createLeaseKeeper({ cluster, engine, logger });
      leases.start();
      stopWebhooks = await cluster.listen("webhooks", deps.wakeWebhooks);
      prune = setInterval(() => {
        cluster.pruneUpdates(Date.now() - PROGRESS_KEPT_MS)
          .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "pruning old progress updates failed"));
      }, PRUNE_EVERY_MS);
      prune.unref();
      logger.info({ node_id: cluster.nodeId, lease_ms: cluster.leaseMs }, "joined the cluster");
    },
    async status(): Promise<ClusterNodeStatus> {
      const lease = leases?.status() ?? { databaseReachable: false };
      const runningByNode = await cluster.runningByNode().catch(() => ({}));
      return { nodeId: cluster.nodeId, databaseReachable: lease.databaseReachable, lastLeaseRenewal: lease.lastRenewal, schedulerLeader: isSchedulerLeader(), runningByNode };
    },
    /** For /health: the database as the lease keeper last saw it. */
    leaseStatus: () => leases?.status(),
    async stop(): Promise<void> {
      clearInterval(prune);
      await leases?.stop();
      await stopWebhooks?.();
      await shared.stop();
      await appending;
    },
  };
}

export type ClusterNode = ReturnType<typeof createClusterNode>;
