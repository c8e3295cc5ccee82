// What the Batches views show of a batch: which copy is newer (loaded or live), one row per VM with
// the freshest state and progress of its job, and how far the whole batch is.
import { BatchState, isTerminal, JobState, type Batch, type BatchCounts, type BatchJob, type Job, type JobProgress } from "../index.ts";

export const BATCH_STATES: readonly BatchState[] = [BatchState.RUNNING, BatchState.COMPLETED, BatchState.PARTIALLY_FAILED, BatchState.FAILED, BatchState.CANCELLED];

/** "running", "partially-failed", ... as the API's enum names them, lower case. */
export function batchStateName(state: BatchState): string {
  return (BatchState[state] ?? "unknown").toLowerCase().replace(/_/g, "-");
}

export function isBatchEnded(state: BatchState): boolean {
  return state !== BatchState.RUNNING && state !== BatchState.UNSPECIFIED;
}

/** How far a child job is along queued -> running -> ended: states only move forward within one attempt. */
function stage(state: JobState): number {
  return isTerminal(state) ? 2 : state === JobState.RUNNING ? 1 : 0;
}

function ended(counts: BatchCounts | undefined): number {
  return counts ? counts.completed + counts.failed + counts.cancelled : 0;
}

/**
 * The newer of a batch as loaded (GetBatch, ListBatches) and as the live stream last had it: an
 * ended batch is final; otherwise the one with more ended children, then more bytes, is newer
 * (both only grow), and a tie keeps the loaded one.
 */
export function freshestBatch(loaded: Batch | undefined, live: Batch | undefined): Batch | undefined {
  if (!loaded || !live) return live ?? loaded;
  if (isBatchEnded(loaded.state)) return loaded;
  if (isBatchEnded(live.state)) return live;
  if (ended(live.counts) !== ended(loaded.counts)) return ended(live.counts) > ended(loaded.counts) ? live : loaded;
  return live.bytesDone > loaded.bytesDone ? live : loaded;
}

export interface VmRow {
  jobId: string;
  vm: string;
  name: string;
  state: JobState;
  percent: number;
  progress?: JobProgress;
  error?: BatchJob["error"];
}

/** A batch's VMs, each with the state and progress of its job from the live stream when that is further along. */
export function vmRows(batch: Batch, liveJob: (jobId: string) => Job | undefined): VmRow[] {
  return batch.jobs.map((child) => {
    const job = liveJob(child.jobId);
    const useLive = job !== undefined && stage(job.state) >= stage(child.state) && !isTerminal(child.state);
    const state = useLive ? job.state : child.state;
    const progress = useLive ? job.progress : undefined;
    const fromBytes = child.bytesTotal > 0n ? Number((child.bytesDone * 1000n) / child.bytesTotal) / 10 : 0;
    const percent = state === JobState.COMPLETED ? 100 : Math.max(0, Math.min(100, progress?.percent ?? fromBytes));
    return { jobId: child.jobId, vm: child.vm, name: child.vmName || child.vm, state, percent, progress, error: child.error };
  });
}

/** The whole batch's progress: the mean over its VMs, an ended VM counting as done. */
export function batchPercent(rows: readonly VmRow[]): number {
  if (rows.length === 0) return 0;
  return rows.reduce((sum, row) => sum + (isTerminal(row.state) ? 100 : row.percent), 0) / rows.length;
}

/** "2 completed · 1 running · 3 queued" (states with none left out). */
export function countsText(counts: Omit<BatchCounts, "$typeName" | "$unknown"> | undefined): string {
  if (!counts) return "–";
  const parts = (["completed", "running", "queued", "failed", "cancelled"] as const).filter((s) => counts[s] > 0).map((s) => `${counts[s]} ${s}`);
  return parts.length ? parts.join(" · ") : "no VMs";
}
