import type { Job, JobTransition } from "../domain/job.ts";

/** An update committed to the shared log: a state change (from job_transitions) or a progress or batch update (job_updates). */
export interface SharedUpdate {
  seq: number;
  jobId: string;
  batchId?: string;
  kind: "transition" | "progress" | "batch";
  /** The transition (kind "transition"). */
  transition?: JobTransition;
  /** The job as it is now (kind "transition"). */
  job?: Job;
  /** What the writer published (kinds "progress" and "batch"), as JSON. */
  payload?: unknown;
  time: number;
}

/**
 * What several daemons sharing one PostgreSQL need beyond the Store: leases on running jobs, the shared
 * update log every node streams from, leadership locks and a liveness check. Implemented by the PostgreSQL
 * store (src/store/postgres/cluster-queries.ts); used by src/cluster.
 */
export interface ClusterStore {
  readonly nodeId: string;
  /** How long a lease lasts without renewal. */
  readonly leaseMs: number;
  /** Renews this node's leases on `jobIds`; returns those it still holds (a job another node took is missing). */
  renewLeases(jobIds: readonly string[]): Promise<Set<string>>;
  /**
   * Running jobs whose lease expired (their node died or lost the database): back to queued with resume set, so
   * the next claim continues from the checkpoint without counting an attempt. Each with its committed transition.
   */
  requeueExpired(): Promise<{ job: Job; transition: JobTransition }[]>;
  /** Appends a progress or batch update to the shared log; its seq is assigned there. */
  appendUpdate(update: Omit<SharedUpdate, "seq" | "transition" | "job">): Promise<number>;
  /** Committed updates after `seq`, in seq order. */
  updatesAfter(seq: number, limit: number): Promise<SharedUpdate[]>;
  /** The highest committed update seq. */
  lastUpdateSeq(): Promise<number>;
  /** Calls `listener` when another transaction committed updates or webhook deliveries (LISTEN); returns the stop. */
  listen(channel: "updates" | "webhooks", listener: () => void): Promise<() => Promise<void>>;
  /**
   * Tries to take leadership `name` on a dedicated session; held until released or the session dies (a killed
   * node's lock goes with its connection). Resolves to a handle when taken, undefined when another node leads.
   */
  tryLead(name: "scheduler"): Promise<{ released: Promise<unknown>; release(): Promise<void> } | undefined>;
  /** Running jobs of the whole cluster per node id. */
  runningByNode(): Promise<Record<string, number>>;
  /** A round trip to the database; throws when it cannot be reached. */
  ping(): Promise<void>;
  /** Deletes progress updates older than `before` (the log of state changes stays, as job history). */
  pruneUpdates(before: number): Promise<number>;
}
