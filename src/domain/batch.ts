/** Domain types of batches: the child jobs one definition with a vm_selector created, one per selected VM. */

import type { JobDefinition, JobError, JobState } from "./job.ts";

export const BATCH_STATES = ["running", "completed", "partially_failed", "failed", "cancelled"] as const;
export type BatchState = (typeof BATCH_STATES)[number];

export interface BatchCounts {
  queued: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

/** One VM of a batch and its job, as the batch shows it. */
export interface BatchJob {
  jobId: string;
  /** The VM as resolved when the batch was created (inventory path). */
  vm: string;
  vmName: string;
  state: JobState;
  bytesDone: number;
  bytesTotal: number;
  /** Set when the job failed or was cancelled. */
  error?: JobError;
}

export interface Batch {
  id: string;
  name: string;
  state: BatchState;
  /** What every child was made from: vm empty, vmSelector set. */
  definition: JobDefinition;
  counts: BatchCounts;
  bytesDone: number;
  bytesTotal: number;
  /** 0: no cap of the batch's own. */
  maxParallel: number;
  scheduleId?: string;
  /** Milliseconds since the epoch. */
  createTime: number;
  /** Set when every child job has ended. */
  endTime?: number;
  /** Set by CancelBatch. */
  cancelReason?: string;
  /** In resolution order (by inventory path). */
  jobs: BatchJob[];
}

export function countJobs(jobs: readonly Pick<BatchJob, "state">[]): BatchCounts {
  const counts: BatchCounts = { queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, total: jobs.length };
  for (const job of jobs) counts[job.state]++;
  return counts;
}

/**
 * A batch's state follows from its children: running until every child has ended; then cancelled when
 * CancelBatch was called or every child was cancelled, completed when all completed, partially_failed when
 * some completed and some did not, failed when none completed.
 */
export function batchStateOf(counts: BatchCounts, cancelRequested: boolean): BatchState {
  if (counts.queued + counts.running > 0) return "running";
  if (cancelRequested || counts.cancelled === counts.total) return "cancelled";
  if (counts.completed === counts.total) return "completed";
  return counts.completed > 0 ? "partially_failed" : "failed";
}
