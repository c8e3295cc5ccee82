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
 * This daemon as one node of several sharing a PostgreSQL store: it streams the cluster's updates, keeps the
 * leases of its running jobs (and resumes those of dead nodes), and wakes its webhook dispatcher when another node
 * enqueued deliveries. Schedules are led separately (scheduler-leadership.ts).
 */
export async function startClusterNode(deps: {
  cluster: ClusterStore;
  engine: ClusterEngine;
  /** The webhook dispatcher's wake-up. */
  wakeWebhooks(): void;
  isSchedulerLeader(): boolean;
  logger: Logger;
}) {
  const { cluster, engine } = deps;
  const logger = deps.logger.child({ component: "cluster" });
  const shared = createSharedUpdates({ cluster, deliver: (update) => engine.sharedUpdate(update), logger });
  await shared.start();
  const leases = createLeaseKeeper({ cluster, engine, logger });
  leases.start();
  const stopWebhooks = await cluster.listen("webhooks", deps.wakeWebhooks);
  const prune = setInterval(() => {
    cluster.pruneUpdates(Date.now() - PROGRESS_KEPT_MS)
      .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "pruning old progress updates failed"));
  }, PRUNE_EVERY_MS);
  prune.unref();
  logger.info({ node_id: cluster.nodeId, lease_ms: cluster.leaseMs }, "joined the cluster");
  return {
    /** The highest seq of the shared log delivered here. */
    currentSeq: () => shared.currentSeq(),
    async status(): Promise<ClusterNodeStatus> {
      const lease = leases.status();
      const runningByNode = await cluster.runningByNode().catch(() => ({}));
      return { nodeId: cluster.nodeId, databaseReachable: lease.databaseReachable, lastLeaseRenewal: lease.lastRenewal, schedulerLeader: deps.isSchedulerLeader(), runningByNode };
    },
    leaseStatus: () => leases.status(),
    async stop(): Promise<void> {
      clearInterval(prune);
      await leases.stop();
      await stopWebhooks();
      await shared.stop();
    },
  };
}

export type ClusterNode = Awaited<ReturnType<typeof startClusterNode>>;
