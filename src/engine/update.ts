import type { Batch } from "../domain/batch.ts";
import type { Job, JobProgress, JobState } from "../domain/job.ts";

export type JobUpdateKind = "snapshot" | "created" | "state_changed" | "progress" | "synced" | "batch_changed";

/** One message of StreamJobUpdates, shared (never mutated) by every subscriber that receives it. */
export interface JobUpdate {
  readonly seq: number;
  /** Empty for "synced" and "batch_changed". */
  readonly jobId: string;
  /** The batch of the job (a child's updates), or the batch itself ("batch_changed"). */
  readonly batchId?: string;
  /** The whole batch, for "batch_changed". */
  readonly batch?: Batch;
  readonly kind: JobUpdateKind;
  readonly state?: JobState;
  readonly progress?: JobProgress;
  /** The whole job; absent on "progress" and "synced". */
  readonly job?: Job;
  /** Milliseconds since the epoch, with sub-millisecond precision. */
  readonly time: number;
  readonly reason?: string;
}

/** Wall-clock time with sub-millisecond precision, for update timestamps. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
