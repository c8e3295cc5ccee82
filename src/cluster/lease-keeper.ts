import type { Logger } from "pino";
import type { ClusterStore } from "../store/cluster-store.ts";

/** What the lease keeper needs of the engine. */
export interface LeasedEngine {
  /** Ids of the jobs this node runs now. */
  runningIds(): string[];
  /** Stops a local run without recording anything: the job is another node's now (or will be). */
  fence(jobId: string, reason: string): void;
  /** Whether this node may claim queued jobs (not while the database is unreachable). */
  setClaiming(allowed: boolean): void;
  /** Looks for claimable jobs now (a job was requeued). */
  poke(): void;
}

export interface LeaseStatus {
  databaseReachable: boolean;
  /** ms; undefined before the first renewal. */
  lastRenewal?: number;
  /** Why the last round failed, if it did. */
  lastError?: string;
}

/** Of the lease: a node that could not renew for this share of it stops its jobs (before another node may take them). */
const FENCE_SHARE = 0.7;
/** Expired leases of other nodes are looked for this often (failover = lease timeout + at most this). */
const EXPIRY_CHECK_MS = 1_000;

/**
 * Leases of running jobs in a cluster. Every lease/3 this node renews the leases of its running jobs; a job whose
 * lease it no longer holds (another node took it after it expired) is stopped at once. When the database cannot be
 * reached, the node stops claiming, and once it has not renewed for 70% of the lease it stops its runs itself
 * (fencing: a node cut off from the database must not keep writing a job another node is about to resume).
 * Every second it also requeues the jobs of other nodes whose leases expired, for whichever node claims first.
 */
export function createLeaseKeeper(options: { cluster: ClusterStore; engine: LeasedEngine; logger: Logger; now?: () => number }) {
  const { cluster, engine, logger } = options;
  const now = options.now ?? Date.now;
  const renewEveryMs = Math.max(200, Math.floor(cluster.leaseMs / 3));
  const status: LeaseStatus = { databaseReachable: true };
  let lastOk = now();
  let renewTimer: NodeJS.Timeout | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;
  let renewing: Promise<void> | undefined;
  let checking: Promise<void> | undefined;

  async function renew(): Promise<void> {
    const ids = engine.runningIds();
    try {
      const held = await cluster.renewLeases(ids);
      if (ids.length === 0) await cluster.ping();
      lastOk = now();
      status.lastRenewal = lastOk;
      reachable(true);
      for (const id of ids) {
        if (!held.has(id)) engine.fence(id, "this node no longer holds the job's lease (another node resumed it after the lease expired)");
      }
    } catch (err) {
      reachable(false, (err as Error).message);
      const silentMs = now() - lastOk;
      if (silentMs >= cluster.leaseMs * FENCE_SHARE) {
        for (const id of engine.runningIds()) {
          engine.fence(id, `the database has been unreachable for ${(silentMs / 1000).toFixed(1)} s, so the job's lease cannot be renewed; `
            + "stopping before another node resumes it");
        }
      }
    }
  }

  async function requeueExpired(): Promise<void> {
    try {
      const moved = await cluster.requeueExpired();
      for (const { job } of moved) logger.warn({ job_id: job.id, from_node: job.nodeId }, "requeued a job whose node stopped renewing its lease");
      if (moved.length > 0) engine.poke();
    } catch (err) {
      reachable(false, (err as Error).message);
    }
  }

  function reachable(ok: boolean, error?: string): void {
    if (ok !== status.databaseReachable) {
      if (ok) logger.info("PostgreSQL reachable again: claiming jobs");
      else logger.error({ err: error }, "PostgreSQL unreachable: not claiming jobs until it answers");
    }
    status.databaseReachable = ok;
    status.lastError = ok ? undefined : error;
    engine.setClaiming(ok);
    if (ok) engine.poke();
  }

  return {
    start(): void {
      lastOk = now();
      const round = () => void (renewing ??= renew().finally(() => (renewing = undefined)));
      round();
      renewTimer = setInterval(round, renewEveryMs);
      expiryTimer = setInterval(() => void (checking ??= requeueExpired().finally(() => (checking = undefined))), EXPIRY_CHECK_MS);
    },
    status: (): LeaseStatus => ({ ...status }),
    async stop(): Promise<void> {
      clearInterval(renewTimer);
      clearInterval(expiryTimer);
      await Promise.all([renewing, checking]);
    },
  };
}
